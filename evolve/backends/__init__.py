"""Backends run a generation's training groups: `run_groups(jobs) -> results`, in job order.

A backend only schedules: every group is `evolve.train.train_group(job)`, a pure function of its
job, so results do not depend on where or in which order the groups ran. `local` runs them in this
process; `ray` (in `evolve/backends/ray.py`, the only module importing ray) on a Ray cluster.
"""

from __future__ import annotations

from typing import Protocol

from common.errors import EvolveError
from evolve.train import GroupJob, GroupResult

BACKENDS = ("local", "ray")


class Backend(Protocol):
    def run_groups(self, jobs: list[GroupJob]) -> list[GroupResult]:
        """Run every job; results in the order of `jobs`, never in completion order."""
        ...

    def close(self) -> None:
        """Release workers / runtimes (a no-op for local)."""
        ...


def make_backend(name: str, address: str | None = None, progress: bool = False,
                 **options: object) -> Backend:
    """The backend called `name` (`local` or `ray`); `address` is a Ray cluster address."""
    if name == "local":
        from evolve.backends.local import LocalBackend

        return LocalBackend(progress=progress)
    if name == "ray":
        # raises EvolveError("--backend ray needs Ray: pip install -e '.[ray]'") without Ray
        from evolve.backends.ray import RayBackend

        return RayBackend(address=address, progress=progress, **options)  # type: ignore[arg-type]
    raise EvolveError(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
