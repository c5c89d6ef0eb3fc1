"""Forward transfer: items that turned right before the learner was trained on them.

An item wrong at the start of the generation (`Trajectory.initial`) and right at its baseline
(the last probe before the window that trains it) was learned from the other items: Avalanche's
forward transfer, per item (DESIGN.md, "Item states and the signals"). The learner's forward
transfer is the share of such items among the trained items wrong at the start. Items trained in
the first window have no probe between the start and their window, so they can never count; they
are left out of the denominator too.
"""

from __future__ import annotations

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory


def transferred(traj: Trajectory) -> tuple[list[str], int]:
    """(items wrong at the start and right at their baseline, how many could have been: wrong at
    the start and trained after at least one probe)."""
    eligible = [i for i in traj.correct if i in traj.initial and not traj.initial[i]
                and traj.window.get(i, 0) > 0]
    return [i for i in eligible if traj.baseline.get(i, False)], len(eligible)


@signal("forward_transfer", higher_is_better=True,
        description="share of items wrong at the generation's start that turned right before "
                    "they were trained")
def forward_transfer(traj: Trajectory) -> SignalValue:
    if not traj.initial:
        return none("no state before training recorded (initial): forward transfer unknown")
    items, n = transferred(traj)
    if n == 0:
        return none("no item wrong at the start was trained after a probe")
    return value(len(items) / n, items=sorted(items), eligible=n)
