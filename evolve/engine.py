"""The generation loop: `evolve(cfg, tracker, backend) -> Summary`.

Each generation is `evolve.generation.run_generation` (build streams → train and probe → signals →
score → record → summarise); then the champion's adapter is exported, the state needed to
continue is saved (`evolve.resume`) before the tracker logs the generation, and the next
generation is selected and varied. Every seed derives from the run seed (`derive_seed`), items are
fresh each generation while a holdout and a set of never-trained probe items stay fixed, so
`--resume` ends exactly as an uninterrupted run would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from common.errors import EvolveError
from evolve.config import RunConfig
from evolve.generation import (
    Generation,
    Member,
    draw_items,
    init_population,
    run_generation,
    select_and_vary,
)
from evolve.records import LearnerRecord
from evolve.response import generation_metrics, rows_of
from evolve.resume import (
    Saved,
    load_run_config,
    load_state,
    save_run_config,
    save_state,
    state_dir,
    trajectories_file,
)

if TYPE_CHECKING:
    from evolve.backends import Backend


class EvolutionTracker(Protocol):
    """What the engine records an evolution through. `evolve.tracking.Tracker` (MLflow) is the one
    store; `evolve tune` and the selection experiment wrap it to watch each generation."""

    @property
    def experiment_id(self) -> str: ...

    def start_evolution(self, config: dict[str, Any]) -> str:
        """Create the evolution run (`config` logged as params); returns its run id."""
        ...

    def resume_evolution(self, run_id: str | None = None) -> tuple[str, int]:
        """Reopen an evolution (None: the latest unfinished); (run id, last logged generation)."""
        ...

    def log_generation(self, generation: int, records: list[LearnerRecord],
                       summary: dict[str, float], plots: bool = True) -> None:
        """One run per learner, and `summary` (`evolve.generation.summarise`'s metrics) on the
        evolution run."""
        ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def register_champion(self, record: LearnerRecord, name: str) -> str:
        """Register the learner's adapter as a version of model `name`; returns the version."""
        ...

    def finish(self, status: str = "FINISHED") -> None: ...


@dataclass
class Summary:
    run_id: str
    experiment_id: str
    champion: str
    champion_fitness: float
    generations: list[dict[str, Any]]
    model_version: str | None = None
    champion_adapter: str | None = None
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The `--summary-json` object."""
        keys = ("generation", "champion", "champion_fitness", "mean_fitness")
        return {"champion": self.champion, "champion_fitness": self.champion_fitness,
                "generations": [{k: g[k] for k in keys} for g in self.generations],
                "mlflow": {"experiment_id": self.experiment_id, "run_id": self.run_id}}


@dataclass
class Run:
    """An evolution about to (re)start at generation `start`."""

    cfg: RunConfig
    run_id: str
    base: str                                    # the base model directory
    start: int                                   # the first generation still to train
    members: list[Member]                        # its learners
    history: list[dict[str, Any]]                # summary rows of the generations done


def evolve(cfg: RunConfig, tracker: EvolutionTracker, backend: Backend, progress: bool = True,
           resume: bool | str = False) -> Summary:
    """Run (or with `resume`, continue) an evolution; the tracker records it, the backend trains.

    `resume=True` continues the latest unfinished evolution of the tracker's experiment, a string
    continues that parent run id; the run's own saved config is used (only tracking, backend and
    state_dir come from `cfg`), so it ends exactly as the uninterrupted run would.
    """
    t0 = time.perf_counter()
    run = open_run(cfg, tracker, resume)
    cfg, members, history = run.cfg, run.members, run.history
    items = draw_items(cfg)
    bar = _bar(progress, run.start, cfg.generations)
    prev = _parents_of(cfg, run.run_id, run.start)
    for g in range(run.start, cfg.generations):
        gen = run_generation(cfg, backend, run.base, members, items, g)
        history.append(gen.row)
        if prev is not None:     # heritability and response to selection (evolve/response.py)
            gen.row["metrics"].update(generation_metrics(rows_of(prev), rows_of(gen.records)))
        prev = gen.records
        export_champion(run.base, state_dir(cfg, run.run_id), gen)
        save_state(cfg, run.run_id, Saved(g, gen.records, gen.states, gen.cases, gen.ranks,
                                          history), gen.trajectories)
        members = close_generation(cfg, tracker, run.run_id, Saved(
            g, gen.records, gen.states, gen.cases, gen.ranks, history))
        _tick(bar, history[-1])
    if bar is not None:
        bar.close()
    return finish(cfg, tracker, run.run_id, history, time.perf_counter() - t0)


def close_generation(cfg: RunConfig, tracker: EvolutionTracker, run_id: str, saved: Saved) -> list[Member]:
    """After a generation's state is saved: the tracker logs it, then the next generation's
    members are selected and varied ([] after the last). Resume runs this for a generation that
    was saved but not logged when the run died."""
    g = saved.generation
    tracker.log_artifact(trajectories_file(cfg, run_id, g), "trajectories")
    tracker.log_generation(g, saved.records, saved.history[-1]["metrics"],
                           plots=draw_plots(cfg, g))
    return next_members(cfg, saved)


def next_members(cfg: RunConfig, saved: Saved) -> list[Member]:
    """The members of the generation after `saved` ([] after the last)."""
    if saved.generation + 1 >= cfg.generations:
        return []
    return select_and_vary(cfg, cfg.gene_space(), saved.records, saved.states, saved.cases,
                           saved.generation, saved.ranks)


def open_run(cfg: RunConfig, tracker: EvolutionTracker, resume: bool | str) -> Run:
    """Start a run, or reopen one where its saved state ends. A generation saved but not fully
    logged when the run died is logged now."""
    from evolve.basemodel import resolve_base

    if resume is False:
        base = str(resolve_base(cfg.base))  # a bad base fails here, before anything is recorded
        run_id = tracker.start_evolution(cfg.to_dict())
        save_run_config(cfg, run_id)
        return Run(cfg, run_id, base, 0, init_population(cfg, cfg.gene_space()), [])
    run_id, done = tracker.resume_evolution(None if resume is True else str(resume))
    cfg = load_run_config(cfg, run_id)
    base = str(resolve_base(cfg.base))
    saved = load_state(cfg, run_id)
    if saved is None:                      # died inside generation 0
        return Run(cfg, run_id, base, 0, init_population(cfg, cfg.gene_space()), [])
    if saved.generation > done:            # killed after saving, before the tracker had it all
        members = close_generation(cfg, tracker, run_id, saved)
    else:
        members = next_members(cfg, saved)
    return Run(cfg, run_id, base, saved.generation + 1, members, saved.history)


def _parents_of(cfg: RunConfig, run_id: str, start: int) -> list[LearnerRecord] | None:
    """The records of generation `start` - 1 (a resumed run's parents), None at generation 0."""
    saved = load_state(cfg, run_id) if start > 0 else None
    return None if saved is None else list(saved.records)


def draw_plots(cfg: RunConfig, generation: int) -> bool:
    """Whether the tracker redraws the plots after `generation`: every generation, or only after
    the last (they cover the whole evolution; 5-10 s per drawing under load)."""
    return cfg.tracking.draw_plots == "every" or generation == cfg.generations - 1


def _tick(bar: Any, row: dict[str, Any]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(champion=row["champion"], fitness=f"{row['champion_fitness']:.3f}")


def export_champion(base: str, directory: Path, gen: Generation) -> None:
    """Write the generation champion's adapter in PEFT format and point its record at it."""
    from evolve.train import export_adapter

    records, row = gen.records, gen.row
    i = [r.learner_id for r in records].index(row["champion"])
    out = directory / "adapters" / row["champion"]
    records[i].adapter_dir = str(export_adapter(base, gen.states[i], out))
    row["adapter_dir"] = records[i].adapter_dir


def finish(cfg: RunConfig, tracker: EvolutionTracker, run_id: str, history: list[dict[str, Any]],
           seconds: float) -> Summary:
    """Register the last champion as a model version, close the run, return the summary."""
    last = history[-1]
    saved = load_state(cfg, run_id)
    if saved is None:
        raise EvolveError(f"no saved state for run {run_id} under {cfg.state_dir}; cannot finish it")
    records: dict[str, LearnerRecord] = {r.learner_id: r for r in saved.records}
    version = tracker.register_champion(records[last["champion"]], cfg.tracking.model_name)
    tracker.finish("FINISHED")
    return Summary(run_id=run_id, experiment_id=str(tracker.experiment_id),
                   champion=last["champion"], champion_fitness=last["champion_fitness"],
                   generations=history, model_version=str(version),
                   champion_adapter=last.get("adapter_dir"), seconds=seconds)


def _bar(progress: bool, start: int, total: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc="generations", unit="gen", dynamic_ncols=True)
