"""Trajectories, fitness signals and their combination into a fitness.

A leaf package: it imports neither `learners` nor `curricula`.
"""

from __future__ import annotations

from fitness.registry import SIGNALS

__all__ = ["SIGNALS"]
