"""Learning speed within a generation: how many of the items a learner did not know it learns, and
how soon after it is trained on them. These look at the learner's own training items, so they are
available every generation without the (thrown-away) assessment; whether they predict the
assessment's outcome is measured, not assumed (`docs/results/selection`, signal table).

For a trained item wrong at its baseline (the last probe before its window), let d be the number
of checkpoints from its window's checkpoint to the first checkpoint where it is right (0 = right
right after the window that trained it; never right = no d).
- `immediate_learning`: share of those items right at their window's own checkpoint (d = 0).
- `learning_speed`: mean of 1 / (1 + d) over those items, 0 for an item never right: 1 = every
  item learned as soon as it was trained.
- `learned_per_100`: those items right at the last checkpoint, per 100 training items seen.
"""

from __future__ import annotations

from collections.abc import Callable

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory


def delays(traj: Trajectory) -> dict[str, int | None]:
    """Item id -> checkpoints from its window to its first right answer (None: never right), for
    the probed trained items wrong at baseline."""
    out: dict[str, int | None] = {}
    for i in traj.correct:
        if traj.baseline.get(i, False):
            continue
        probes = traj.probed(i)
        if not probes:
            continue
        w = traj.window.get(i, probes[0][0])
        out[i] = next((k - w for k, ok in probes if ok and k >= w), None)
    return out


def _mean_over_delays(traj: Trajectory, score: Callable[[int | None], float]) -> SignalValue:
    """The mean of `score(d)` over the trained items wrong at baseline (None if there are none)."""
    d = delays(traj)
    if not d:
        return none("no trained item was wrong at baseline")
    return value(sum(score(x) for x in d.values()) / len(d), items=len(d))


@signal("immediate_learning", higher_is_better=True,
        description="share of trained items wrong at baseline that are right right after their "
                    "window")
def immediate_learning(traj: Trajectory) -> SignalValue:
    return _mean_over_delays(traj, lambda x: float(x == 0))


@signal("learning_speed", higher_is_better=True,
        description="mean 1 / (1 + checkpoints until first right) over trained items wrong at "
                    "baseline (0 if never right)")
def learning_speed(traj: Trajectory) -> SignalValue:
    return _mean_over_delays(traj, lambda x: 0.0 if x is None else 1.0 / (1 + x))


@signal("learned_per_100", higher_is_better=True,
        description="trained items wrong at baseline and right at the last checkpoint, per 100 "
                    "training items")
def learned_per_100(traj: Trajectory) -> SignalValue:
    if traj.K == 0 or not traj.steps[-1]:
        return none("no checkpoints")
    learned = sum(1 for i in delays(traj) if traj.correct[i][-1])
    return value(100.0 * learned / traj.steps[-1], learned=learned)
