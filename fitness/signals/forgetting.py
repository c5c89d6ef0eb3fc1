"""Forgetting half-life and survival: Kaplan-Meier over the "lives" of correct answers.

A life is a maximal run of consecutive (probed) checkpoints at which an item is correct. It starts
at the step of the run's first checkpoint and ends at the step of the first later checkpoint where
the item is wrong (an event), or is right-censored at the step of the item's last probed checkpoint
(the trajectory's last one, unless the item stopped being probed). Durations are in training items.
"""

from __future__ import annotations

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory


def lives(traj: Trajectory) -> list[tuple[int, bool]]:
    """Every life as (duration in training items, ended by an event: True / censored: False)."""
    out: list[tuple[int, bool]] = []
    for item in traj.correct:
        probes = traj.probed(item)
        start: int | None = None
        for k, ok in probes:
            if ok and start is None:
                start = traj.steps[k]
            elif not ok and start is not None:
                out.append((traj.steps[k] - start, True))
                start = None
        if start is not None:
            out.append((traj.steps[probes[-1][0]] - start, False))
    return out


def kaplan_meier(data: list[tuple[int, bool]]) -> list[tuple[int, float]]:
    """[(event time, survival just after it)] for (duration, event) pairs. A life censored at t
    is still at risk for an event at t (the usual convention)."""
    curve, surv = [], 1.0
    for t in sorted({d for d, e in data if e}):
        at_risk = sum(1 for d, _ in data if d >= t)
        events = sum(1 for d, e in data if e and d == t)
        surv *= 1.0 - events / at_risk
        curve.append((t, surv))
    return curve


def _summary(data: list[tuple[int, bool]]) -> dict[str, object]:
    curve = kaplan_meier(data)
    return {"lives": len(data), "events": sum(e for _, e in data),
            "censored": sum(not e for _, e in data), "curve": [[t, s] for t, s in curve]}


@signal("forgetting_half_life", higher_is_better=True, none_is="best",
        description="training items until half the correct answers are forgotten (Kaplan-Meier); "
                    "null = never reached")
def forgetting_half_life(traj: Trajectory) -> SignalValue:
    if traj.K == 0:
        return none("no checkpoints")
    data = lives(traj)
    info = _summary(data)
    if not data:
        # nothing was ever right, so nothing was retained: a half-life of zero, not "never forgot"
        return value(0.0, never_reached=False, note="no lives: no item was ever correct", **info)
    half = next((t for t, s in kaplan_meier(data) if s <= 0.5), None)
    if half is None:
        return none("survival never fell to 0.5 (censored): better than any finite half-life",
                    never_reached=True, **info)
    return value(half, never_reached=False, **info)


@signal("survival_at_end", higher_is_better=True,
        description="Kaplan-Meier survival of correct answers at the last checkpoint")
def survival_at_end(traj: Trajectory) -> SignalValue:
    data = lives(traj)
    if not data:
        return none("no lives: no item was ever correct")
    curve = kaplan_meier(data)
    return value(curve[-1][1] if curve else 1.0, **_summary(data))
