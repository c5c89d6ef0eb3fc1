"""Small statistics for the grokking studies: medians with bootstrap intervals (censored values
allowed), Spearman's rank correlation, and causal (past-only) smoothing."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

BOOT = 2000     # bootstrap resamples
LEVEL = 0.95


def median(xs: Sequence[float]) -> float | None:
    """The median; math.inf stands for a censored value ("not within the budget")."""
    s = sorted(xs)
    n = len(s)
    if not n:
        return None
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def bootstrap_median(xs: Sequence[float], seed: int = 0, boot: int = BOOT,
                     level: float = LEVEL) -> tuple[float | None, list[float | None]]:
    """(median, [lo, hi]) by the percentile bootstrap over `xs`; inf (censored) values take part
    in the ranks, so a bound may be inf ("at least the budget"); None bounds with < 2 values."""
    m = median(xs)
    if len(xs) < 2:
        return m, [None, None]
    rng = random.Random(seed)
    meds = sorted(median([rng.choice(xs) for _ in xs]) or 0.0 for _ in range(boot))
    a = (1 - level) / 2
    return m, [meds[int(a * (boot - 1))], meds[int((1 - a) * (boot - 1))]]


def _ranks(xs: Sequence[float]) -> list[float]:
    order = sorted(range(len(xs)), key=lambda i: xs[i])
    r = [0.0] * len(xs)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and xs[order[j + 1]] == xs[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2
        i = j + 1
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rho (Pearson on average ranks); None below 3 pairs or with a constant side."""
    if len(x) != len(y) or len(x) < 3:
        return None
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    sy = math.sqrt(sum((b - my) ** 2 for b in ry))
    return None if sx == 0 or sy == 0 else sxy / (sx * sy)


def trailing_median(values: Sequence[float | None], k: int = 3) -> list[float | None]:
    """Median of the last `k` known values up to and including each index: uses only the past."""
    out: list[float | None] = []
    for i in range(len(values)):
        win = [v for v in values[max(0, i - k + 1):i + 1] if v is not None]
        out.append(median(win))
    return out


def carry_forward(values: Sequence[float | None]) -> list[float | None]:
    """Each None replaced by the last known value before it (a probe without a fit)."""
    out: list[float | None] = []
    last = None
    for v in values:
        last = v if v is not None else last
        out.append(last)
    return out


def running_extreme(values: Sequence[float | None], top: bool = True) -> list[float | None]:
    """Running max (or min) of the known values so far."""
    out: list[float | None] = []
    best: float | None = None
    for v in values:
        if v is not None:
            best = v if best is None else (max(best, v) if top else min(best, v))
        out.append(best)
    return out
