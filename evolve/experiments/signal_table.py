"""Which fitness signals predict learning? Each signal's correlation with the outcome, with intervals.

From recorded selection-experiment runs (`selection.Capture` keeps every learner's signals):
- `own`: within each generation-population (one arm, seed, generation), the Spearman correlation of
  the learners' signal with their own `assess_gain`; every arm counts (within a generation the arms
  differ in nothing but how the learners were bred);
- `offspring`: within each generation-population of the unbiased arms (random, shuffled: parents
  chosen without regard to their quality), the Spearman correlation of a parent's signal with the
  mean `assess_gain` of its children in the next generation: what selecting on the signal can buy.
The parent's own `assess_gain` and `assess_initial_accuracy` are rows too (what the oracle selects
on, and what the learner knew), never suggested as weights (they come from the assessment, which a
run without it does not have). Each is averaged over the populations; the interval is the t interval of the per-seed means (a
seed's populations share items and generation 0, so the seed is the replicate). Suggested weights
are the offspring correlations whose interval lies above 0 (else none is suggested).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from evolve.experiments.paired import t_interval

UNBIASED = ("random", "shuffled")
MIN_POINTS = 4   # a rank correlation over 3 points takes 4 values: little evidence


def _spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    from scipy import stats

    if len(x) < MIN_POINTS or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    r = float(stats.spearmanr(x, y).statistic)
    return r if math.isfinite(r) else None


def _value(x: dict[str, Any], name: str) -> float | None:
    if x["failed"]:
        return None
    v = x["fitness"] if name == "fitness" else x.get("signals", {}).get(name, x.get(name))
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _own(learners: list[dict[str, Any]], name: str, outcome: str) -> float | None:
    pts = [(a, b) for x in learners if (a := _value(x, name)) is not None
           and (b := _value(x, outcome)) is not None]
    return _spearman([a for a, _ in pts], [b for _, b in pts])


def _offspring(parents: list[dict[str, Any]], kids: list[dict[str, Any]], name: str,
               outcome: str) -> float | None:
    gains: dict[str, list[float]] = {}
    for k in kids:
        v = _value(k, outcome)
        if v is not None and k.get("parents"):
            gains.setdefault(k["parents"][0], []).append(v)
    pts = [(a, sum(gains[p["id"]]) / len(gains[p["id"]])) for p in parents
           if p["id"] in gains and (a := _value(p, name)) is not None]
    return _spearman([a for a, _ in pts], [b for _, b in pts])


def _summary(per_seed: dict[int, list[float]]) -> dict[str, Any]:
    means = [sum(v) / len(v) for v in per_seed.values() if v]
    ci = t_interval(means)
    return {"mean": ci["mean"], "ci": [ci["lo"], ci["hi"]], "seeds": ci["n"],
            "populations": sum(len(v) for v in per_seed.values())}


def signal_table(runs: dict[str, list[dict[str, Any]]], outcome: str = "assess_gain",
                 ) -> dict[str, Any]:
    """{rows: [{signal, own, offspring}], suggested_weights, outcome} (see the module doc)."""
    names = sorted({k for rs in runs.values() for r in rs for g in r["generations"]
                    for x in g["learners"] for k in x.get("signals", {})}
                   | {"fitness", "assess_gain", "assess_initial_accuracy"})
    rows: list[dict[str, Any]] = []
    for name in names:
        own: dict[int, list[float]] = {}
        off: dict[int, list[float]] = {}
        for arm, rs in runs.items():
            for r in rs:
                gens = r["generations"]
                for g in gens:
                    v = _own(g["learners"], name, outcome)
                    if v is not None:
                        own.setdefault(r["seed"], []).append(v)
                if arm not in UNBIASED:
                    continue
                for g0, g1 in zip(gens, gens[1:], strict=False):
                    v = _offspring(g0["learners"], g1["learners"], name, outcome)
                    if v is not None:
                        off.setdefault(r["seed"], []).append(v)
        rows.append({"signal": name, "own": _summary(own), "offspring": _summary(off)})
    suggested = {r["signal"]: round(float(r["offspring"]["mean"]), 3) for r in rows
                 if r["signal"] != "fitness" and not r["signal"].startswith("assess_")
                 and r["offspring"]["ci"][0] is not None and r["offspring"]["ci"][0] > 0}
    return {"outcome": outcome, "unbiased_arms": list(UNBIASED), "rows": rows,
            "suggested_weights": suggested}
