"""Meta-learning acceleration: does the learner improve more and forget less as it goes on?

acceleration = (late improvement - early improvement) + (early forgetting - late forgetting), each
the mean over the first and the last third of checkpoints (third = K // 3; undefined for K < 3).
The published run used cumulative rates; window rates are the default in fitness because a
cumulative late window still contains every early item.
"""

from __future__ import annotations

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory, cumulative_rates, window_rates


def acceleration(rates: list[tuple[float, float]]) -> tuple[float | None, dict[str, float]]:
    """(acceleration or None when K < 3, its four terms) from [K] (improvement, forgetting)."""
    third = len(rates) // 3
    if third == 0:
        return None, {}

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs)

    early, late = rates[:third], rates[-third:]
    terms = {"early_improvement": mean([r[0] for r in early]),
             "late_improvement": mean([r[0] for r in late]),
             "early_forgetting": mean([r[1] for r in early]),
             "late_forgetting": mean([r[1] for r in late])}
    acc = (terms["late_improvement"] - terms["early_improvement"]) + (
        terms["early_forgetting"] - terms["late_forgetting"])
    return acc, terms


def _signal(rates: list[tuple[float, float]]) -> SignalValue:
    acc, terms = acceleration(rates)
    series = {"improvement": [r[0] for r in rates], "forgetting": [r[1] for r in rates]}
    if acc is None:
        return none(f"needs at least 3 checkpoints, has {len(rates)}", **series)
    return value(acc, **terms, **series)


@signal("meta_learning_window", higher_is_better=True,
        description="meta-learning acceleration from per-window rates (late - early thirds)")
def meta_learning_window(traj: Trajectory) -> SignalValue:
    return _signal(window_rates(traj))


@signal("meta_learning_cumulative", higher_is_better=True,
        description="meta-learning acceleration from cumulative rates (the published definition)")
def meta_learning_cumulative(traj: Trajectory) -> SignalValue:
    return _signal(cumulative_rates(traj))
