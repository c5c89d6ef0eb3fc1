"""One generation as one function: `run_generation(...)`, and the phases it runs in order.

build streams → train and probe (learners split into groups, each group one backend job, results
sliced once into per-learner results) → compute signals → score → record → summarise. Then, for
every generation but the last, `select_and_vary` makes the next generation's members. The engine,
resume and the tests all call these; nothing else repeats them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from common.errors import EvolveError
from common.seeds import derive_seed
from evolve.config import RunConfig
from evolve.genome import GeneSpace, Genome, sample_genome
from evolve.records import LearnerRecord, learner_id
from evolve.train import GroupJob, LearnerPlan, LearnerResult

if TYPE_CHECKING:
    from curricula.items import Item
    from evolve.backends import Backend
    from evolve.operators.variation import Child
    from fitness import Trajectory
    from learners.population import LearnerState


@dataclass
class Member:
    """A learner of the generation about to train: genome, inherited state, how it came to be."""

    learner_id: str
    genome: Genome
    state: LearnerState | None = None            # inherited; None = fresh adapter
    parents: list[str] = field(default_factory=list)
    operator: str = "init"
    decisions: list[str] = field(default_factory=list)


@dataclass
class Items:
    """The run's items: fixed holdout and probe sets, and fresh training items per generation."""

    holdout: list[Item]
    probe: list[Item]
    per_generation: list[list[Item]]


@dataclass
class Generation:
    """What one generation produced, in member order."""

    records: list[LearnerRecord]
    states: list[LearnerState]                   # each learner's final state
    cases: list[dict[str, float]]                # per-task accuracy (lexicase cases)
    ranks: dict[str, tuple[int, float]]          # Pareto (front, crowding); {} when weighted
    trajectories: list[Trajectory]               # per learner
    row: dict[str, Any]                          # the summary row: champion, fitness, metrics


def group_bounds(population: int, groups: int) -> list[int]:
    """Learner index bounds of the `groups` contiguous groups (at most one group per learner):
    group i trains learners bounds[i] .. bounds[i+1] - 1."""
    G = min(groups, population)
    return [round(i * population / G) for i in range(G + 1)]


def group_of(index: int, population: int, groups: int) -> int:
    """The group learner `index` trains in (the job seed depends on it)."""
    bounds = group_bounds(population, groups)
    return next(i for i in range(len(bounds) - 1) if bounds[i + 1] > index)


def run_generation(cfg: RunConfig, backend: Backend, base: str, members: Sequence[Member],
                   items: Items, generation: int) -> Generation:
    """Train, probe, score and record `members` for `generation` (see the module doc)."""
    plans = build_streams(cfg, members, generation)
    learners, timings = train_and_probe(cfg, backend, base, plans, items, generation)
    trajs, table, cases = compute_signals(learners, items)
    ids = [m.learner_id for m in members]
    failed = {r.learner_id for r in learners if r.failure}
    fit, ranks = score(cfg, ids, table, failed)
    records = record(generation, members, learners, table, fit)
    row = summarise(cfg, generation, records, timings)
    return Generation(records, [r.final_state for r in learners], cases, ranks, trajs, row)


def init_population(cfg: RunConfig, space: GeneSpace) -> list[Member]:
    """Generation 0: genomes sampled from the gene space, one seeded RNG per learner."""
    members: list[Member] = []
    for i in range(cfg.population):
        genome = sample_genome(space, random.Random(derive_seed(cfg.seed, "genome", i)))
        members.append(Member(learner_id(0, i), genome, None, [], "init",
                              ["parents: none (init, sampled from the gene space)"]))
    return members


def draw_items(cfg: RunConfig) -> Items:
    """One seeded draw per task, split into holdout | probe | generation 0 | generation 1 | ..."""
    holdout: list[Item] = []
    probe: list[Item] = []
    per_gen: list[list[Item]] = [[] for _ in range(cfg.generations)]
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


def train_and_probe(cfg: RunConfig, backend: Backend, base: str, plans: list[LearnerPlan],
                    items: Items, generation: int) -> tuple[list[LearnerResult], dict[str, float]]:
    """Run the learners in `group_bounds` groups; per-learner results, and the groups' summed
    timings (seconds per phase)."""
    bounds = group_bounds(len(plans), cfg.groups)
    jobs = [make_job(cfg, base, plans[bounds[i]:bounds[i + 1]], items, generation, i)
            for i in range(len(bounds) - 1)]
    results = backend.run_groups(jobs)
    timings: dict[str, float] = {}
    for res in results:
        for k, v in res.timings.items():
            timings[k] = timings.get(k, 0.0) + float(v)
    return [r for res in results for r in res.per_learner()], timings


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
        epochs=cfg.training.epochs, probe_passes=cfg.training.probe_passes,
        max_grad_norm=cfg.training.max_grad_norm,
        adam_beta2=cfg.training.adam_beta2, init_scale=cfg.training.init_scale,
        modules_to_save=tuple(cfg.training.modules_to_save),
        spectral=cfg.training.spectral and assess,
        assess_items=probe, assess_steps=cfg.assess.steps if assess_on else 0,
        assess_checkpoints=cfg.assess.checkpoints, max_new_tokens=cfg.training.max_new_tokens,
        device=cfg.training.device,   # `auto` travels as is: whoever runs the job resolves it
        seed=derive_seed(cfg.seed, "group", generation, group), group=group)


def compute_signals(learners: list[LearnerResult], items: Items,
                    ) -> tuple[list[Trajectory], list[dict[str, float | None]], list[dict[str, float]]]:
    """Trajectories, signal values (incl. assess_*) and per-task cases for every learner."""
    import fitness
    from evolve.trajectories import trajectory

    family = {it.id: it.family for gen in items.per_generation for it in gen}
    trajs, table, cases = [], [], []
    for res in learners:
        traj = trajectory(res)
        values = {n: v.value for n, v in fitness.compute_signals(traj).items()}
        values.update(res.assess)
        trajs.append(traj)
        table.append({n: (None if v is None else float(v)) for n, v in values.items()})
        cases.append(_task_cases(res, family))
    return trajs, table, cases


def _task_cases(res: LearnerResult, family: dict[str, str]) -> dict[str, float]:
    """Per-family accuracy on this generation's items at the last checkpoint (lexicase cases)."""
    fams: dict[str, list[bool]] = {}
    for j, iid in enumerate(res.item_ids[:res.n_train]):
        fams.setdefault(family[iid], []).append(bool(res.correct[-1, j]))
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


def record(generation: int, members: Sequence[Member], learners: list[LearnerResult],
           table: list[dict[str, float | None]], fit: dict[str, float]) -> list[LearnerRecord]:
    """One LearnerRecord per learner: genome, lineage, decisions, fitness, signals, curves."""
    from evolve.trajectories import curves

    out = []
    for m, res, values in zip(members, learners, table, strict=True):
        out.append(LearnerRecord(
            learner_id=m.learner_id, generation=generation, genome=m.genome.to_params(),
            parents=list(m.parents), operator=m.operator, decisions=list(m.decisions),
            fitness=fit[m.learner_id], failed=bool(res.failure), failure=res.failure,
            signals=values, curves=curves(res)))
    return out


def summarise(cfg: RunConfig, generation: int, records: list[LearnerRecord],
              timings: dict[str, float]) -> dict[str, Any]:
    """The generation's row: champion, its fitness parts, mean fitness, and the evolution run's
    metrics (`fitness_metrics` plus the timings)."""
    champ, metrics = fitness_metrics(generation, records)
    parts = {n: champ.signals.get(n) for n in cfg.fitness.weights}
    return {"generation": generation, "champion": champ.learner_id,
            "champion_fitness": metrics["champion_fitness"], "mean_fitness": metrics["mean_fitness"],
            "parts": parts, "metrics": {**metrics, **timings}}


def fitness_metrics(generation: int, records: Sequence[LearnerRecord],
                    ) -> tuple[LearnerRecord, dict[str, float]]:
    """The champion (highest fitness among the scored learners) and the generation's metrics:
    champion and mean fitness, failed learners, the mean of each averaged assessment outcome
    (`evolve.assess.AVERAGED`, as `<name>_mean`) and how many learners grokked. The one place
    these are computed."""
    from evolve.assess import AVERAGED

    ok = [r for r in records if r.scored]
    if not ok:
        raise EvolveError(f"all {len(records)} learners failed in generation {generation} (nan loss); "
                          "lower the learning-rate range (genome.lr) or fix the task")
    champ = max(ok, key=lambda r: r.fitness or 0.0)
    metrics = {"champion_fitness": float(champ.fitness or 0.0),
               "mean_fitness": float(np.mean([r.fitness for r in ok])),
               "failed_learners": float(len(records) - len(ok))}
    for name in AVERAGED:
        vals = [v for r in ok if (v := r.signals.get(name)) is not None]
        if vals:
            metrics[f"{name}_mean"] = float(np.mean(vals))
    grok = [r.signals["grokking"] for r in ok if r.signals.get("grokking") is not None]
    if grok:   # learners whose holdout jumped late (fitness.signals.generalisation)
        metrics["grokked_learners"] = float(sum(g == 1.0 for g in grok))
    return champ, metrics


def select_and_vary(cfg: RunConfig, space: GeneSpace, records: list[LearnerRecord],
                    states: list[LearnerState], cases: list[dict[str, float]], generation: int,
                    ranks: dict[str, tuple[int, float]]) -> list[Member]:
    """The next generation: elites (full state), then selected parents varied (and inherited)."""
    from evolve import arms
    from evolve.operators.selection import Individual, elitism, select
    from evolve.operators.variation import Parent, plan_child, vary

    rng = random.Random(derive_seed(cfg.seed, "vary", generation))
    pop = [Individual(id=r.learner_id, fitness=-math.inf if r.failed else float(r.fitness or 0.0),
                      signals=dict(r.signals), front=ranks.get(r.learner_id, (None, None))[0],
                      crowding=ranks.get(r.learner_id, (None, None))[1], cases=c)
           for r, c in zip(records, cases, strict=True)]
    pop = arms.basis(cfg.selection.basis, pop, random.Random(derive_seed(cfg.seed, "basis", generation)))
    by_id = {r.learner_id: (Genome.from_params(r.genome), s) for r, s in zip(records, states,
                                                                               strict=True)}
    nxt = generation + 1
    lamarckian = cfg.inheritance == "lamarckian"
    members: list[Member] = []
    for ind in elitism(pop, cfg.selection.elitism):
        genome, state = by_id[ind.id]
        members.append(Member(learner_id(nxt, len(members)), genome.copy(),
                              state if lamarckian else None, [ind.id], "clone",
                              [f"parents: {ind.id} (elite clone)"]))
    params = dict(cfg.selection.params)
    if cfg.selection.operator == "nsga2":
        params.setdefault("objectives", list(cfg.fitness.pareto_signals))
    chosen = [ind.id for ind in select(cfg.selection.operator, pop,
                                       cfg.population - len(members), rng, **params)]
    for j, pid in enumerate(chosen):
        mate, steps = plan_child(j, chosen, rng, cfg.variation, lamarckian)
        parents = [Parent(p, by_id[p][0]) for p in (pid, *([mate] if mate else []))]
        child = vary(steps, parents, space, rng)
        inherited = inherit(cfg, child, {p.id: by_id[p.id][1] for p in parents})
        members.append(Member(learner_id(nxt, len(members)), child.genome, inherited,
                              list(child.parents), child.operator, list(child.decisions)))
    return members


def inherit(cfg: RunConfig, child: Child, parent_states: dict[str, LearnerState],
            ) -> LearnerState | None:
    """The child's starting state: None (Darwinian), the merged adapters of its parents, or its
    first parent's full state (adapter AND AdamW state); a rank change pads or truncates it."""
    if cfg.inheritance != "lamarckian":
        return None
    from evolve.train import child_state

    return child_state(child.genome, list(child.parents), child.merge, child.noise, parent_states,
                       refactorise=cfg.variation.rank_change == "refactorise")
