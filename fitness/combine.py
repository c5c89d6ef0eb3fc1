"""From signal values to one fitness per learner: a weighted sum of normalised signals, or Pareto
fronts with crowding (DEAP's NSGA-II sorting).

Per generation, each signal is normalised across the population's non-failed learners:
- `rank`: average ranks (ties share), scaled to [0, 1] (0.5 for a population of one);
- `zscore`: (x - mean) / std over the population (0 when all are equal).
Lower-is-better signals are flipped first, so "1" / a high z is always good. None values:
- `none_is="worst"` (default): the population's worst finite value (ties with the worst learner);
- `none_is="best"` (`forgetting_half_life`: never reached): better than every finite value, as the
  best finite value plus one standard deviation of the finite values (plus 1 when they are equal).
A column with no finite value contributes 0. Failed learners get -inf fitness and are left out of
the normalisation (their values are garbage), so they are never selected.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from fitness.registry import SIGNALS

Table = Mapping[str, Mapping[str, float | None]]   # learner id -> signal name -> value
Meta = Mapping[str, tuple[bool, str]]              # signal name -> (higher_is_better, none_is)


def direction(name: str, meta: Meta | None = None) -> tuple[bool, str]:
    """(higher_is_better, none_is) of a signal: from `meta`, else the registry, else (True,
    "worst") for names the registry does not know (e.g. the engine's assess_* signals)."""
    if meta and name in meta:
        return meta[name]
    if name in SIGNALS:
        s = SIGNALS.get(name)
        return bool(s.higher_is_better), str(s.none_is)
    return True, "worst"


def _finite(v: float | None) -> float | None:
    """`v` as a float when it is a finite number, else None."""
    return float(v) if v is not None and math.isfinite(v) else None


def oriented(values: Sequence[float | None], higher: bool, none_is: str) -> np.ndarray | None:
    """[n] values flipped so higher is better, None substituted (see the module doc); None when
    the column has no finite value."""
    vals = [_finite(v) for v in values]
    fin = [v for v in vals if v is not None]
    if not fin:
        return None
    sign = 1.0 if higher else -1.0
    ori = [sign * x for x in fin]
    std = float(np.std(ori)) if len(ori) > 1 else 0.0
    worst, best = min(ori), max(ori) + (std if std > 0 else 1.0)
    sub = best if none_is == "best" else worst
    return np.array([sub if v is None else sign * v for v in vals], dtype=np.float64)


def normalise_column(x: np.ndarray, mode: str) -> np.ndarray:
    """[n] rank in [0, 1] (average ranks for ties) or z-score."""
    if mode == "rank":
        from scipy.stats import rankdata

        n = len(x)
        return (rankdata(x) - 1) / (n - 1) if n > 1 else np.full(n, 0.5)
    if mode == "zscore":
        std = float(x.std())
        return (x - x.mean()) / std if std > 0 else np.zeros_like(x)
    raise ValueError(f"unknown normalisation {mode!r}; valid: rank, zscore")


def combine(table: Table, weights: Mapping[str, float], normalise: str = "rank",
            failed: Collection[str] = (), meta: Meta | None = None) -> dict[str, float]:
    """Learner id -> scalar fitness: sum over signals of weight x normalised value; -inf for the
    `failed` learners. `meta` gives (higher_is_better, none_is) for names outside the registry."""
    mode = normalise
    ids = list(table)
    alive = [i for i in ids if i not in failed]
    total = np.zeros(len(alive))
    for name, w in weights.items():
        if not math.isfinite(w):
            raise ValueError(f"weight of {name!r} is {w}; give a finite number")
        if w == 0 or not alive:
            continue
        higher, none_is = direction(name, meta)
        col = oriented([table[i].get(name) for i in alive], higher, none_is)
        if col is not None:
            total += w * normalise_column(col, mode)
    out = dict.fromkeys(ids, -math.inf)
    out.update({i: float(v) for i, v in zip(alive, total, strict=True)})
    return out


def pareto_ranks(table: Table, names: Sequence[str], failed: Collection[str] = (),
                 meta: Meta | None = None) -> dict[str, tuple[int, float]]:
    """Learner id -> (front, crowding distance) by DEAP's non-dominated sorting over `names`
    (front 0 is the best; inf crowding at a front's edges). Failed learners are left out."""
    from deap import tools

    alive = [i for i in table if i not in failed]
    if not alive:
        return {}
    cols = []
    for name in names:
        higher, none_is = direction(name, meta)
        col = oriented([table[i].get(name) for i in alive], higher, none_is)
        cols.append(np.zeros(len(alive)) if col is None else col)
    inds = [_Individual(i, tuple(float(c[j]) for c in cols)) for j, i in enumerate(alive)]
    fronts = tools.sortNondominated(inds, len(inds))
    out = {}
    for f, front in enumerate(fronts):
        tools.emo.assignCrowdingDist(front)
        for ind in front:
            out[ind.id] = (f, float(ind.fitness.crowding_dist))
    return out


def _deap_fitness() -> type:
    from deap import base

    class ParetoFitness(base.Fitness):
        """All objectives maximised: values are already oriented (higher = better)."""

        def __init__(self, values: tuple[float, ...]) -> None:
            self.weights = (1.0,) * len(values)
            super().__init__(values)

    return ParetoFitness


class _Individual:
    _fitness_cls: type | None = None

    def __init__(self, id: str, values: tuple[float, ...]) -> None:
        if _Individual._fitness_cls is None:   # subclass deap.base.Fitness once, lazily
            _Individual._fitness_cls = _deap_fitness()
        self.id = id
        self.fitness = _Individual._fitness_cls(values)
