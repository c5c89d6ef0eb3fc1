"""The local backend: every group trained in this process, one after the other."""

from __future__ import annotations

from evolve.train import GroupJob, GroupResult, train_group


class LocalBackend:
    """Runs `train_group` in-process; with `progress`, a tqdm bar over the optimiser steps."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def run_groups(self, jobs: list[GroupJob]) -> list[GroupResult]:
        if not self.progress:
            return [train_group(job) for job in jobs]
        from tqdm.auto import tqdm

        results = []
        with tqdm(total=0, desc=f"steps (gen {jobs[0].generation if jobs else 0})", unit="step",
                  leave=False, dynamic_ncols=True) as bar:

            def tick(event: str, n: int) -> None:
                if event == "total":
                    bar.total += n
                    bar.refresh()
                else:
                    bar.update(n)

            for job in jobs:
                results.append(train_group(job, progress=tick))
        return results

    def close(self) -> None:
        return None
