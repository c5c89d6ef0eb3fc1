"""Generalisation: holdout gain over the baseline; grokking (a late jump of holdout accuracy)."""

from __future__ import annotations

from collections.abc import Sequence

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory, holdout_accuracy, train_accuracy

GROK_THRESHOLD = 0.2   # DESIGN.md: a window-mean jump of more than 0.2 ...
GROK_WINDOW = 10       # ... over a window of 10 probes
MIN_WINDOW = 2         # shorter trajectories (an evolution's 6 checkpoints) use K // 2 probes
PLATEAU_TOL = 0.05     # train accuracy "plateaued": it moved <= 0.05 within one window
MEMORISED = 0.9        # train accuracy at which a learner counts as having memorised its items


def _mean(xs: Sequence[float | None]) -> float | None:
    return None if any(x is None for x in xs) else sum(xs) / len(xs)  # type: ignore[arg-type]


def _on_plateau(xs: Sequence[float | None], tol: float) -> list[bool]:
    """Which probes sit on the plateau: within `tol` of the median of `xs` (None: not on it)."""
    w = sorted(x for x in xs if x is not None)
    if not w:
        return [False] * len(xs)
    mid = (w[(len(w) - 1) // 2] + w[len(w) // 2]) / 2
    return [x is not None and abs(x - mid) <= tol for x in xs]


def spikes_allowed(window: int) -> int:
    """Probes of a window that may sit off the plateau (loss spikes): a fifth, at least one."""
    return max(1, window // 5)


def _needed(window: int) -> int:
    """Probes of a window that must sit on the plateau (at least one)."""
    return max(1, window - spikes_allowed(window))


def plateau_means(train_acc: Sequence[float | None], val_acc: Sequence[float | None], j: int,
                  window: int = GROK_WINDOW, tol: float = PLATEAU_TOL
                  ) -> tuple[float | None, float | None]:
    """Validation accuracy's means over (j-2*window, j-window] and (j-window, j], each over the
    probes whose train accuracy is within `tol` of the two windows' median; None for a window
    with more than `spikes_allowed(window)` probes off it (or a missing validation value)."""
    lo = j - 2 * window + 1
    on = _on_plateau(train_acc[lo:j + 1], tol)
    means: list[float | None] = []
    for a in (0, window):
        kept = [val_acc[lo + k] for k in range(a, a + window) if on[k]]
        means.append(_mean(kept) if len(kept) >= _needed(window) else None)
    return means[0], means[1]


def plateau_index(train_acc: Sequence[float | None], window: int = GROK_WINDOW,
                  tol: float = PLATEAU_TOL) -> int | None:
    """The first probe index i >= window - 1 where train accuracy was measured at every probe of
    (i-window, i] and all but `spikes_allowed(window)` of them lie within `tol` of its median
    (one probe caught in a loss spike does not unsettle a plateau); None if it never settles."""
    for i in range(window - 1, len(train_acc)):
        w = train_acc[i - window + 1:i + 1]
        if all(x is not None for x in w) and sum(_on_plateau(w, tol)) >= _needed(window):
            return i
    return None


def detect_grokking(train_acc: Sequence[float | None], val_acc: Sequence[float | None],
                    threshold: float = GROK_THRESHOLD, window: int = GROK_WINDOW,
                    plateau_tol: float = PLATEAU_TOL) -> int | None:
    """Probe index j where grokking was detected, or None.

    Fires at the first j whose window mean of validation accuracy over probes (j-window, j]
    exceeds the mean over the window before it, (j-2*window, j-window], by more than `threshold`,
    with the later window wholly after the probe p where train accuracy plateaued and train
    accuracy still on its plateau (`plateau_means`: within `plateau_tol` of the median train
    accuracy of the two windows; both means count only the probes on it, and each window may have
    at most `spikes_allowed(window)` probes off it). So one probe caught in a loss spike
    (unclipped Adam's slingshot: train 0.35 for a probe, then back) neither hides a jump nor makes
    one, while a holdout rise as train climbs back from a long collapse, or climbs at all, is
    learning, not grokking. `train_acc` and `val_acc` are per-probe accuracies of equal length (None = not
    measured).
    """
    if len(train_acc) != len(val_acc):
        raise ValueError(f"train_acc has {len(train_acc)} probes, val_acc {len(val_acc)}; "
                         "pass one value per probe for both")
    if window < 1:
        raise ValueError(f"grokking window {window} must be >= 1 probe")
    p = plateau_index(train_acc, window, plateau_tol)
    if p is None:
        return None
    for j in range(max(2 * window - 1, p + window), len(val_acc)):
        early, late = plateau_means(train_acc, val_acc, j, window, plateau_tol)
        if late is not None and early is not None and late - early > threshold:
            return j
    return None


def grok_window(K: int) -> int:
    """The detector's window for K probes: 10, or K // 2 when fewer than 20 (at least 2)."""
    return min(GROK_WINDOW, K // 2)


@signal("grokking", higher_is_better=True,
        description="1 if holdout accuracy's window mean jumped > 0.2 after train accuracy "
                    "plateaued (window 10 probes, K // 2 below 20 checkpoints), else 0")
def grokking(traj: Trajectory) -> SignalValue:
    if not traj.holdout_ids:
        return none("no holdout items")
    w = grok_window(traj.K)
    if w < MIN_WINDOW:
        return none(f"needs at least {2 * MIN_WINDOW} checkpoints (2 windows of "
                    f"{MIN_WINDOW}), has {traj.K}")
    j = detect_grokking(train_accuracy(traj), holdout_accuracy(traj), window=w)
    if j is None:
        return value(0.0, index=None, step=None, window=w)
    return value(1.0, index=j, step=traj.steps[j], window=w)


def memorised_index(train_acc: Sequence[float | None], level: float = MEMORISED) -> int | None:
    """The first probe index where train accuracy reached `level`; None if it never did."""
    return next((k for k, a in enumerate(train_acc) if a is not None and a >= level), None)


def onset_index(val_acc: Sequence[float | None], start: int) -> int | None:
    """The first probe index >= `start` where holdout accuracy has come half-way from its value
    at `start` to its highest value from `start` on (the midpoint of the jump); None when it
    never rose after `start` or a value is missing."""
    tail = val_acc[start:]
    if not tail or any(v is None for v in tail):
        return None
    lo, hi = tail[0], max(tail)  # type: ignore[type-var]
    assert lo is not None and hi is not None
    if hi <= lo:
        return None
    return start + next(i for i, v in enumerate(tail) if v is not None and v >= (lo + hi) / 2)


def grok_indices(train_acc: Sequence[float | None], val_acc: Sequence[float | None],
                 window: int = GROK_WINDOW) -> tuple[int | None, int | None, int | None]:
    """Probe indices (memorised, detector fired, onset): where train accuracy first reached
    MEMORISED, where `detect_grokking` fired, and, only when it fired after memorising, the holdout
    jump's midpoint from memorisation on (`onset_index`). None where undefined."""
    m = memorised_index(train_acc)
    j = detect_grokking(train_acc, val_acc, window=window)
    o = onset_index(val_acc, m) if m is not None and j is not None else None
    return m, j, o


def grok_timing(traj: Trajectory) -> dict[str, int | None]:
    """When a learner memorised and, if it grokked, when it generalised, in checkpoint steps:
    `memorised_step` (first checkpoint with train accuracy >= MEMORISED), and, only when the
    `grokking` detector fired, `onset_step` (the holdout jump's midpoint after memorisation, see
    `onset_index`) and `delay` (onset - memorised, in training items). None where undefined."""
    out: dict[str, int | None] = {"memorised_step": None, "onset_step": None, "delay": None}
    if not traj.holdout_ids or traj.K == 0:
        return out
    w = grok_window(traj.K)
    tr = train_accuracy(traj)
    m, _, o = grok_indices(tr, holdout_accuracy(traj), w) if w >= MIN_WINDOW else \
        (memorised_index(tr), None, None)
    if m is None:
        return out
    out["memorised_step"] = traj.steps[m]
    if o is not None:   # the onset is set only when the detector fired
        out["onset_step"], out["delay"] = traj.steps[o], traj.steps[o] - traj.steps[m]
    return out


def _timing(traj: Trajectory, key: str) -> SignalValue:
    if not traj.holdout_ids:
        return none("no holdout items")
    t = grok_timing(traj)
    if t[key] is None:
        why = {"memorised_step": f"train accuracy never reached {MEMORISED}",
               "onset_step": "did not grok (no late holdout jump after memorisation)",
               "delay": "did not grok (no late holdout jump after memorisation)"}[key]
        return none(why, **t)
    return value(float(t[key]), **t)  # type: ignore[arg-type]


@signal("grok_memorised_step", higher_is_better=False,
        description=f"first checkpoint step (training items) with train accuracy >= {MEMORISED}")
def grok_memorised_step(traj: Trajectory) -> SignalValue:
    return _timing(traj, "memorised_step")


@signal("grok_onset_step", higher_is_better=False,
        description="grokked learners: the step where holdout accuracy came half-way up its jump "
                    "after memorisation (undefined when it did not grok)")
def grok_onset_step(traj: Trajectory) -> SignalValue:
    return _timing(traj, "onset_step")


@signal("grok_delay", higher_is_better=False,
        description="grokked learners: onset step - memorisation step, in training items "
                    "(how late it generalised; undefined when it did not grok)")
def grok_delay(traj: Trajectory) -> SignalValue:
    return _timing(traj, "delay")


@signal("holdout_gain", higher_is_better=True,
        description="holdout accuracy at the last checkpoint minus before training")
def holdout_gain(traj: Trajectory) -> SignalValue:
    if not traj.holdout_ids:
        return none("no holdout items")
    if traj.K == 0 or not traj.holdout_correct:
        return none("no checkpoints")
    if len(traj.holdout_baseline) != len(traj.holdout_ids):
        return none("no holdout baseline")
    base = sum(traj.holdout_baseline) / len(traj.holdout_ids)
    end = holdout_accuracy(traj)[-1]
    assert end is not None
    return value(end - base, baseline=base, final=end)
