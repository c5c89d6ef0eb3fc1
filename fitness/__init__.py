"""Trajectories, fitness signals and their combination into a fitness.

A leaf package: it imports neither `learners` nor `curricula`. `SIGNALS` lists every signal, each
loaded on its first lookup; weightwatcher is imported only by `fitness.spectral`, when it is called.
"""

from __future__ import annotations

from fitness.combine import combine, direction, pareto_ranks
from fitness.formats import load, load_adaptible, load_evolve, save_evolve
from fitness.registry import SIGNALS
from fitness.signal import Signal, SignalValue, compute_signals, signal
from fitness.trajectory import Trajectory

__all__ = ["SIGNALS", "Signal", "SignalValue", "Trajectory", "combine", "compute_signals",
           "direction", "load", "load_adaptible", "load_evolve", "pareto_ranks", "save_evolve",
           "signal"]
