"""The confidence gap ("latent Dunning-Kruger" index), its peak, and hysteresis between branches.

Self-confidence (DESIGN.md) is the probability a learner gives its *own* greedy answer, not the
true answer's probability (which cannot exceed accuracy when the model is wrong).
gap(k) = mean holdout self-confidence - holdout accuracy at checkpoint k.

Hysteresis needs a reverse path: `branch_area` is the area between an up-sweep and a down-sweep
of a control parameter measured at the same control values. One run's trajectory is a one-way
path, and closing it with a chord back to its start encloses an area that measures nothing, so
no signal here does that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory


def _points(correct: Sequence[Sequence[bool]], conf: Sequence[Sequence[float | None]],
            ) -> list[tuple[float, float] | None]:
    """[K] (accuracy, mean confidence) per checkpoint; None where a row is empty or incomplete."""
    out: list[tuple[float, float] | None] = []
    for c, p in zip(correct, conf, strict=True):
        vals = [float(x) for x in p if x is not None]
        if not c or len(vals) != len(c) or not all(math.isfinite(x) for x in vals):
            out.append(None)
            continue
        out.append((sum(map(bool, c)) / len(c), sum(vals) / len(vals)))
    return out


def confidence_gap_series(correct: Sequence[Sequence[bool]],
                          conf: Sequence[Sequence[float | None]]) -> list[float | None]:
    """[K] mean confidence - accuracy per checkpoint, from [K][H] verdicts and confidences
    (pass self-confidences for the DESIGN.md confidence gap)."""
    return [None if pt is None else pt[1] - pt[0] for pt in _points(correct, conf)]


def branch_area(x: Sequence[float], up: Sequence[float], down: Sequence[float]) -> float:
    """Signed area between two branches measured at the same control values x (any order):
    the trapezoid integral of (down - up) over x. Positive when the down-sweep lies above the
    up-sweep. 0 when the two coincide (no hysteresis); a single branch has no area at all."""
    if not (len(x) == len(up) == len(down)):
        raise ValueError(f"branch_area got {len(x)} control values, {len(up)} up and "
                         f"{len(down)} down; pass one value of each branch per control value")
    if len(x) < 2:
        raise ValueError("branch_area needs at least 2 control values")
    pts = sorted(zip(x, up, down, strict=True))
    return sum((x1 - x0) * ((d0 - u0) + (d1 - u1)) / 2
               for (x0, u0, d0), (x1, u1, d1) in zip(pts, pts[1:], strict=False))


def _self(traj: Trajectory) -> tuple[list[float | None] | None, str]:
    """(per-checkpoint gap series, "") or (None, why not)."""
    if not traj.holdout_ids:
        return None, "no holdout items"
    if traj.K == 0:
        return None, "no checkpoints"
    if len(traj.holdout_self_confidence) != traj.K:
        return None, "no holdout self-confidences (probe of the learner's own answer)"
    return confidence_gap_series(traj.holdout_correct, traj.holdout_self_confidence), ""


@signal("confidence_gap", higher_is_better=False,
        description="mean holdout self-confidence (probability of the own answer) minus holdout "
                    "accuracy at the last checkpoint")
def confidence_gap(traj: Trajectory) -> SignalValue:
    series, why = _self(traj)
    if series is None:
        return none(why)
    if series[-1] is None:
        return none("holdout self-confidence missing at the last checkpoint", series=series)
    return value(series[-1], series=series, steps=list(traj.steps))


@signal("confidence_gap_peak", higher_is_better=False,
        description="largest confidence gap (self-confidence minus accuracy, holdout) over the "
                    "checkpoints: the overconfident peak")
def confidence_gap_peak(traj: Trajectory) -> SignalValue:
    series, why = _self(traj)
    if series is None:
        return none(why)
    known = [(g, k) for k, g in enumerate(series) if g is not None]
    if not known:
        return none("no checkpoint has every holdout self-confidence")
    g, k = max(known)
    return value(g, index=k, step=traj.steps[k])
