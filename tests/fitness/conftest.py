"""Small hand-built trajectories for the fitness tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fitness import Trajectory

# a copy of ../shared/reference/adaptible_meta_experiment.json (the published 3-seed run), so the
# golden tests run wherever the repository is checked out
REFERENCE = Path(__file__).parent / "data" / "adaptible_meta_experiment.json"


def _bits(row: str) -> list[bool | None]:
    return [None if ch == "." else ch == "1" for ch in row]


def traj_from(rows: dict[str, str], steps: list[int] | None = None,
              baseline: dict[str, bool] | None = None, window: dict[str, int] | None = None,
              **kw: Any) -> Trajectory:
    """rows: item id -> "01.1" (1 right, 0 wrong, . not probed). Window defaults to the first
    probed checkpoint, baseline to wrong."""
    K = len(next(iter(rows.values()))) if rows else len(steps or [])
    correct = {i: _bits(r) for i, r in rows.items()}
    win = {i: next((k for k, c in enumerate(v) if c is not None), 0) for i, v in correct.items()}
    return Trajectory(
        learner_id=kw.pop("learner_id", "t"), steps=steps or [10 * (k + 1) for k in range(K)],
        baseline={i: False for i in rows} | (baseline or {}), window=win | (window or {}),
        correct=correct, confidence={i: [None] * K for i in rows}, **kw)


@pytest.fixture
def make_traj() -> Callable[..., Trajectory]:
    return traj_from


@pytest.fixture(scope="session")
def reference() -> Path:
    return REFERENCE
