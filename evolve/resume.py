"""Resume state: what `evolve run --resume` needs to continue a run exactly, under
`state_dir/<run id>/` (the run's config, then after every generation its records, learner states
with their AdamW moments, lexicase cases, Pareto ranks, summary rows and trajectories)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from common.errors import EvolveError
from evolve.config import RunConfig, from_dict
from evolve.config_files import load_yaml
from evolve.records import LearnerRecord

if TYPE_CHECKING:
    from fitness import Trajectory
    from learners.population import LearnerState


@dataclass
class Saved:
    """The state saved after generation `generation` (the last one completed)."""

    generation: int
    records: list[LearnerRecord]
    states: list[LearnerState]               # per record
    cases: list[dict[str, float]]            # per-task accuracy per record (lexicase cases)
    ranks: dict[str, tuple[int, float]]      # learner id -> (Pareto front, crowding); {} weighted
    history: list[dict[str, Any]]            # one summary row per generation so far


def state_dir(cfg: RunConfig, run_id: str) -> Path:
    path = Path(cfg.state_dir) / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_run_config(cfg: RunConfig, run_id: str) -> None:
    (state_dir(cfg, run_id) / "config.yaml").write_text(cfg.to_yaml())


def load_run_config(cfg: RunConfig, run_id: str) -> RunConfig:
    """The run's saved config; tracking, backend and state_dir stay as given now."""
    path = Path(cfg.state_dir) / run_id / "config.yaml"
    if not path.is_file():
        raise EvolveError(f"no saved state for run {run_id} under {cfg.state_dir}; pass the "
                          "state_dir it ran with (--set state_dir=DIR) or start a new run")
    data = load_yaml(path.read_text())
    data.update(tracking=cfg.to_dict()["tracking"], backend=cfg.backend, state_dir=cfg.state_dir)
    return from_dict(data)


def save_state(cfg: RunConfig, run_id: str, saved: Saved, trajs: list[Trajectory]) -> None:
    """Everything needed to continue after `saved.generation`, written atomically (tmp + rename),
    and the generation's trajectories beside it."""
    import torch

    from fitness.formats import save_evolve

    d = state_dir(cfg, run_id)
    save_evolve(trajs, d / f"trajectories_g{saved.generation}.json")
    blob = {"generation": saved.generation, "records": [r.to_dict() for r in saved.records],
            "states": saved.states, "cases": saved.cases, "ranks": saved.ranks,
            "history": saved.history}
    tmp = d / "state.pt.tmp"
    torch.save(blob, tmp)
    os.replace(tmp, d / "state.pt")


def load_state(cfg: RunConfig, run_id: str) -> Saved | None:
    """The state saved after the last completed generation, or None before the first."""
    import torch

    path = Path(cfg.state_dir) / run_id / "state.pt"
    if not path.is_file():
        return None
    blob = torch.load(path, weights_only=False)
    return Saved(generation=blob["generation"],
                 records=[LearnerRecord.from_dict(d) for d in blob["records"]],
                 states=blob["states"], cases=blob["cases"], ranks=blob["ranks"],
                 history=blob["history"])


def trajectories_file(cfg: RunConfig, run_id: str, generation: int) -> Path:
    return state_dir(cfg, run_id) / f"trajectories_g{generation}.json"
