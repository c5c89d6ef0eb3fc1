"""Variation operators: how a child genome (and the plan for its adapter) comes from its parents.

Every operator has the signature `fn(parents: Sequence[Parent], space, rng, **params) -> Child`.
`parents[0]` is the primary parent: the child starts from its genome and (Lamarckian) inherits its
adapter unless `Child.merge` says to merge the parents' adapters. Every change is one decision line
(grammar in docs/operators.md) that `apply_decisions` replays exactly:

    lr : 3e-4 --- (* 0.8) --> 2.4e-4
    curriculum : random --- (neighbour) --> easy_first
    rank : 4 --- (resample) --> 8
    parents: g2-l3 x g2-l5 (svd merge)
    seed : 11 --- (reseed) --> 812
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from deap import tools

from common.errors import EvolveError
from common.ranges import SCALED_KINDS, ParamRange, round_sig
from evolve.config import VariationConfig
from evolve.genome import (
    GENE_TABLE,
    GeneSpace,
    Genome,
    fmt_value,
    sample_curriculum_params,
    strategy_ranges,
)
from evolve.operators.decisions import (
    MERGE_METHODS,
    MergePlan,
    adapter_plan,
    apply_decisions,
    gene_line,
    merge_line,
)
from evolve.operators.registry import VARIATION
from evolve.operators.selection import check_params, seed_deap

_RANK = {"clone": 0, "mutate": 1, "crossover": 2}


@dataclass(frozen=True)
class Parent:
    id: str                 # learner id, e.g. "g2-l3"
    genome: Genome


@dataclass
class Child:
    genome: Genome
    decisions: list[str] = field(default_factory=list)
    parents: tuple[str, ...] = ()
    operator: str = "clone"                # evolve.records.OPERATORS: clone | mutate | crossover
    merge: MergePlan | None = None         # None: inherit parents[0]'s adapter
    noise: tuple[float, int] | None = None  # (relative std, seed) Gaussian noise on the adapter


def _ordered(v: Any, choices: Sequence[Any], rng: random.Random) -> tuple[Any, str]:
    """Ray-PBT categorical step: to an adjacent choice (resample if `v` is not a choice)."""
    choices = list(choices)
    if v not in choices:
        return rng.choice(choices), "resample"
    i = choices.index(v)
    j = i + rng.choice((-1, 1))
    j = min(max(j, 0), len(choices) - 1) if len(choices) > 1 else i
    if j == i and len(choices) > 1:            # at an edge the only neighbour is the other side
        j = i + 1 if i == 0 else i - 1
    return choices[j], "neighbour"


def _scale(v: float, lo: float, hi: float, rng: random.Random) -> tuple[float, str]:
    """Ray-PBT continuous step: x 1.2 or x 0.8, clipped to [lo, hi]."""
    f = rng.choice((1.2, 0.8))
    new = round_sig(v * f)
    if new < lo or new > hi:
        return min(max(new, lo), hi), f"* {f} clip"
    return new, f"* {f}"


def move(v: Any, r: ParamRange, rng: random.Random) -> tuple[Any, str]:
    """One PBT explore step of value `v` in range `r`, by the range's kind: floats x1.2 / x0.8
    (clipped), ints and choices to a neighbour. The one place a gene or strategy parameter moves."""
    if r.kind in SCALED_KINDS:
        return _scale(float(v), r.low, r.high, rng)
    return _ordered(v, r.steps(), rng)


# The genes that take steps rather than scale: int, ordered and choice ranges (rank, target_modules,
# curriculum, steps_per_item; seed is never explored).
CATEGORICAL_GENES = tuple(g.name for g in GENE_TABLE if g.explore and g.kind not in SCALED_KINDS)


def explore(parents: Sequence[Parent], space: GeneSpace, rng: random.Random,
            resample_p: float = 0.25, categorical_p: float = 1.0) -> Child:
    """Ray-PBT perturb: floats x1.2/x0.8, choices to a neighbour with probability categorical_p.

    Perturb every gene but `seed` and `space.fixed`: with probability `resample_p` resample it
    from `space`, else floats x1.2 or x0.8 (clipped to the range) and choices to a neighbour. A
    categorical gene (`CATEGORICAL_GENES`) moves at all only with probability `categorical_p`
    (`variation.categorical_p`): a rank, curriculum or steps-per-item change discards much of what
    made the parent good, so a child keeps them by default (1.0 = the PBT rule: always move)."""
    for what, p in (("resample_p", resample_p), ("categorical_p", categorical_p)):
        if not 0 <= p <= 1:
            raise EvolveError(f"explore {what} must be in [0, 1], got {p}")
    g = parents[0].genome.copy()
    lines: list[str] = []
    switched = False
    for gene in GENE_TABLE:
        name, r = gene.name, space.range(gene.name)
        if not gene.explore or name in space.fixed or r.single:
            continue
        if r.kind not in SCALED_KINDS and categorical_p < 1.0 and rng.random() >= categorical_p:
            continue
        old = getattr(g, name)
        if rng.random() < resample_p:
            new, how = r.sample(rng), "resample"
        else:
            new, how = move(old, r, rng)
        lines.append(gene_line(name, old, how, new))
        setattr(g, name, new)
        if gene.strategy and new != old:             # a new strategy has its own parameters
            switched, g.curriculum_params = True, {}
            for k, val in sample_curriculum_params(new, rng).items():
                lines.append(gene_line(f"curriculum_params.{k}", None, "resample", val))
                g.curriculum_params[k] = val
    if "curriculum_params" not in space.fixed and not switched:
        for k, r in sorted(strategy_ranges(g.curriculum).items()):
            old = g.curriculum_params.get(k)
            if old is None or rng.random() < resample_p:
                new, how = r.sample(rng), "resample"
            else:
                new, how = move(old, r, rng)
            lines.append(gene_line(f"curriculum_params.{k}", old, how, new))
            g.curriculum_params[k] = new
    return Child(g, lines, (parents[0].id,), "mutate")


def crossover(parents: Sequence[Parent], space: GeneSpace, rng: random.Random,
              indpb: float = 0.5) -> Child:
    """uniform crossover of two genomes, gene by gene (DEAP cxUniform).

    Each gene from parents[1] with probability `indpb`, else from parents[0]. The curriculum
    travels with its parameters. The adapter is inherited from parents[0]."""
    if len(parents) < 2:
        raise EvolveError("crossover needs two parents; select k >= 2 for crossover")
    a, b = parents[0], parents[1]
    units = [gene.name for gene in GENE_TABLE]
    va = [getattr(a.genome, n) for n in units]
    vb = [getattr(b.genome, n) for n in units]
    seed_deap(rng.getrandbits(32))
    tools.cxUniform(va, vb, indpb)          # in place: va[i] <-> vb[i] with probability indpb
    g = a.genome.copy()
    lines = [f"parents: {a.id} x {b.id} (uniform crossover)"]
    for gene, new in zip(GENE_TABLE, va, strict=True):
        name, old = gene.name, getattr(g, gene.name)
        if gene.strategy and new != old:             # the strategy travels with its parameters
            lines.append(gene_line(name, old, f"from {b.id}", new))
            setattr(g, name, new)
            g.curriculum_params = dict(b.genome.curriculum_params)
            for k, v in sorted(g.curriculum_params.items()):
                lines.append(gene_line(f"curriculum_params.{k}", None, f"from {b.id}", v))
        elif new != old:
            lines.append(gene_line(name, old, f"from {b.id}", new))
            setattr(g, name, new)
    return Child(g, lines, (a.id, b.id), "crossover")


def merge(parents: Sequence[Parent], space: GeneSpace, rng: random.Random, method: str = "svd",
          weights: Sequence[float] | None = None, density: float = 0.5) -> Child:
    """adapter crossover: merge the parents' LoRA deltas (linear/svd/ties).

    The child keeps parents[0]'s genome (so its rank) and gets the merge of all parents'
    adapters, re-factorised to that rank. `weights` default: equal; `density` is for ties."""
    if method not in MERGE_METHODS:
        raise EvolveError(f"unknown merge method {method!r}; valid: {', '.join(MERGE_METHODS)}")
    if len(parents) < 2:
        raise EvolveError("merge needs two or more parents; select k >= 2 for merge")
    w = tuple(float(x) for x in (weights or [1.0 / len(parents)] * len(parents)))
    if len(w) != len(parents):
        raise EvolveError(f"merge got {len(w)} weights for {len(parents)} parents; give one each")
    plan = MergePlan(method, tuple(p.id for p in parents), w, float(density) if method == "ties" else 1.0)
    return Child(parents[0].genome.copy(), [merge_line(plan)], plan.parents, "crossover", merge=plan)


def reseed(parents: Sequence[Parent], space: GeneSpace, rng: random.Random) -> Child:
    """re-diversify: a new seed (curriculum stream order) for the child.

    A fresh seed from `space.seed`, always different from the parent's."""
    g = parents[0].genome.copy()
    old = g.seed
    while g.seed == old and space.seed[0] < space.seed[1]:
        g.seed = rng.randint(*space.seed)
    return Child(g, [gene_line("seed", old, "reseed", g.seed)], (parents[0].id,), "clone")


def noise(parents: Sequence[Parent], space: GeneSpace, rng: random.Random, std: float = 0.01) -> Child:
    """re-diversify: Gaussian noise on the inherited adapter (relative std).

    Genome unchanged; the engine adds N(0, (std * rms(tensor))^2) to every inherited adapter
    tensor with the logged seed (evolve.merge.add_noise)."""
    if not std >= 0:
        raise EvolveError(f"noise std must be >= 0, got {std}")
    seed = rng.getrandbits(31)
    line = f"adapter: gaussian noise std={fmt_value(float(std))} seed={seed}"
    return Child(parents[0].genome.copy(), [line], (parents[0].id,), "clone", noise=(float(std), seed))


Step = tuple[str, dict[str, Any]]   # (variation operator name, its params; `p` = probability)



def plan_child(j: int, chosen: Sequence[str], rng: random.Random, cfg: VariationConfig,
               lamarckian: bool) -> tuple[str | None, list[Step]]:
    """Which variation steps make child `j` of the selected parents `chosen` (ids, in selection
    order), DEAP `varAnd` style: with probability `crossover_p` a mate (another selected parent)
    and genome crossover (+ adapter merge when Lamarckian), else PBT explore with probability
    `explore_p`; then reseed and adapter noise as configured. Returns (mate id or None, steps)."""
    others = [c for c in chosen if c != chosen[j]]
    mate: str | None = None
    steps: list[Step] = []
    if others and rng.random() < cfg.crossover_p:
        mate = others[(j + rng.randrange(len(others))) % len(others)]
        steps.append(("crossover", {}))
        if lamarckian and cfg.merge != "none":
            steps.append(("merge", {"method": cfg.merge}))
    else:
        steps.append(("explore", {"p": cfg.explore_p, "resample_p": cfg.resample_p,
                                  "categorical_p": cfg.categorical_p}))
    if cfg.reseed:
        steps.append(("reseed", {}))
    if lamarckian and cfg.weight_noise > 0:
        steps.append(("noise", {"std": cfg.weight_noise}))
    return mate, steps


def vary(steps: Sequence[tuple[str, Mapping[str, Any]]], parents: Sequence[Parent],
         space: GeneSpace, rng: random.Random) -> Child:
    """Apply the operators in `steps` in order, each to the previous step's child (the first to
    `parents`). A step whose params hold `p` runs with that probability. Decisions concatenate;
    the operator is the strongest seen (crossover > mutate > clone)."""
    child = Child(parents[0].genome.copy(), [], (parents[0].id,), "clone")
    for name, params in steps:
        params = dict(params)
        p = float(params.pop("p", 1.0))
        if p < 1.0 and rng.random() >= p:
            continue
        fn = VARIATION.get(name)
        check_params(fn, params, f"variation operator {name}")
        out = fn([Parent(parents[0].id, child.genome), *parents[1:]], space, rng,
                                  **params)
        child = Child(out.genome, child.decisions + out.decisions,
                      tuple(dict.fromkeys(child.parents + out.parents)),
                      max(child.operator, out.operator, key=_RANK.__getitem__),
                      out.merge or child.merge, out.noise or child.noise)
    return child


__all__ = ["MERGE_METHODS", "Child", "MergePlan", "Parent", "adapter_plan", "apply_decisions", "crossover", "explore",
           "merge", "noise", "plan_child", "reseed", "vary"]
