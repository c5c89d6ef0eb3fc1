"""The confidence gap ("latent Dunning-Kruger" index) and the loop it draws.

gap(k) = mean holdout confidence - holdout accuracy at checkpoint k (confidence = probability of
the answer). The loop area is the shoelace area of the closed polygon through the points
(holdout accuracy(k), mean confidence(k)), k = 0..K-1: a hysteresis-style signal, 0 when
confidence rises and falls along the same path as knowledge.
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
    """[K] mean confidence - accuracy per checkpoint, from [K][H] verdicts and confidences."""
    return [None if pt is None else pt[1] - pt[0] for pt in _points(correct, conf)]


def shoelace(points: Sequence[tuple[float, float]]) -> float:
    """Signed area of the closed polygon through `points` (counter-clockwise positive)."""
    n = len(points)
    return 0.5 * sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                     for i in range(n))


def confidence_loop_area_of(correct: Sequence[Sequence[bool]],
                            conf: Sequence[Sequence[float | None]]) -> float | None:
    """|shoelace area| of the (accuracy, confidence) loop; None with fewer than 3 usable points.
    Lobes traversed in opposite directions (a figure eight) cancel, as in the signed area."""
    pts = [pt for pt in _points(correct, conf) if pt is not None]
    return abs(shoelace(pts)) if len(pts) >= 3 else None


def _holdout(traj: Trajectory) -> str:
    if not traj.holdout_ids:
        return "no holdout items"
    if len(traj.holdout_confidence) != traj.K or traj.K == 0:
        return "no holdout confidences"
    return ""


@signal("confidence_gap", higher_is_better=False,
        description="mean holdout confidence minus holdout accuracy at the last checkpoint")
def confidence_gap(traj: Trajectory) -> SignalValue:
    why = _holdout(traj)
    if why:
        return none(why)
    series = confidence_gap_series(traj.holdout_correct, traj.holdout_confidence)
    if series[-1] is None:
        return none("holdout confidence missing at the last checkpoint", series=series)
    return value(series[-1], series=series, steps=list(traj.steps))


@signal("confidence_loop_area", higher_is_better=False,
        description="area of the loop drawn in the (holdout accuracy, confidence) plane (shoelace)")
def confidence_loop_area(traj: Trajectory) -> SignalValue:
    why = _holdout(traj)
    if why:
        return none(why)
    area = confidence_loop_area_of(traj.holdout_correct, traj.holdout_confidence)
    if area is None:
        return none(f"needs at least 3 checkpoints with holdout confidences, has {traj.K}")
    return value(area)
