"""The selection experiment's statistics, all over per-seed values (a run seed is the replicate):
paired contrasts with exact sign-flip p values and Holm's correction, power from a pilot, the
heritability of the outcome and the response to selection per generation (`evolve.response`).

A run is `{"seed", "generations": [{"generation", "learners": [learner, ...]}]}` and a learner
`{"id", "parents", "failed", "fitness", <outcome names>, "curve"}` (what `selection.Capture` keeps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from evolve.experiments.paired import paired, t_interval
from evolve.response import generation_metrics, pairs, row, slope

POWER_TARGET = 0.8


def learner_value(learner: dict[str, Any], metric: str) -> float | None:
    """One learner's outcome; a half-life that never came (never forgot) counts as the whole
    assessment budget, a lower bound, so learners that forget less are never scored worse."""
    if learner["failed"]:
        return None
    v = learner.get(metric)
    if v is None and metric == "assess_half_life" and learner["curve"]:
        return float(learner["curve"][-1][0])
    return None if v is None or not math.isfinite(float(v)) else float(v)


def seed_value(learners: list[dict[str, Any]], metric: str) -> float | None:
    """The seed's value: the mean over its non-failed learners with a defined value."""
    vals = [v for v in (learner_value(x, metric) for x in learners) if v is not None]
    return sum(vals) / len(vals) if vals else None


def holm(ps: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p values (step-down, monotone), None kept where p is None."""
    given = [(float(p), i) for i, p in enumerate(ps) if p is not None]
    adj: list[float | None] = [None] * len(ps)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(given)):
        running = max(running, min(1.0, (len(given) - rank) * p))
        adj[i] = running
    return adj


def contrast(a: str, b: str, outcome: str, xa: Sequence[float | None],
             xb: Sequence[float | None]) -> dict[str, Any]:
    """a - b per seed on `outcome`: the fields report.json promises, plus the raw differences."""
    t = paired(xa, xb)
    return {"a": a, "b": b, "outcome": outcome, "n": t["n"], "mean_diff": t["mean_diff"],
            "ci": [t["ci_lo"], t["ci_hi"]], "p_t": t["p_t"], "p_signflip": t["p_sign_flip"],
            "min_p_signflip": t["min_p_sign_flip"], "p_wilcoxon": t["p_wilcoxon"], "d_z": t["d_z"],
            "wins": t["wins"], "losses": t["losses"], "ties": t["ties"], "diffs": t["diffs"]}


def contrasts(per_seed: dict[str, dict[str, list[float | None]]],
              wanted: Sequence[tuple[str, str]], outcome: str) -> list[dict[str, Any]]:
    """The wanted contrasts present in `per_seed` on `outcome`, Holm-adjusted together
    (`p_holm`, over their sign-flip p values)."""
    out = [contrast(a, b, outcome, per_seed[a][outcome], per_seed[b][outcome])
           for a, b in wanted if a in per_seed and b in per_seed]
    for c, p in zip(out, holm([c["p_signflip"] for c in out]), strict=True):
        c["p_holm"] = p
    return out


def power(d_z: float | None, n: int, alpha: float = 0.05) -> float | None:
    """Power of the two-sided paired t-test at effect size d_z with n seeds (noncentral t)."""
    from scipy import stats

    if d_z is None or n < 2 or not math.isfinite(d_z):
        return None
    df, nc = n - 1, abs(d_z) * math.sqrt(n)
    crit = float(stats.t.ppf(1 - alpha / 2, df))
    return float(1 - stats.nct.cdf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(d_z: float | None, alpha: float = 0.05, target: float = POWER_TARGET,
                 n_max: int = 500) -> int | None:
    """The fewest seeds giving `target` power at d_z (None: no effect or beyond n_max)."""
    if d_z is None or d_z == 0 or not math.isfinite(d_z):
        return None
    return next((n for n in range(2, n_max + 1) if (power(d_z, n, alpha) or 0) >= target), None)


def power_section(per_seed: dict[str, dict[str, list[float | None]]], pilot: int, n: int,
                  outcome: str, alpha: float) -> dict[str, Any]:
    """Seeds needed for 80% power at the oracle's effect (oracle - random) in the first `pilot`
    seeds, and the power the `n` seeds run have at that effect and at fitness - random's."""
    out: dict[str, Any] = {"pilot_seeds": pilot, "seeds_run": n, "target": POWER_TARGET,
                           "alpha": alpha, "outcome": outcome}
    for a in ("oracle", "fitness"):
        if a not in per_seed or "random" not in per_seed:
            continue
        d = paired(per_seed[a][outcome][:pilot], per_seed["random"][outcome][:pilot])["d_z"]
        out[f"{a}_random_pilot_d_z"] = d
        out[f"{a}_random_seeds_needed"] = seeds_needed(d, alpha)
        # under Holm over three contrasts the second smallest p is tested at alpha / 2
        out[f"{a}_random_seeds_needed_half_alpha"] = seeds_needed(d, alpha / 2)
        out[f"{a}_random_power_at_seeds_run_half_alpha"] = power(d, n, alpha / 2)
        out[f"{a}_random_power_at_seeds_run"] = power(d, n, alpha)
    return out


def rows(learners: list[dict[str, Any]], outcome: str) -> list[dict[str, Any]]:
    return [row(x["id"], x.get("parents") or [], x["fitness"], learner_value(x, outcome),
                x["failed"]) for x in learners]


def heritability(runs: list[dict[str, Any]], outcome: str) -> dict[str, Any]:
    """Parent-offspring slope of `outcome`, parent pairs pooled over generations within a seed;
    the slope's mean over seeds with a t interval (`parent_offspring_slope`, `ci`)."""
    per_seed, n_pairs = [], []
    for r in runs:
        gens = r["generations"]
        po = [p for g0, g1 in zip(gens, gens[1:], strict=False)
              for p in pairs(rows(g0["learners"], outcome), rows(g1["learners"], outcome))]
        per_seed.append(slope([p for p, _ in po], [c for _, c in po])[0])
        n_pairs.append(len(po))
    ci = t_interval(per_seed)
    return {"outcome": outcome, "parent_offspring_slope": ci["mean"], "ci": [ci["lo"], ci["hi"]],
            "per_seed": per_seed, "pairs_per_seed": n_pairs, "n_seeds": ci["n"]}


def selection_response(runs: dict[str, list[dict[str, Any]]], h2: float | None,
                       outcome: str) -> dict[str, list[dict[str, Any]]]:
    """Per arm and generation g >= 1 (children g, parents g - 1), means over seeds of the
    selection differentials, the observed response, the Price terms and the breeder's-equation
    prediction R = h2 * S on the outcome, h2 = the random arm's parent-offspring slope."""
    keys = ("selection_differential/fitness", "selection_differential/outcome",
            "response/observed", "price/selection", "price/transmission",
            "heritability/parent_offspring_slope")
    out: dict[str, list[dict[str, Any]]] = {}
    for arm, rs in runs.items():
        gens = len(rs[0]["generations"])
        rows_out = []
        for g in range(1, gens):
            ms = [generation_metrics(rows(r["generations"][g - 1]["learners"], outcome),
                                     rows(r["generations"][g]["learners"], outcome)) for r in rs]
            entry: dict[str, Any] = {"generation": g}
            for k in keys:
                entry[k] = t_interval([m.get(k) for m in ms])["mean"]
            s = [m.get("selection_differential/outcome") for m in ms]
            pred = [None if x is None or h2 is None else h2 * x for x in s]
            entry["predicted"] = t_interval(pred)["mean"]
            entry["observed"] = entry["response/observed"]
            entry["observed_ci"] = _ci([m.get("response/observed") for m in ms])
            rows_out.append(entry)
        out[arm] = rows_out
    return out


def _ci(xs: Sequence[float | None]) -> list[float | None]:
    t = t_interval(xs)
    return [t["lo"], t["hi"]]


def fitness_prediction(runs: dict[str, list[dict[str, Any]]],
                       outcomes: Sequence[str]) -> dict[str, Any]:
    """Mean within-generation Spearman correlation of fitness with each outcome, over every
    generation-population of every arm and seed (how much fitness says about the outcome)."""
    from scipy import stats

    out: dict[str, Any] = {}
    for m in outcomes:
        rhos = []
        for rs in runs.values():
            for r in rs:
                for g in r["generations"]:
                    xs = [(x["fitness"], learner_value(x, m)) for x in g["learners"]
                          if not x["failed"] and x["fitness"] is not None
                          and math.isfinite(x["fitness"]) and learner_value(x, m) is not None]
                    if len(xs) >= 3 and len({a for a, _ in xs}) > 1 and len({b for _, b in xs}) > 1:
                        rhos.append(float(stats.spearmanr([a for a, _ in xs],
                                                          [b for _, b in xs]).statistic))
        ci = t_interval(rhos)
        out[m] = {"mean_spearman": ci["mean"], "ci": [ci["lo"], ci["hi"]], "populations": ci["n"]}
    return out


def per_seed_values(runs: dict[str, list[dict[str, Any]]], metrics: Sequence[str], gen: int = -1,
                    ) -> dict[str, dict[str, list[float | None]]]:
    """arm -> metric -> [per-seed value of generation `gen`]."""
    return {a: {m: [seed_value(r["generations"][gen]["learners"], m) for r in rs]
                for m in metrics} for a, rs in runs.items()}


def mean_of(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return float(np.mean(vals)) if vals else None
