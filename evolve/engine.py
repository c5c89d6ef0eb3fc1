"""The generation loop: `evolve(cfg, tracker, backend) -> Summary`.

Each generation, as named phases: draw items → build streams → train and probe → compute signals →
score → record → select and vary. Every seed derives from the run seed (`derive_seed`), items are
fresh each generation while a holdout and a set of never-trained probe items stay fixed, and the
state needed to continue (records, genomes, learner states with their AdamW state) is saved under
`state_dir/<run id>/` before the tracker logs a generation, so `--resume` ends exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from common.errors import EvolveError
from common.seeds import derive_seed
from evolve.config import RunConfig, from_dict, load_yaml
from evolve.genome import GeneSpace, Genome, sample_genome
from evolve.records import LearnerRecord
from evolve.response import generation_metrics, rows_of
from evolve.train import GroupJob, GroupResult, LearnerPlan


@dataclass
class Member:
    """A learner of the generation about to train: genome, inherited state, how it came to be."""

    learner_id: str
    genome: Genome
    state: Any | None = None                     # learners LearnerState, None = fresh adapter
    parents: list[str] = field(default_factory=list)
    operator: str = "init"
    decisions: list[str] = field(default_factory=list)


@dataclass
class Items:
    """The run's items: fixed holdout and probe sets, and fresh training items per generation."""

    holdout: list[Any]
    probe: list[Any]
    per_generation: list[list[Any]]


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


def evolve(cfg: RunConfig, tracker: Any, backend: Any, progress: bool = True,
           resume: bool | str = False) -> Summary:
    """Run (or with `resume`, continue) an evolution; the tracker records it, the backend trains.

    `resume=True` continues the latest unfinished evolution of the tracker's experiment, a string
    continues that parent run id; the run's own saved config is used (only tracking, backend and
    state_dir come from `cfg`), so it ends exactly as the uninterrupted run would.
    """
    t0 = time.perf_counter()
    cfg, run_id, base, start, members, history = open_run(cfg, tracker, resume)
    space, items = cfg.gene_space(), draw_items(cfg)
    bar = _bar(progress, start, cfg.generations)
    prev = _parents_of(cfg, run_id, start)
    for g in range(start, cfg.generations):
        plans = build_streams(cfg, members, g)
        trained = train_and_probe(cfg, backend, base, plans, items, g)
        trajs, table, cases = compute_signals(trained, items)
        ids = [m.learner_id for m in members]
        failed = {i for (res, _), i in zip(trained, ids, strict=True) if i in res.failures}
        fit, ranks = score(cfg, ids, table, failed)
        records = record(cfg, g, members, trained, table, fit)
        states = [res.final_states[p] for res, p in trained]
        history.append(summarise(cfg, g, records, trained))
        if prev is not None:     # heritability and response to selection (evolve/response.py)
            history[-1]["metrics"].update(generation_metrics(rows_of(prev), rows_of(records)))
        prev = records
        export_champion(cfg, base, run_id, records, states, history[-1])
        save_state(cfg, run_id, g, records, states, cases, ranks, history, trajs)
        tracker.log_artifact(state_dir(cfg, run_id) / f"trajectories_g{g}.json", "trajectories")
        tracker.log_generation(g, records, history[-1]["metrics"], plots=draw_plots(cfg, g))
        if g + 1 < cfg.generations:
            members = select_and_vary(cfg, space, records, states, cases, g, ranks)
        _tick(bar, history[-1])
    if bar is not None:
        bar.close()
    return finish(cfg, tracker, run_id, history, time.perf_counter() - t0)


def open_run(cfg: RunConfig, tracker: Any, resume: bool | str,
             ) -> tuple[RunConfig, str, str, int, list[Member], list[dict[str, Any]]]:
    """Start a run, or reopen one: (config, run id, base dir, first generation, its members,
    summary rows so far). A generation saved but not fully logged when the run died is re-logged."""
    from evolve.basemodel import resolve_base

    if resume is False:
        base = str(resolve_base(cfg.base))  # a bad base fails here, before anything is recorded
        run_id = tracker.start_evolution(cfg.to_dict())
        save_run_config(cfg, run_id)
        return cfg, run_id, base, 0, init_population(cfg, cfg.gene_space()), []
    run_id, done = tracker.resume_evolution(None if resume is True else str(resume))
    cfg = load_run_config(cfg, run_id)
    base = str(resolve_base(cfg.base))
    saved = load_state(cfg, run_id)
    if saved is None:                      # died inside generation 0
        return cfg, run_id, base, 0, init_population(cfg, cfg.gene_space()), []
    g, history = saved["generation"], saved["history"]
    if g > done:                           # killed after saving, before the tracker had it all
        tracker.log_artifact(state_dir(cfg, run_id) / f"trajectories_g{g}.json", "trajectories")
        tracker.log_generation(g, _records(saved), history[-1]["metrics"],
                               plots=draw_plots(cfg, g))
    members = [] if g + 1 >= cfg.generations else select_and_vary(
        cfg, cfg.gene_space(), _records(saved), saved["states"], saved["cases"], g, saved["ranks"])
    return cfg, run_id, base, g + 1, members, history


def _parents_of(cfg: RunConfig, run_id: str, start: int) -> list[LearnerRecord] | None:
    """The records of generation `start` - 1 (a resumed run's parents), None at generation 0."""
    saved = load_state(cfg, run_id) if start > 0 else None
    return None if saved is None else list(saved["records_objs"])


def draw_plots(cfg: RunConfig, generation: int) -> bool:
    """Whether the tracker redraws the plots after `generation`: every generation, or only after
    the last (they cover the whole evolution; 5-10 s per drawing under load)."""
    return cfg.tracking.draw_plots == "every" or generation == cfg.generations - 1


def _tick(bar: Any, row: dict[str, Any]) -> None:
    if bar is not None:
        bar.update(1)
        bar.set_postfix(champion=row["champion"], fitness=f"{row['champion_fitness']:.3f}")


def init_population(cfg: RunConfig, space: GeneSpace) -> list[Member]:
    """Generation 0: genomes sampled from the gene space, one seeded RNG per learner."""
    members: list[Member] = []
    for i in range(cfg.population):
        genome = sample_genome(space, random.Random(derive_seed(cfg.seed, "genome", i)))
        members.append(Member(f"g0-l{i}", genome, None, [], "init",
                              ["parents: none (init, sampled from the gene space)"]))
    return members


# --- phases ---------------------------------------------------------------------------------


def draw_items(cfg: RunConfig) -> Items:
    """One seeded draw per task, split into holdout | probe | generation 0 | generation 1 | ..."""
    holdout, probe = [], []
    per_gen: list[list[Any]] = [[] for _ in range(cfg.generations)]
    for t, task in enumerate(cfg.tasks):
        need = task.holdout + task.probe + task.n * cfg.generations
        try:
            items = task.make().generate(need, seed=derive_seed(cfg.seed, "items", t))
        except ValueError as exc:
            raise EvolveError(f"tasks.{t} ({task.family}): cannot draw {need} distinct items "
                              f"(holdout + probe + n x generations): {exc}") from None
        holdout += items[:task.holdout]
        probe += items[task.holdout:task.total]
        for g in range(cfg.generations):
            per_gen[g] += items[task.total + g * task.n: task.total + (g + 1) * task.n]
    return Items(holdout, probe, per_gen)


def build_streams(cfg: RunConfig, members: Sequence[Member], generation: int) -> list[LearnerPlan]:
    """Each learner's stream recipe (ordering happens where its baseline probe is: in the job)."""
    plans = []
    for m in members:
        g = m.genome
        plans.append(LearnerPlan(
            learner_id=m.learner_id, spec=g.to_spec(), state=m.state, curriculum=g.curriculum,
            curriculum_params=dict(g.curriculum_params),
            stream_seed=derive_seed(g.seed, "stream", generation),
            rehearsal_ratio=g.rehearsal_ratio, steps_per_item=g.steps_per_item))
    return plans


def train_and_probe(cfg: RunConfig, backend: Any, base: str, plans: list[LearnerPlan],
                    items: Items, generation: int) -> list[tuple[GroupResult, int]]:
    """Split the learners into `cfg.groups` contiguous groups, run them; (result, index) per learner."""
    P = len(plans)
    G = min(cfg.groups, P)
    bounds = [round(i * P / G) for i in range(G + 1)]
    jobs = [make_job(cfg, base, plans[bounds[i]:bounds[i + 1]], items, generation, i)
            for i in range(G)]
    results = backend.run_groups(jobs)
    return [(r, p) for r in results for p in range(len(r.learner_ids))]


def make_job(cfg: RunConfig, base: str, plans: list[LearnerPlan], items: Items, generation: int,
             group: int, assess: bool = True) -> GroupJob:
    """The job of one group in one generation (also what `evolve replay` trains alone)."""
    assess_on = assess and cfg.assess.every > 0 and (
        generation % cfg.assess.every == 0 or generation == cfg.generations - 1)
    probe = items.probe
    if cfg.assess.items and cfg.assess.items < len(probe):
        probe = random.Random(derive_seed(cfg.seed, "assess-items")).sample(probe, cfg.assess.items)
    return GroupJob(
        base=base, generation=generation, learners=plans,
        items=items.per_generation[generation], holdout=items.holdout,
        rehearsal_pool=[it for g in range(generation) for it in items.per_generation[g]],
        batch_size=cfg.training.batch_size, checkpoint_every=cfg.training.checkpoint_every,
        max_grad_norm=cfg.training.max_grad_norm, spectral=cfg.training.spectral and assess,
        assess_items=probe, assess_steps=cfg.assess.steps if assess_on else 0,
        assess_checkpoints=cfg.assess.checkpoints, max_new_tokens=cfg.training.max_new_tokens,
        device=cfg.training.device,   # `auto` travels as is: whoever runs the job resolves it
        seed=derive_seed(cfg.seed, "group", generation, group), group=group)


def compute_signals(trained: list[tuple[GroupResult, int]], items: Items,
                    ) -> tuple[list[Any], list[dict[str, float | None]], list[dict[str, float]]]:
    """Trajectories, signal values (incl. assess_*) and per-task cases for every learner."""
    import fitness
    from evolve.trajectories import trajectory

    family = {it.id: it.family for gen in items.per_generation for it in gen}
    trajs, table, cases = [], [], []
    for res, p in trained:
        traj = trajectory(res, p)
        values = {n: v.value for n, v in fitness.compute_signals(traj).items()}
        values.update(res.assess[p])
        trajs.append(traj)
        table.append({n: (None if v is None else float(v)) for n, v in values.items()})
        cases.append(_task_cases(res, p, family))
    return trajs, table, cases


def _task_cases(res: GroupResult, p: int, family: dict[str, str]) -> dict[str, float]:
    """Per-family accuracy on this generation's items at the last checkpoint (lexicase cases)."""
    fams: dict[str, list[bool]] = {}
    for j, iid in enumerate(res.item_ids[:res.n_train]):
        fams.setdefault(family[iid], []).append(bool(res.correct[-1, p, j]))
    return {f"task.{f}": float(np.mean(v)) for f, v in sorted(fams.items())}


def score(cfg: RunConfig, ids: list[str], table: list[dict[str, float | None]],
          failed: set[str]) -> tuple[dict[str, float], dict[str, tuple[int, float]]]:
    """Fitness per learner (weighted combine, or -front + crowding bonus in pareto mode)."""
    import fitness
    from evolve.assess import META

    named = dict(zip(ids, table, strict=True))
    if cfg.fitness.mode == "pareto":
        ranks = fitness.pareto_ranks(named, cfg.fitness.pareto_signals, failed=failed, meta=META)
        # -front keeps fronts apart; the crowding bonus is < 0.5 so it only orders within a front
        fit = {i: (-ranks[i][0] + 0.5 * _squash(ranks[i][1])) if i in ranks else -math.inf
               for i in ids}
        return fit, ranks
    fit = fitness.combine(named, cfg.fitness.weights, normalise=cfg.fitness.normalise,
                          failed=failed, meta=META)
    return {i: (-math.inf if i in failed else float(fit[i])) for i in ids}, {}


def _squash(c: float) -> float:
    return 1.0 if math.isinf(c) else c / (1.0 + c)


def record(cfg: RunConfig, generation: int, members: Sequence[Member],
           trained: list[tuple[GroupResult, int]], table: list[dict[str, float | None]],
           fit: dict[str, float]) -> list[LearnerRecord]:
    """One LearnerRecord per learner: genome, lineage, decisions, fitness, signals, curves."""
    from evolve.trajectories import curves

    out = []
    for m, (res, p), values in zip(members, trained, table, strict=True):
        failure = res.failures.get(m.learner_id, "")
        out.append(LearnerRecord(
            learner_id=m.learner_id, generation=generation, genome=m.genome.to_params(),
            parents=list(m.parents), operator=m.operator, decisions=list(m.decisions),
            fitness=fit[m.learner_id], failed=bool(failure), failure=failure, signals=values,
            curves=curves(res, p)))
    return out


def select_and_vary(cfg: RunConfig, space: GeneSpace, records: list[LearnerRecord],
                    states: list[Any], cases: list[dict[str, float]], generation: int,
                    ranks: dict[str, tuple[int, float]]) -> list[Member]:
    """The next generation: elites (full state), then selected parents varied (and inherited)."""
    from evolve import arms
    from evolve.operators.selection import Individual, elitism, select
    from evolve.operators.variation import Parent, vary

    rng = random.Random(derive_seed(cfg.seed, "vary", generation))
    pop = [Individual(id=r.learner_id, fitness=-math.inf if r.failed else float(r.fitness or 0.0),
                      signals=dict(r.signals), front=ranks.get(r.learner_id, (None, None))[0],
                      crowding=ranks.get(r.learner_id, (None, None))[1], cases=c)
           for r, c in zip(records, cases, strict=True)]
    pop = arms.basis(cfg.selection.basis, pop, random.Random(derive_seed(cfg.seed, "basis", generation)))
    by_id = {r.learner_id: (Genome.from_params(r.genome), s) for r, s in zip(records, states,
                                                                               strict=True)}
    nxt = generation + 1
    members: list[Member] = []
    for ind in elitism(pop, cfg.selection.elitism):
        genome, state = by_id[ind.id]
        members.append(Member(f"g{nxt}-l{len(members)}", genome.copy(), _lamarck(cfg, state),
                              [ind.id], "clone", [f"parents: {ind.id} (elite clone)"]))
    params = dict(cfg.selection.params)
    if cfg.selection.operator == "nsga2":
        params.setdefault("objectives", list(cfg.fitness.pareto_signals))
    chosen = select(cfg.selection.operator, pop, cfg.population - len(members), rng, **params)
    for j, ind in enumerate(chosen):
        parents = [Parent(ind.id, by_id[ind.id][0])]
        others = [c for c in chosen if c.id != ind.id]
        steps: list[tuple[str, dict[str, Any]]] = []
        if others and rng.random() < cfg.variation.crossover_p:
            mate = others[(j + rng.randrange(len(others))) % len(others)]
            parents.append(Parent(mate.id, by_id[mate.id][0]))
            steps.append(("crossover", {}))
            if cfg.inheritance == "lamarckian" and cfg.variation.merge != "none":
                steps.append(("merge", {"method": cfg.variation.merge}))
        else:
            steps.append(("explore", {"p": cfg.variation.explore_p,
                                      "resample_p": cfg.variation.resample_p,
                                      "categorical_p": cfg.variation.categorical_p}))
        if cfg.variation.reseed:
            steps.append(("reseed", {}))
        if cfg.inheritance == "lamarckian" and cfg.variation.weight_noise > 0:
            steps.append(("noise", {"std": cfg.variation.weight_noise}))
        child = vary(steps, parents, space, rng)
        state = inherit(cfg, child, {p.id: by_id[p.id][1] for p in parents})
        members.append(Member(f"g{nxt}-l{len(members)}", child.genome, state,
                              list(child.parents), child.operator, list(child.decisions)))
    return members


def _lamarck(cfg: RunConfig, state: Any) -> Any:
    return state if cfg.inheritance == "lamarckian" else None


def inherit(cfg: RunConfig, child: Any, parent_states: dict[str, Any]) -> Any:
    """The child's starting state: None (Darwinian), the merged adapters of its parents, or its
    first parent's full state (adapter AND AdamW state); a rank change pads or truncates it."""
    if cfg.inheritance != "lamarckian":
        return None
    from evolve.train import child_state

    return child_state(child.genome, list(child.parents), child.merge, child.noise, parent_states,
                       refactorise=cfg.variation.rank_change == "refactorise")


# --- summaries, champion, end of run --------------------------------------------------------


def summarise(cfg: RunConfig, generation: int, records: list[LearnerRecord],
              trained: list[tuple[GroupResult, int]]) -> dict[str, Any]:
    """The generation's row: champion, its fitness parts, mean fitness, timings (parent metrics)."""
    ok = [r for r in records if not r.failed and r.fitness is not None and math.isfinite(r.fitness)]
    if not ok:
        raise EvolveError(f"all {len(records)} learners failed in generation {generation} (nan loss); "
                          "lower the learning-rate range (genome.lr) or fix the task")
    champ = max(ok, key=lambda r: r.fitness or 0.0)
    mean = float(np.mean([r.fitness for r in ok]))
    timings: dict[str, float] = {}
    for res in {id(res): res for res, _ in trained}.values():
        for k, v in res.timings.items():
            timings[k] = timings.get(k, 0.0) + float(v)
    metrics = {"champion_fitness": float(champ.fitness or 0.0), "mean_fitness": mean,
               "failed_learners": float(len(records) - len(ok)), **timings}
    for name in ("assess_gain", "assess_learned_share", "assess_initial_accuracy", "assess_auc",
                 "assess_learned_per_100"):
        vals = [r.signals.get(name) for r in ok if r.signals.get(name) is not None]
        if vals:
            metrics[f"{name}_mean"] = float(np.mean(vals))  # type: ignore[arg-type]
    parts = {n: champ.signals.get(n) for n in cfg.fitness.weights}
    return {"generation": generation, "champion": champ.learner_id,
            "champion_fitness": float(champ.fitness or 0.0), "mean_fitness": mean, "parts": parts,
            "metrics": metrics}


def export_champion(cfg: RunConfig, base: str, run_id: str, records: list[LearnerRecord],
                    states: list[Any], row: dict[str, Any]) -> None:
    """Write the generation champion's adapter in PEFT format and point its record at it."""
    from evolve.train import export_adapter

    i = [r.learner_id for r in records].index(row["champion"])
    out = state_dir(cfg, run_id) / "adapters" / row["champion"]
    records[i].adapter_dir = str(export_adapter(base, states[i], out))
    row["adapter_dir"] = records[i].adapter_dir


def finish(cfg: RunConfig, tracker: Any, run_id: str, history: list[dict[str, Any]],
           seconds: float) -> Summary:
    """Register the last champion as a model version, close the run, return the summary."""
    last = history[-1]
    saved = load_state(cfg, run_id)
    if saved is None:
        raise EvolveError(f"no saved state for run {run_id} under {cfg.state_dir}; cannot finish it")
    records = {r.learner_id: r for r in saved["records_objs"]}
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


# --- resume state ---------------------------------------------------------------------------


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


def save_state(cfg: RunConfig, run_id: str, generation: int, records: list[LearnerRecord],
               states: list[Any], cases: list[dict[str, float]],
               ranks: dict[str, tuple[int, float]], history: list[dict[str, Any]],
               trajs: list[Any]) -> None:
    """Everything needed to continue after `generation`, written atomically (tmp + rename)."""
    import os

    import torch

    from fitness.formats import save_evolve

    d = state_dir(cfg, run_id)
    save_evolve(trajs, d / f"trajectories_g{generation}.json")
    blob = {"generation": generation, "records": [r.to_dict() for r in records], "states": states,
            "cases": cases, "ranks": ranks, "history": history}
    tmp = d / "state.pt.tmp"
    torch.save(blob, tmp)
    os.replace(tmp, d / "state.pt")


def load_state(cfg: RunConfig, run_id: str) -> dict[str, Any] | None:
    """The state saved after the last completed generation, or None before the first."""
    import torch

    path = Path(cfg.state_dir) / run_id / "state.pt"
    if not path.is_file():
        return None
    blob = torch.load(path, weights_only=False)
    blob["records_objs"] = _records(blob)
    return blob  # type: ignore[no-any-return]


def _records(saved: dict[str, Any]) -> list[LearnerRecord]:
    return [LearnerRecord.from_dict(d) for d in saved["records"]]
