"""Meta-learning acceleration: does the learner improve more and forget less as it goes on?

acceleration = (late improvement - early improvement) + (early forgetting - late forgetting), each
the mean over the first and the last third of checkpoints (third = K // 3; undefined for K < 3).
The published run used cumulative rates; window rates are the default in fitness because a
cumulative late window still contains every early item. A rate over an empty denominator is
undefined (`fitness.trajectory.rates`): each third averages only its defined rates. A term
(improvement's change, forgetting's change) counts only when both its thirds are defined (a learner
whose items were all wrong at baseline has no forgetting rate to compare); the acceleration is the
sum of the defined terms, undefined when neither is.
"""

from __future__ import annotations

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Rates, Trajectory, cumulative_rates, window_rates


def acceleration(rates: list[Rates]) -> tuple[float | None, dict[str, float]]:
    """(acceleration or None, its defined terms) from [K] (improvement, forgetting); None when
    K < 3 or when neither term has both thirds defined."""
    third = len(rates) // 3
    if third == 0:
        return None, {}

    def mean(xs: list[float | None]) -> float | None:
        vals = [x for x in xs if x is not None]
        return sum(vals) / len(vals) if vals else None

    early, late = rates[:third], rates[-third:]
    terms = {"early_improvement": mean([r[0] for r in early]),
             "late_improvement": mean([r[0] for r in late]),
             "early_forgetting": mean([r[1] for r in early]),
             "late_forgetting": mean([r[1] for r in late])}
    defined = {k: v for k, v in terms.items() if v is not None}
    parts = []
    if "late_improvement" in defined and "early_improvement" in defined:
        parts.append(defined["late_improvement"] - defined["early_improvement"])
    if "early_forgetting" in defined and "late_forgetting" in defined:
        parts.append(defined["early_forgetting"] - defined["late_forgetting"])
    return (sum(parts) if parts else None), defined


def _signal(rates: list[Rates]) -> SignalValue:
    acc, terms = acceleration(rates)
    series = {"improvement": [r[0] for r in rates], "forgetting": [r[1] for r in rates]}
    if acc is None:
        if len(rates) < 3:
            return none(f"needs at least 3 checkpoints, has {len(rates)}", **series)
        missing = sorted({"early_improvement", "late_improvement", "early_forgetting",
                          "late_forgetting"} - set(terms))
        return none(f"undefined rates: no item to rate in {', '.join(missing)} (an empty "
                    "denominator is undefined, not 0), so neither term is defined",
                    **terms, **series)
    return value(acc, **terms, **series)


@signal("meta_learning_window", higher_is_better=True,
        description="meta-learning acceleration from per-window rates (late - early thirds)")
def meta_learning_window(traj: Trajectory) -> SignalValue:
    return _signal(window_rates(traj))


@signal("meta_learning_cumulative", higher_is_better=True,
        description="meta-learning acceleration from cumulative rates (the published definition)")
def meta_learning_cumulative(traj: Trajectory) -> SignalValue:
    return _signal(cumulative_rates(traj))
