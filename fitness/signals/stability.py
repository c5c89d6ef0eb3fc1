"""Oscillation, stuck items and final accuracy: how stable the learner's answers are."""

from __future__ import annotations

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory


def transitions(traj: Trajectory) -> dict[str, int]:
    """Item id -> number of right<->wrong changes across its consecutive probed checkpoints."""
    out = {}
    for item in traj.correct:
        seq = [ok for _, ok in traj.probed(item)]
        out[item] = sum(a != b for a, b in zip(seq, seq[1:], strict=False))
    return out


@signal("oscillation", higher_is_better=False,
        description="all items' right<->wrong transitions / all consecutive checkpoint pairs")
def oscillation(traj: Trajectory) -> SignalValue:
    per_item = transitions(traj)
    pairs = sum(max(len(traj.probed(i)) - 1, 0) for i in traj.correct)
    if pairs == 0:
        return none("no item was probed at two checkpoints", transitions=per_item, pairs=0)
    return value(sum(per_item.values()) / pairs, transitions=per_item, pairs=pairs)


def stuck_items(traj: Trajectory) -> tuple[list[str], int]:
    """(trained items wrong at baseline, probed at least once and never correct; how many items
    were probed). An item right at baseline and never right again is regressed, not stuck."""
    probed = {i: traj.probed(i) for i in traj.correct}
    seen = [i for i, p in probed.items() if p]
    return [i for i in seen if not traj.baseline.get(i, False)
            and not any(ok for _, ok in probed[i])], len(seen)


@signal("stuck", higher_is_better=False,
        description="number of trained items wrong at baseline and never correct at any checkpoint")
def stuck(traj: Trajectory) -> SignalValue:
    items, n = stuck_items(traj)
    return value(len(items), items=sorted(items), probed=n)


@signal("stuck_fraction", higher_is_better=False,
        description="fraction of the probed trained items wrong at baseline and never correct since")
def stuck_fraction(traj: Trajectory) -> SignalValue:
    items, n = stuck_items(traj)
    if n == 0:
        return none("no trained item was probed")
    return value(len(items) / n, stuck=len(items), probed=n)


@signal("final_accuracy", higher_is_better=True,
        description="fraction of the trained items probed at the last checkpoint that are correct")
def final_accuracy(traj: Trajectory) -> SignalValue:
    if traj.K == 0:
        return none("no checkpoints")
    last = [c[-1] for c in traj.correct.values() if c[-1] is not None]
    if not last:
        return none("no trained item was probed at the last checkpoint")
    right = sum(map(bool, last))
    return value(right / len(last), correct=right, n=len(last))
