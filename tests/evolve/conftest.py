"""Fixtures for engine tests: a tiny real evolution config on the `tiny_base` model and a real
SQLite MLflow store in tmp_path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def tiny_sets(base: Path, tmp: Path, **over: Any) -> list[str]:
    """`--set` overrides for the smallest evolution that still has >= 3 checkpoints per learner."""
    sets = {
        "base": str(base), "seed": 7, "population": 4, "generations": 2,
        "tasks": "[{family: modular, n: 12, holdout: 6, probe: 6}]",
        "training.batch_size": 4, "training.checkpoint_every": 4, "training.spectral": False,
        "training.device": "cpu", "selection.elitism": 1, "selection.params": "{size: 2}",
        "genome.lr": "[0.001, 0.01]", "genome.steps_per_item": "[1, 2]",
        "assess.steps": 4, "assess.checkpoints": 2,
        "tracking.uri": f"sqlite:///{tmp}/mlflow.db", "tracking.experiment": "test",
        "tracking.artifact_location": str(tmp / "artifacts"), "state_dir": str(tmp / "state"),
    }
    sets.update(over)
    return [f"{k}={v}" for k, v in sets.items()]


@pytest.fixture
def make_cfg(tiny_base: Path, tmp_path: Path) -> Callable[..., Any]:
    """`make_cfg(**overrides)` -> a validated RunConfig of the tiny evolution (store in tmp_path)."""
    from evolve.config import load_config

    return lambda **over: load_config(None, tiny_sets(tiny_base, tmp_path, **over))


@pytest.fixture
def sets_for(tiny_base: Path) -> Callable[..., list[str]]:
    """`sets_for(dir, **overrides)` -> the tiny evolution's `--set` list with its store in `dir`."""
    return lambda tmp, **over: tiny_sets(tiny_base, tmp, **over)


@pytest.fixture
def tiny_cfg(make_cfg: Callable[..., Any]) -> Any:
    return make_cfg()


@pytest.fixture
def run_evo() -> Callable[..., tuple[Any, Any]]:
    """`run_evo(cfg, resume=False)` -> (Summary, Tracker), in this process, local backend."""
    return run_evolution


def open_tracker(cfg: Any) -> Any:
    from evolve.tracking import Tracker

    return Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)


def run_evolution(cfg: Any, resume: bool | str = False) -> tuple[Any, Any]:
    """Run `cfg` in this process on the local backend; (summary, tracker)."""
    from evolve.backends.local import LocalBackend
    from evolve.engine import evolve

    tracker = open_tracker(cfg)
    return evolve(cfg, tracker, LocalBackend(), progress=False, resume=resume), tracker
