"""The local backend: a generation's groups trained in this process, one thread per core.

With several groups (`groups:` in the config), each runs on its own Python thread with ONE torch
thread: torch releases the GIL inside its kernels, so G groups use G cores without torch's
OpenMP threads, which spin-wait and ran 65x slower whenever another process was busy (docs/measurements.md).
One torch thread per group is also what the Ray backend uses, so both give the same bits.
Measured on 2 cores (docs/run.md): the default config with 2 generations took 38.4 s with
`groups: 2` against 63.9 s with one group on two OpenMP threads.
With one group, it runs on the calling thread with torch's thread count left as it is.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from evolve.train import GroupJob, GroupResult, Progress, train_group


class LocalBackend:
    """Runs `train_group` in-process, up to `workers` groups at once (default: one per core);
    with `progress`, one tqdm bar over the optimiser steps of all groups."""

    def __init__(self, progress: bool = False, workers: int | None = None) -> None:
        self.progress = progress
        self.workers = max(1, workers or os.cpu_count() or 1)

    def run_groups(self, jobs: list[GroupJob]) -> list[GroupResult]:
        if not self.progress:
            return self._run(jobs, None)
        from tqdm.auto import tqdm

        with tqdm(total=0, desc=f"steps (gen {jobs[0].generation if jobs else 0})", unit="step",
                  leave=False, dynamic_ncols=True) as bar:

            def tick(event: str, n: int) -> None:
                if event == "total":
                    bar.total += n
                    bar.refresh()
                else:
                    bar.update(n)

            return self._run(jobs, tick)

    def _run(self, jobs: list[GroupJob], tick: Progress | None) -> list[GroupResult]:
        n = min(self.workers, len(jobs))
        if n <= 1:
            return [train_group(job, progress=tick) for job in jobs]
        from learners.base import one_torch_thread

        with one_torch_thread(), ThreadPoolExecutor(n, thread_name_prefix="evolve-group") as pool:
            return list(pool.map(lambda job: train_group(job, progress=tick), jobs))

    def close(self) -> None:
        return None
