"""Spectral signals: read `Trajectory.spectral`, the `fitness.spectral.spectral()` result that the
engine computes on the learner's merged weights at the last checkpoint (this file never runs
weightwatcher itself, so signals stay cheap and `fn(traj)` keeps one argument)."""

from __future__ import annotations

from typing import Any

from fitness.signal import SignalValue, none, signal, value
from fitness.trajectory import Trajectory

NO_SPECTRAL = "no spectral analysis on this trajectory (training.spectral off, or not computed)"


def _spec(traj: Trajectory) -> dict[str, Any] | None:
    return traj.spectral if isinstance(traj.spectral, dict) else None


@signal("spectral_alpha_distance", higher_is_better=False,
        description="distance of the adapted layers' mean weightwatcher alpha from the 2-6 band")
def spectral_alpha_distance(traj: Trajectory) -> SignalValue:
    s = _spec(traj)
    if s is None:
        return none(NO_SPECTRAL)
    if s.get("alpha_distance") is None:
        return none("no layer had a power-law fit")
    return value(s["alpha_distance"], mean_alpha=s.get("mean_alpha"),
                 reliable=s.get("mean_alpha_reliable"), warnings=list(s.get("warnings", [])))


@signal("spectral_warnings", higher_is_better=False,
        description="adapted layers with alpha < 2 plus layers with a correlation trap")
def spectral_warnings(traj: Trajectory) -> SignalValue:
    s = _spec(traj)
    if s is None:
        return none(NO_SPECTRAL)
    return value(int(s.get("n_alpha_below_2", 0)) + int(s.get("n_traps", 0)),
                 warnings=list(s.get("warnings", [])))


@signal("spectral_update_cosine", higher_is_better=False,
        description="mean |cosine| of successive LoRA updates between checkpoints "
                    "(correlated updates are thought to cause forgetting)")
def spectral_update_cosine(traj: Trajectory) -> SignalValue:
    s = _spec(traj)
    if s is None:
        return none(NO_SPECTRAL)
    cos = s.get("update_cosine")
    if not cos or cos.get("mean_abs") is None:
        return none("needs LoRA deltas at 3 or more checkpoints with non-zero updates")
    return value(cos["mean_abs"], mean=cos.get("mean"), series=cos.get("series"))
