"""A signal is a function of a trajectory plus metadata, listed once on `SIGNALS`.

Signals never know their weights: `fitness.combine` flips the lower-is-better ones and weights them.
Adding one is a function in a small file under `fitness/signals/`, made a `Signal` by the decorator::

    @signal("final_accuracy", higher_is_better=True, description="...")
    def final_accuracy(traj: Trajectory) -> SignalValue: ...

plus its line in `fitness/registry.py` (``"final_accuracy": "fitness.signals.stability:final_accuracy"``),
which loads the module on the signal's first lookup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fitness.registry import SIGNALS
from fitness.trajectory import Trajectory


@dataclass
class SignalValue:
    """A signal's value on one trajectory: a finite float, or None with the reason why."""

    value: float | None
    reason: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Signal:
    """`fn(traj) -> SignalValue` plus its direction.

    `none_is` says how `combine` ranks a None value: "worst" (the default: undefined is no
    evidence of quality) or "best" (e.g. a forgetting half-life never reached = nothing forgotten).
    """

    name: str
    fn: Callable[[Trajectory], SignalValue]
    higher_is_better: bool
    description: str
    none_is: str = "worst"

    def __call__(self, traj: Trajectory) -> SignalValue:
        return self.fn(traj)


SignalFn = Callable[[Trajectory], SignalValue]


def signal(name: str, higher_is_better: bool, description: str, none_is: str = "worst",
           ) -> Callable[[SignalFn], Signal]:
    """Decorator: `fn` as a `Signal` (still callable on a trajectory); `SIGNALS` lists it."""
    if none_is not in ("worst", "best"):
        raise ValueError(f"signal {name!r}: none_is must be 'worst' or 'best', got {none_is!r}")

    def deco(fn: SignalFn) -> Signal:
        return Signal(name, fn, higher_is_better, description, none_is)

    return deco


def none(reason: str, **extra: Any) -> SignalValue:
    """An undefined signal value with its reason."""
    return SignalValue(None, reason, dict(extra))


def value(x: float, **extra: Any) -> SignalValue:
    """A defined value; NaN / inf become None with a reason, so every value stays finite."""
    x = float(x)
    if not math.isfinite(x):
        return SignalValue(None, f"non-finite value {x}", dict(extra))
    return SignalValue(x, "", dict(extra))


def get(name: str) -> Signal:
    """The registered `Signal` called `name` (one-line UnknownNameError listing the valid names)."""
    return SIGNALS.get(name)  # type: ignore[no-any-return]


def compute_signals(traj: Trajectory, names: Sequence[str] | None = None,
                    ) -> dict[str, SignalValue]:
    """Every registered signal (or `names`) on `traj`. A failed learner gets None everywhere."""
    chosen = list(SIGNALS.names() if names is None else names)
    sigs = [get(n) for n in chosen]
    if traj.failed:
        return {s.name: none("learner failed (non-finite loss or gradients)") for s in sigs}
    out = {}
    for s in sigs:
        v = s.fn(traj)
        if v.value is not None and not math.isfinite(v.value):
            v = SignalValue(None, f"non-finite value {v.value}", v.extra)
        if v.value is None and not v.reason:
            raise AssertionError(f"signal {s.name!r} returned None without a reason")
        out[s.name] = v
    return out
