"""A learner's probe results → its `fitness.Trajectory`, and its metric curves.

An item is `None` (not probed, in the Trajectory's sense) at the checkpoints before the window that
trained it: the signals' "items trained so far" then fall out of the data with no extra bookkeeping.
Its baseline is its verdict at the last probe before its window (DESIGN.md), its `initial` state
the verdict before any training of the generation (forward transfer compares the two).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from evolve.train import LearnerResult

if TYPE_CHECKING:
    from fitness import Trajectory


def trajectory(res: LearnerResult) -> Trajectory:
    """The learner's `fitness.Trajectory` (steps in training items)."""
    from fitness import Trajectory

    n, K = res.n_train, len(res.steps)
    ids, win = res.item_ids[:n], res.window
    correct = {i: [bool(res.correct[k + 1, j]) if win[i] <= k else None for k in range(K)]
               for j, i in enumerate(ids)}
    confidence = {i: [float(res.prob[k + 1, j]) if win[i] <= k else None for k in range(K)]
                  for j, i in enumerate(ids)}
    traj = Trajectory(
        learner_id=res.learner_id, steps=list(res.steps),
        baseline={i: bool(res.correct[win[i], j]) for j, i in enumerate(ids)},
        initial={i: bool(res.correct[0, j]) for j, i in enumerate(ids)},
        window=dict(win), correct=correct, confidence=confidence,
        holdout_ids=list(res.item_ids[n:]),
        holdout_baseline=[bool(x) for x in res.correct[0, n:]],
        holdout_correct=[[bool(x) for x in res.correct[k + 1, n:]] for k in range(K)],
        holdout_confidence=[[float(x) for x in res.prob[k + 1, n:]] for k in range(K)],
        failed=bool(res.failure),
    )
    if res.self_prob is not None:
        traj.holdout_self_confidence = [[float(x) for x in res.self_prob[k + 1, n:]]
                                        for k in range(K)]
    if hasattr(traj, "spectral"):
        traj.spectral = res.spectral
    return traj


def curves(res: LearnerResult) -> dict[str, list[tuple[int, float]]]:
    """Per-checkpoint `train_acc`, `holdout_acc`, `holdout_confidence`, `loss` and, where probed,
    `holdout_self_confidence` (finite points only): the confidence-vs-knowledge curve of a run."""
    n, win, has_h = res.n_train, res.window, res.n_train < len(res.item_ids)
    ids = res.item_ids[:n]
    out: dict[str, list[tuple[int, float]]] = {
        "train_acc": [], "holdout_acc": [], "holdout_confidence": [], "loss": []}
    for k, step in enumerate(res.steps):
        seen = [j for j, i in enumerate(ids) if win[i] <= k]
        values = {
            "train_acc": float(np.mean(res.correct[k + 1, seen])) if seen else math.nan,
            "holdout_acc": float(np.mean(res.correct[k + 1, n:])) if has_h else math.nan,
            "holdout_confidence": float(np.mean(res.prob[k + 1, n:])) if has_h else math.nan,
            "loss": float(res.losses[k]),
        }
        if res.self_prob is not None and has_h:
            values["holdout_self_confidence"] = float(np.mean(res.self_prob[k + 1, n:]))
        for name, v in values.items():
            if math.isfinite(v):
                out.setdefault(name, []).append((int(step), v))
    if res.assess_curve:
        out["assess_acc"] = list(res.assess_curve)
    return out
