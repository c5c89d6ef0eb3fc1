"""Statistics across run seeds for the experiments: t intervals and paired tests.

A run seed is the unit of replication (its learners share items, generation 0 and selection
events, so they are not independent): every number here is over per-seed values. With n seeds an
exact two-sided sign-flip test cannot go below 2 / 2^n (0.0625 at 5 seeds), so the paired t-test
is the primary test and the rank-based ones say whether it leans on one large seed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

EXACT_MAX = 16   # up to 2^16 sign patterns enumerated exactly; beyond that a seeded sample


def t_interval(xs: Sequence[float | None], level: float = 0.95) -> dict[str, float | int | None]:
    """{mean, sd, n, lo, hi}: Student-t interval of the mean (lo/hi None below 2 values)."""
    from scipy import stats

    x = np.asarray([v for v in xs if v is not None and math.isfinite(v)], dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "sd": None, "n": 0, "lo": None, "hi": None}
    m = float(x.mean())
    if n < 2:
        return {"mean": m, "sd": None, "n": 1, "lo": None, "hi": None}
    sd = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": m, "sd": sd, "n": n, "lo": m - half, "hi": m + half}


def sign_flip_p(d: Sequence[float], n_sample: int = 20000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p of mean(d) = 0: exact up to EXACT_MAX values; beyond, from
    `n_sample` seeded random sign patterns as (hits + 1) / (n_sample + 1), never 0 (the observed
    pattern counts as one of them)."""
    x = np.asarray(d, dtype=float)
    obs = abs(x.mean()) - 1e-12   # ties with the observed mean count as extreme
    if x.size <= EXACT_MAX:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=x.size)))   # [2^n, n]
        return float(np.mean(np.abs(signs @ x / x.size) >= obs))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_sample, x.size))
    return float((np.sum(np.abs(signs @ x / x.size) >= obs) + 1) / (n_sample + 1))


def paired(a: Sequence[float | None], b: Sequence[float | None]) -> dict[str, Any]:
    """Paired comparison of a - b over the seeds where both are defined: the differences, their
    mean and t interval, the paired t-test, Wilcoxon signed-rank and sign-flip p values (two-sided),
    the effect size d_z = mean / sd of the differences, and wins / losses / ties of a."""
    from scipy import stats

    pairs = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None
             and math.isfinite(x) and math.isfinite(y)]
    d = [float(x - y) for x, y in pairs]
    ci = t_interval(d)
    out: dict[str, Any] = {
        "n": len(d), "diffs": d, "mean_diff": ci["mean"], "ci_lo": ci["lo"], "ci_hi": ci["hi"],
        "sd_diff": ci["sd"], "p_t": None, "p_wilcoxon": None, "p_sign_flip": None, "d_z": None,
        "wins": sum(x > 0 for x in d), "losses": sum(x < 0 for x in d),
        "ties": sum(x == 0 for x in d), "min_p_sign_flip": (2.0 / 2 ** len(d)) if d else None}
    if len(d) < 2:
        return out
    out["p_sign_flip"] = sign_flip_p(d)
    sd = ci["sd"] or 0.0
    if sd > 0:
        out["p_t"] = float(stats.ttest_1samp(d, 0.0).pvalue)
        out["d_z"] = float(ci["mean"] or 0.0) / sd
    elif ci["mean"] == 0:
        out["p_t"] = 1.0
    if any(x != 0 for x in d):
        out["p_wilcoxon"] = float(stats.wilcoxon(d).pvalue)
    else:
        out["p_wilcoxon"] = 1.0
    return out
