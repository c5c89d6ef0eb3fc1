"""Score recorded trajectories: every signal per learner with its noise, and the population's
spread against that noise (what `evolve score` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fitness.noise import bootstrap_meta, spread, wilson
from fitness.signal import compute_signals
from fitness.trajectory import Trajectory

# signals that get an interval, and how: bootstrap over items, or Wilson on k of n
NOISY = ("meta_learning_cumulative", "meta_learning_window", "final_accuracy", "stuck_fraction")


def _intervals(traj: Trajectory, sig: dict[str, Any], n_boot: int, seed: int,
               ) -> dict[str, list[float] | None]:
    out: dict[str, list[float] | None] = {}
    for kind in ("cumulative", "window"):
        b = None if traj.failed else bootstrap_meta(traj, kind, n_boot=n_boot, seed=seed)
        out[f"meta_learning_{kind}"] = None if b is None else [b["lo"], b["hi"]]
    fa, sf = sig["final_accuracy"], sig["stuck_fraction"]
    out["final_accuracy"] = (None if fa.value is None
                             else list(wilson(fa.extra["correct"], fa.extra["n"])))
    out["stuck_fraction"] = (None if sf.value is None
                             else list(wilson(sf.extra["stuck"], sf.extra["probed"])))
    return out


def score(trajs: Sequence[Trajectory], n_boot: int = 1000, seed: int = 0,
          ) -> dict[str, dict[str, Any]]:
    """Learner id -> {every signal's value, "transitions", "reasons" (why a value is null),
    "intervals" (95%: bootstrap for meta-learning, Wilson for rates), "spread" (per noisy
    signal: the population's best - worst, its noise margin and `within_noise`)}."""
    ids = [t.learner_id for t in trajs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"learner ids repeat ({', '.join(ids)}); each trajectory needs its own id")
    out: dict[str, dict[str, Any]] = {}
    for t in trajs:
        sig = compute_signals(t)
        row: dict[str, Any] = {name: v.value for name, v in sig.items()}
        row["transitions"] = sig["oscillation"].extra.get("transitions", {})
        row["reasons"] = {name: v.reason for name, v in sig.items() if v.value is None}
        row["intervals"] = _intervals(t, sig, n_boot, seed)
        out[t.learner_id] = row
    spreads = {name: spread({i: r[name] for i, r in out.items()},
                            {i: (tuple(r["intervals"][name]) if r["intervals"][name] else None)
                             for i, r in out.items()})
               for name in NOISY}
    for row in out.values():
        row["spread"] = spreads
    return out
