"""Selection operators: which learners become parents of the next generation.

Every operator has the signature `fn(pop, k, rng, **params) -> list[Individual]` and returns `k`
individuals from `pop` (the same objects; a repeated object is a copy). Failed learners (fitness
-inf or nan) are never selected. DEAP's operators draw from the global `random`: each call that
uses DEAP first calls `seed_deap(rng.getrandbits(32))` — the only place the global RNG is seeded —
so a selection is a pure function of its `rng` and a resumed run selects as the uninterrupted one.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from deap import base, tools

from common.errors import EvolveError
from evolve.operators.registry import SELECTION


@dataclass
class Individual:
    """One learner as selection sees it."""

    id: str                                              # learner id, e.g. "g2-l3"
    fitness: float                                       # scalar; failed learners have -inf
    signals: dict[str, float | None] = field(default_factory=dict)   # raw signal values
    front: int | None = None                             # Pareto front (0 = best), if computed
    crowding: float | None = None                        # crowding distance in its front
    cases: dict[str, float] = field(default_factory=dict)   # per-task scores (higher is better)

    @property
    def failed(self) -> bool:
        return math.isnan(self.fitness) or self.fitness == -math.inf


class SignalFitness(base.Fitness):
    """DEAP fitness with per-instance weights (+1 maximise, -1 minimise).

    DEAP keeps `weights` on the class and `creator.create` would make a module-global class per
    weight set; setting them on the instance is the one subclass this package needs.
    """

    weights: tuple[float, ...] = ()

    def __init__(self, values: Sequence[float], weights: Sequence[float]) -> None:
        self.weights = tuple(float(w) for w in weights)
        super().__init__(tuple(values))


class _Wrapped:
    """An Individual carrying a DEAP fitness (DEAP reads `.fitness.values` / `.wvalues`)."""

    def __init__(self, ind: Individual, values: Sequence[float], weights: Sequence[float]) -> None:
        self.ind = ind
        self.fitness = SignalFitness(values, weights)


def seed_deap(seed: int) -> None:
    """Seed the global `random` that DEAP's operators draw from. The only place it is seeded."""
    random.seed(seed)


def valid(pop: Sequence[Individual]) -> list[Individual]:
    """The individuals that did not fail; raises if none is left."""
    ok = [p for p in pop if not p.failed]
    if not ok:
        raise EvolveError(f"all {len(pop)} learners failed (nan loss?); nothing to select from — "
                          "lower the learning-rate range in the gene space")
    return ok


def ranked(pop: Sequence[Individual]) -> list[Individual]:
    """Valid individuals, best fitness first (ties keep population order)."""
    return sorted(valid(pop), key=lambda p: -p.fitness)


def _check_k(k: int) -> None:
    if k < 0:
        raise EvolveError(f"selection k must be >= 0, got {k}")


def _columns(pop: Sequence[Individual], names: Sequence[str], source: str,
             weights: Sequence[float]) -> list[list[float]]:
    """[len(pop)][len(names)] values; a missing / non-finite value is made the column's worst,
    one column-range below (above, when minimised) the worst observed value."""
    rows = [[_get(p, n, source) for n in names] for p in pop]
    out: list[list[float]] = [[] for _ in rows]
    for j, w in enumerate(weights):
        col = [v for r in rows if (v := r[j]) is not None and math.isfinite(v)]
        span = (max(col) - min(col)) if col else 0.0
        if not col:   # nobody has a finite value: every entry is equally worst
            worst = 0.0
        else:
            worst = min(col) - (span or 1.0) if w > 0 else max(col) + (span or 1.0)
        for r, o in zip(rows, out, strict=True):
            v = r[j]
            o.append(v if v is not None and math.isfinite(v) else worst)
    return out


def _get(p: Individual, name: str, source: str) -> float | None:
    table = p.cases if source == "cases" else p.signals
    v = table.get(name)
    return None if v is None else float(v)


def _directions(names: Sequence[str], weights: Sequence[float] | None) -> list[float]:
    """+1 / -1 per signal: given, else from the fitness registry's `higher_is_better`."""
    if weights is not None:
        if len(weights) != len(names):
            raise EvolveError(f"{len(weights)} weights for {len(names)} objectives; give one each")
        return [1.0 if w > 0 else -1.0 for w in weights]
    from fitness.combine import direction  # unknown names (e.g. assess_*) maximise

    return [1.0 if direction(n)[0] else -1.0 for n in names]


def _cycle(chosen: list[Individual], k: int) -> list[Individual]:
    return [chosen[i % len(chosen)] for i in range(k)] if chosen else []


def tournament(pop: Sequence[Individual], k: int, rng: random.Random, size: int = 3,
               ) -> list[Individual]:
    """best of `size` drawn at random, k times (DEAP selTournament).

    k tournaments of `size` valid individuals drawn with replacement; the fittest of each wins."""
    _check_k(k)
    if size < 1:
        raise EvolveError(f"tournament size must be >= 1, got {size}")
    seed_deap(rng.getrandbits(32))
    return list(tools.selTournament(valid(pop), k, tournsize=size))


def truncation(pop: Sequence[Individual], k: int, rng: random.Random, quantile: float = 0.25,
               ) -> list[Individual]:
    """PBT exploit: bottom quantile replaced by copies of the top.

    Ray-PBT exploit. The best `k - n_bottom` valid individuals are kept (best first), then the
    bottom quantile (`round(quantile * k)`, at least every failed slot) is filled with copies drawn
    uniformly from the top quantile of the valid individuals (at least one)."""
    _check_k(k)
    if not 0 <= quantile <= 0.5:
        raise EvolveError(f"truncation quantile must be in [0, 0.5], got {quantile}")
    order = ranked(pop)
    n_bottom = max(round(quantile * k), k - len(order))
    keep = order[: k - n_bottom]
    top = order[: max(1, math.ceil(quantile * len(order)))]
    return keep + [rng.choice(top) for _ in range(n_bottom)]


def nsga2(pop: Sequence[Individual], k: int, rng: random.Random,
          objectives: Sequence[str] = (), weights: Sequence[float] | None = None,
          ) -> list[Individual]:
    """NSGA-II over chosen signals: Pareto fronts, then crowding (DEAP).

    DEAP `selNSGA2` over `objectives` (signal names; `weights` +1 maximise / -1 minimise, default
    from the fitness registry). Returns the first front first, then by crowding; sets each
    individual's `front` and `crowding`. k above the valid count cycles through the ranking."""
    _check_k(k)
    if not objectives:
        raise EvolveError("nsga2 needs objectives: a list of signal names, e.g. [meta_acceleration, "
                          "forgetting]")
    ok = valid(pop)
    dirs = _directions(objectives, weights)
    wrapped = [_Wrapped(p, row, dirs) for p, row in zip(
        ok, _columns(ok, objectives, "signals", dirs), strict=True)]
    seed_deap(rng.getrandbits(32))
    fronts = tools.sortNondominated(wrapped, len(wrapped))
    for i, front in enumerate(fronts):
        tools.emo.assignCrowdingDist(front)
        for w in front:
            w.ind.front, w.ind.crowding = i, float(w.fitness.crowding_dist)
    if k <= len(wrapped):
        return [w.ind for w in tools.selNSGA2(wrapped, k)]
    # more picks than learners: the whole ranking (each front by crowding), cycled
    order = [w.ind for f in fronts for w in sorted(f, key=lambda w: -w.fitness.crowding_dist)]
    return _cycle(order, k)


def lexicase(pop: Sequence[Individual], k: int, rng: random.Random, source: str = "cases",
             names: Sequence[str] = (), weights: Sequence[float] | None = None,
             epsilon: float | None = None) -> list[Individual]:
    """epsilon-lexicase over per-task cases or per-signal scores (DEAP).

    Each pick filters the valid individuals case by case in a random order, keeping those
    within `epsilon` of the best on the case (None: the median absolute deviation, DEAP's automatic
    epsilon). `source` "cases" uses `Individual.cases` (higher is better), "signals" uses
    `Individual.signals` with directions as in nsga2. `names` default: every case seen."""
    _check_k(k)
    if source not in ("cases", "signals"):
        raise EvolveError(f"lexicase source must be 'cases' or 'signals', got {source!r}")
    ok = valid(pop)
    names = list(names) or sorted({n for p in ok for n in (p.cases if source == "cases" else p.signals)})
    if not names:
        raise EvolveError(f"lexicase found no {source} on the individuals; record per-task scores "
                          "or use source: signals")
    dirs = [1.0] * len(names) if source == "cases" else _directions(names, weights)
    wrapped = [_Wrapped(p, row, dirs) for p, row in zip(
        ok, _columns(ok, names, source, dirs), strict=True)]
    seed_deap(rng.getrandbits(32))
    if epsilon is None:
        out = tools.selAutomaticEpsilonLexicase(wrapped, k)
    else:
        out = tools.selEpsilonLexicase(wrapped, k, float(epsilon))
    return [w.ind for w in out]


def elitism(pop: Sequence[Individual], k: int, rng: random.Random | None = None
            ) -> list[Individual]:
    """the best k by fitness, unchanged (no randomness).

    The best `k` valid individuals, best first; fewer if fewer are valid."""
    _check_k(k)
    return ranked(pop)[:k] if any(not p.failed for p in pop) else []


def select(name: str, pop: Sequence[Individual], k: int, rng: random.Random,
           **params: Any) -> list[Individual]:
    """Run the registered selection operator `name`; unknown names and params list the valid ones."""
    fn = SELECTION.get(name)
    check_params(fn, params, f"selection operator {name}")
    return list(fn(pop, k, rng, **params))


def check_params(fn: Callable[..., Any], params: Mapping[str, Any], what: str) -> None:
    """One-line error for a param `fn` does not take (a typo would otherwise pass silently)."""
    names = [p.name for p in list(inspect.signature(fn).parameters.values())[3:]]
    bad = [k for k in params if k not in names]
    if bad:
        raise EvolveError(f"unknown param {bad[0]!r} for {what}; valid: {', '.join(names) or '(none)'}")


def fitness_array(pop: Sequence[Individual]) -> np.ndarray:
    """[len(pop)] float fitness values (for summaries)."""
    return np.array([p.fitness for p in pop], dtype=float)
