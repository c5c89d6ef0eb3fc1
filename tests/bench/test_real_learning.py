"""bench/real_learning.py counts "initially wrong" and "regressed" from the probe before any
training of the generation (`initial`), not from an item's own baseline, which comes after the
learner trained earlier windows (that reading made generation-0 learners, all the base itself,
look as if they started known facts wrong)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from fitness import Trajectory

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def real_learning() -> Any:
    spec = importlib.util.spec_from_file_location("bench_real_learning", BENCH / "real_learning.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def two_windows(initial: dict[str, bool]) -> Trajectory:
    """Item `a` trained in window 0, `b` and `c` in window 1. `b` was wrong before any training,
    turned right while `a` was trained (its baseline) and ends right; `c` was right before any
    training, wrong at its baseline and at the end."""
    return Trajectory(
        learner_id="g0-l0", steps=[4, 8],
        baseline={"a": False, "b": True, "c": False},
        window={"a": 0, "b": 1, "c": 1},
        correct={"a": [True, True], "b": [None, True], "c": [None, False]},
        confidence={"a": [0.9, 0.9], "b": [None, 0.8], "c": [None, 0.1]},
        initial=initial)


def test_initially_wrong_means_before_any_training(real_learning: Any) -> None:
    row = real_learning.learner_figures(two_windows({"a": False, "b": False, "c": True}))
    assert row["initially_wrong"] == 2 and row["learned"] == 2       # a and b
    assert row["regressed_items"] == ["c"]                          # right before any training


def test_a_file_without_initial_falls_back_to_baselines(real_learning: Any) -> None:
    row = real_learning.learner_figures(two_windows({}))
    assert row["initially_wrong"] == 2 and row["learned"] == 1       # a and c wrong; a learned
    assert row["regressed_items"] == []                              # c never right in this file
