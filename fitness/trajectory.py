"""A learner's trajectory: per checkpoint and per item, right / wrong and a confidence.

Item states (DESIGN.md, "Item states and the signals") compare an item's verdict at a checkpoint
with its baseline `b_i` (its state at the last probe before the window that trains it):
improved = wrong→right, retained = right→right, regressed = right→wrong, stuck = wrong→wrong.
`initial` is its state at the start of the generation, before any training; an item wrong there
and right at its baseline turned right before it was trained (forward transfer). Cumulative rates
at checkpoint k use every item probed at k; window rates only the items whose window is k (trained
since the previous checkpoint). A rate whose denominator is 0 is undefined (None), not 0. `None` in
`correct` means "not probed at that checkpoint" (typically: not trained yet).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

STATES = ("improved", "retained", "regressed", "stuck")


@dataclass
class Trajectory:
    """One learner's probe history. K = len(steps) checkpoints, H holdout items."""

    learner_id: str
    steps: list[int]                                   # [K] checkpoint steps, in training items
    baseline: dict[str, bool]                          # item id -> correct before training
    window: dict[str, int]                             # item id -> checkpoint index that trained it
    correct: dict[str, list[bool | None]]              # item id -> [K]; None = not probed there
    confidence: dict[str, list[float | None]]          # item id -> [K]; probability of the answer
    holdout_ids: list[str] = field(default_factory=list)            # [H]
    holdout_baseline: list[bool] = field(default_factory=list)      # [H]
    holdout_correct: list[list[bool]] = field(default_factory=list)     # [K][H]
    holdout_confidence: list[list[float]] = field(default_factory=list)  # [K][H]
    # [K][H] self-confidence: probability of the learner's own greedy answer (empty: not probed)
    holdout_self_confidence: list[list[float | None]] = field(default_factory=list)
    failed: bool = False
    spectral: dict[str, Any] | None = None   # `fitness.spectral.spectral()` output (engine)
    initial: dict[str, bool] = field(default_factory=dict)   # item id -> correct before any
    # training this generation ({} = unknown, e.g. a file that records only the baseline)

    @property
    def K(self) -> int:
        return len(self.steps)

    def probed(self, item: str) -> list[tuple[int, bool]]:
        """(checkpoint index, correct) at every checkpoint where `item` was probed."""
        return [(k, bool(c)) for k, c in enumerate(self.correct[item]) if c is not None]


def state(baseline: bool, now: bool) -> str:
    """The item state for a baseline verdict and the verdict now."""
    if baseline:
        return "retained" if now else "regressed"
    return "improved" if now else "stuck"


def item_states(traj: Trajectory, k: int, items: Iterable[str] | None = None) -> dict[str, str]:
    """Item id -> state at checkpoint k, for the (given) items probed at k."""
    ids = traj.correct if items is None else items
    out = {}
    for i in ids:
        c = traj.correct[i][k]
        if c is not None:
            out[i] = state(traj.baseline.get(i, False), bool(c))
    return out


def counts(states: dict[str, str]) -> dict[str, int]:
    """How many items are in each of the four states."""
    out = dict.fromkeys(STATES, 0)
    for s in states.values():
        out[s] += 1
    return out


Rates = tuple[float | None, float | None]


def rates(states: dict[str, str]) -> Rates:
    """(improvement, forgetting): improved / (improved + stuck), regressed / (retained + regressed),
    None when the denominator is 0 (DESIGN.md: a window with no wrong item has no improvement rate;
    reading it as 0 would make curricula that order items by difficulty or by baseline correctness
    fix the acceleration mechanically)."""
    n = counts(states)
    imp_den = n["improved"] + n["stuck"]
    fgt_den = n["retained"] + n["regressed"]
    return (n["improved"] / imp_den if imp_den else None,
            n["regressed"] / fgt_den if fgt_den else None)


def cumulative_rates(traj: Trajectory) -> list[Rates]:
    """[K] (improvement, forgetting) over all items probed at each checkpoint."""
    return [rates(item_states(traj, k)) for k in range(traj.K)]


def window_items(traj: Trajectory, k: int) -> list[str]:
    """The items trained in window k (since checkpoint k - 1)."""
    return [i for i, w in traj.window.items() if w == k and i in traj.correct]


def window_rates(traj: Trajectory) -> list[Rates]:
    """[K] (improvement, forgetting) at checkpoint k over only the items of window k."""
    return [rates(item_states(traj, k, window_items(traj, k))) for k in range(traj.K)]


def train_accuracy(traj: Trajectory) -> list[float | None]:
    """[K] fraction of the probed trained items correct at each checkpoint (None: none probed)."""
    out: list[float | None] = []
    for k in range(traj.K):
        vals = [c[k] for c in traj.correct.values() if c[k] is not None]
        out.append(sum(map(bool, vals)) / len(vals) if vals else None)
    return out


def holdout_accuracy(traj: Trajectory) -> list[float | None]:
    """[K] holdout accuracy at each checkpoint (None when there is no holdout)."""
    return [sum(map(bool, row)) / len(row) if row else None for row in traj.holdout_correct]


def check(traj: Trajectory) -> None:
    """Raise ValueError (one line) when the trajectory's arrays disagree in shape."""
    K, who = traj.K, f"trajectory {traj.learner_id!r}"
    if list(traj.steps) != sorted(traj.steps):
        raise ValueError(f"{who}: steps {traj.steps} are not increasing; sort the checkpoints")
    for name, table in (("correct", traj.correct), ("confidence", traj.confidence)):
        bad = next((i for i, v in table.items() if len(v) != K), None)
        if bad is not None:
            raise ValueError(f"{who}: {name}[{bad!r}] has {len(table[bad])} values for {K} "
                             "checkpoints; give one per checkpoint (None = not probed)")
    H = len(traj.holdout_ids)
    for name, rows in (("holdout_correct", traj.holdout_correct),
                       ("holdout_confidence", traj.holdout_confidence),
                       ("holdout_self_confidence", traj.holdout_self_confidence)):
        if rows and (len(rows) != K or any(len(r) != H for r in rows)):
            raise ValueError(f"{who}: {name} must be [K={K}][H={H}] (or empty)")
    if traj.holdout_baseline and len(traj.holdout_baseline) != H:
        raise ValueError(f"{who}: holdout_baseline has {len(traj.holdout_baseline)} values for "
                         f"{H} holdout ids")
