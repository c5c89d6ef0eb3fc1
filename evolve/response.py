"""Heritability and the response to selection, from one generation and its parents' generation.

z is the outcome (`assess_gain`, `evolve/assess.py`); a child's parent is its first parent (the one
whose adapter it inherits). Over learners whose z is defined:

- `heritability/parent_offspring_slope`: least-squares slope of the children's z on their
  parents' z (with clonal inheritance the slope estimates h^2; it is unbiased only where parents
  are not chosen by z or anything correlated with it: read it in the random arm);
  `heritability/parent_offspring_r` the correlation, `heritability/pairs` how many pairs;
- `selection_differential/fitness` and `selection_differential/outcome` (S): the mean over the
  children of their parent's value minus the parents' generation mean (fitness is normalised
  within a generation, so S on fitness is in those units);
- `response/predicted` = slope x S on the outcome (the breeder's equation R = h^2 S) and
  `response/observed` = the children's mean z minus the parents' mean z;
- the Price equation, with w_i = how many children parent i has, z'_i their mean z:
  mean z' - mean z = Cov(w, z) / mean w  (`price/selection`)  +  E[w (z' - z)] / mean w
  (`price/transmission`), covariance and mean over the parents' generation (population moments),
  exact when every child's z and its parent's z are defined.

`evolve run` logs these on the evolution run at step g for every generation g >= 1 (the engine
calls `generation_metrics` with generation g - 1's records); the selection experiment pools them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

OUTCOME = "assess_gain"


def _finite(v: Any) -> float | None:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def row(learner_id: str, parents: Sequence[str], fitness: float | None, outcome: float | None,
        failed: bool = False) -> dict[str, Any]:
    """One learner as this module reads it."""
    return {"id": learner_id, "parent": parents[0] if parents else None,
            "fitness": None if failed else _finite(fitness),
            "outcome": None if failed else _finite(outcome)}


def rows_of(records: Sequence[Any], outcome: str = OUTCOME) -> list[dict[str, Any]]:
    """`evolve.records.LearnerRecord`s as rows."""
    return [row(r.learner_id, r.parents, r.fitness, r.signals.get(outcome), r.failed)
            for r in records]


def slope(x: Sequence[float], y: Sequence[float]) -> tuple[float | None, float | None]:
    """(least-squares slope of y on x, Pearson r); None below 3 points or with constant x."""
    if len(x) < 3:
        return None, None
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    vx = float(np.var(xa))
    if vx <= 0:
        return None, None
    cov = float(np.mean((xa - xa.mean()) * (ya - ya.mean())))
    vy = float(np.var(ya))
    return cov / vx, (cov / math.sqrt(vx * vy) if vy > 0 else None)


def pairs(parents: Sequence[Mapping[str, Any]], children: Sequence[Mapping[str, Any]],
          key: str = "outcome") -> list[tuple[float, float]]:
    """(parent value, child value) for every child whose parent and both values are known."""
    by_id = {p["id"]: p for p in parents}
    out = []
    for c in children:
        p = by_id.get(c["parent"])
        if p is not None and p[key] is not None and c[key] is not None:
            out.append((float(p[key]), float(c[key])))
    return out


def generation_metrics(parents: Sequence[Mapping[str, Any]],
                       children: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The metrics of the module doc (a metric that is undefined is left out)."""
    out: dict[str, float] = {}
    po = pairs(parents, children)
    b, r = slope([p for p, _ in po], [c for _, c in po])
    out["heritability/pairs"] = float(len(po))
    if b is not None:
        out["heritability/parent_offspring_slope"] = b
    if r is not None:
        out["heritability/parent_offspring_r"] = r
    by_id = {p["id"]: p for p in parents}
    for key in ("fitness", "outcome"):
        vals = [p[key] for p in parents if p[key] is not None]
        chosen = [by_id[c["parent"]][key] for c in children
                  if c["parent"] in by_id and by_id[c["parent"]][key] is not None]
        if vals and chosen:
            out[f"selection_differential/{key}"] = float(np.mean(chosen) - np.mean(vals))
    z_par = [p["outcome"] for p in parents if p["outcome"] is not None]
    z_kid = [c["outcome"] for c in children if c["outcome"] is not None]
    if z_par and z_kid:
        out["response/observed"] = float(np.mean(z_kid) - np.mean(z_par))
    if b is not None and "selection_differential/outcome" in out:
        out["response/predicted"] = b * out["selection_differential/outcome"]
    out.update(price(parents, children))
    return out


def price(parents: Sequence[Mapping[str, Any]], children: Sequence[Mapping[str, Any]],
          ) -> dict[str, float]:
    """{`price/selection`, `price/transmission`} over parents with a defined outcome (see doc)."""
    kids: dict[str, list[float]] = {}
    for c in children:
        if c["outcome"] is not None:
            kids.setdefault(c["parent"], []).append(float(c["outcome"]))
    ps = [p for p in parents if p["outcome"] is not None]
    if not ps:
        return {}
    w = np.array([len(kids.get(p["id"], [])) for p in ps], dtype=float)
    if w.sum() == 0:
        return {}
    z = np.array([p["outcome"] for p in ps], dtype=float)
    dz = np.array([np.mean(kids[p["id"]]) - p["outcome"] if p["id"] in kids else 0.0 for p in ps])
    wbar = float(w.mean())
    return {"price/selection": float(np.mean((w - wbar) * (z - z.mean()))) / wbar,
            "price/transmission": float(np.mean(w * dz)) / wbar}
