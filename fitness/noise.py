"""How much of a signal's spread is noise.

- Rates (k of n items): the Wilson score interval.
- Meta-learning acceleration: a bootstrap over items, resampled within each window (stratified, so
  every window keeps its size), the acceleration recomputed per resample.
- Repeats of a learner (same seed and stream): within- vs across-learner variance, their ratio and
  a one-way ANOVA F test.
- A population's spread (best - worst) is "within noise" when it is smaller than the 95% margin
  for the difference of two learners, sqrt(2) x the mean 95% half-width of their intervals.

The published 3-seed run this project started from had a spread of about 0.1 in cumulative
meta-learning, later judged to be within binomial noise: `evolve score` on it says so.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fitness.trajectory import Trajectory

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials; (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def _indicators(traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """([4, N, K] improved/retained/regressed/stuck indicators, [N] window) of the trained items."""
    ids = list(traj.correct)
    N, K = len(ids), traj.K
    ind = np.zeros((4, N, K), dtype=np.float64)
    for n, i in enumerate(ids):
        b = traj.baseline.get(i, False)
        for k, c in enumerate(traj.correct[i]):
            if c is None:
                continue
            ind[(1 if c else 2) if b else (0 if c else 3), n, k] = 1.0
    win = np.array([traj.window.get(i, -1) for i in ids], dtype=np.int64)
    return ind, win


def _accel(counts: np.ndarray) -> np.ndarray:
    """[B] acceleration from [4, B, K] state counts (improved, retained, regressed, stuck); a rate
    over an empty denominator is undefined (NaN), each third averages its defined rates, a term
    counts when both its thirds are defined, NaN when neither is (as `fitness.signals.meta`)."""
    imp_den, fgt_den = counts[0] + counts[3], counts[1] + counts[2]
    nan = np.full_like(imp_den, np.nan)
    imp = np.divide(counts[0], imp_den, out=nan.copy(), where=imp_den > 0)
    fgt = np.divide(counts[2], fgt_den, out=nan.copy(), where=fgt_den > 0)
    t = counts.shape[-1] // 3
    with warnings.catch_warnings():     # a third of all-NaN rates: "Mean of empty slice"
        warnings.simplefilter("ignore", RuntimeWarning)
        terms = np.stack([np.nanmean(imp[:, -t:], 1) - np.nanmean(imp[:, :t], 1),
                          np.nanmean(fgt[:, :t], 1) - np.nanmean(fgt[:, -t:], 1)])
    out = np.nansum(terms, axis=0)
    out[np.isnan(terms).all(axis=0)] = np.nan
    return out


def bootstrap_meta(traj: Trajectory, kind: str = "window", n_boot: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict[str, Any] | None:
    """Percentile bootstrap of meta-learning acceleration ("window" or "cumulative" rates):
    {lo, hi, std, n_boot (the resamples with a defined acceleration)}; None under 3 checkpoints,
    without items, or with fewer than 2 defined resamples."""
    if kind not in ("window", "cumulative"):
        raise ValueError(f"unknown meta-learning kind {kind!r}; valid: window, cumulative")
    ind, win = _indicators(traj)
    N, K = ind.shape[1], ind.shape[2]
    if K < 3 or N == 0:
        return None
    if kind == "window":   # an item counts only at its own window's checkpoint
        ind = ind * (win[:, None] == np.arange(K)[None, :])[None]
    rng = np.random.default_rng(seed)
    idx = np.empty((n_boot, N), dtype=np.int64)
    col = 0
    for w in np.unique(win):   # stratified: each window keeps its size
        members = np.flatnonzero(win == w)
        idx[:, col:col + len(members)] = rng.choice(members, size=(n_boot, len(members)))
        col += len(members)
    counts = ind[:, idx, :].sum(axis=2)            # [4, B, K]
    acc = _accel(counts)
    acc = acc[np.isfinite(acc)]
    if acc.size < 2:
        return None
    q = (1 - level) / 2
    return {"lo": float(np.quantile(acc, q)), "hi": float(np.quantile(acc, 1 - q)),
            "std": float(acc.std(ddof=1)), "n_boot": int(acc.size)}


def spread(values: Mapping[str, float | None],
           intervals: Mapping[str, tuple[float, float] | None]) -> dict[str, Any]:
    """{spread: best - worst, noise: sqrt(2) x mean 95% half-width, within_noise: spread < noise}
    over the learners with a value and an interval (None figures when fewer than 2)."""
    ok = [k for k, v in values.items() if v is not None and intervals.get(k) is not None]
    if len(ok) < 2:
        return {"spread": None, "noise": None, "within_noise": None, "n": len(ok)}
    vals = [float(values[k]) for k in ok]  # type: ignore[arg-type]
    halves = [(intervals[k][1] - intervals[k][0]) / 2 for k in ok]  # type: ignore[index]
    s, noise = max(vals) - min(vals), math.sqrt(2) * sum(halves) / len(halves)
    return {"spread": s, "noise": noise, "within_noise": s < noise, "n": len(ok)}


def repeat_variance(groups: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """Repeats of each learner (same seed and stream) -> within- and across-learner variance.

    within = mean of the per-learner sample variances; across = sample variance of the learners'
    means; ratio = within / across (None when across is 0); F = r * across / within with r the
    mean repeats per learner, and its p-value (one-way ANOVA); within_noise = p >= 0.05.
    """
    rows = [np.asarray([x for x in v if x is not None and math.isfinite(x)], dtype=np.float64)
            for v in groups.values()]
    rows = [r for r in rows if len(r) >= 1]
    reps = [r for r in rows if len(r) >= 2]
    if len(rows) < 2 or not reps:
        raise ValueError("repeat_variance needs >= 2 learners and >= 2 repeats of at least one; "
                         "run each learner twice with the same seed and stream")
    within = float(np.mean([r.var(ddof=1) for r in reps]))
    across = float(np.var([r.mean() for r in rows], ddof=1))
    r_mean = float(np.mean([len(r) for r in rows]))
    out: dict[str, Any] = {"within": within, "across": across,
                           "ratio": within / across if across > 0 else None,
                           "learners": len(rows), "repeats": r_mean}
    if within > 0:
        from scipy.stats import f as f_dist

        df1 = len(rows) - 1
        df2 = int(sum(len(r) - 1 for r in reps))
        F = r_mean * across / within
        p = float(f_dist.sf(F, df1, df2))
        out.update(F=F, p=p, within_noise=p >= 0.05)
    else:   # repeats agree exactly: any difference between learners is real
        out.update(F=None, p=0.0 if across > 0 else 1.0, within_noise=across == 0)
    return out
