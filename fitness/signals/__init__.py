"""Every fitness signal, one small module per signal or related group (listed in `fitness.registry`).

Also the plain helpers other code calls directly: `detect_grokking`, `confidence_gap_series`,
`branch_area` (hysteresis between two sweeps), `lives`, `kaplan_meier`, `transitions`, `acceleration`,
`transferred`, `delays`.
"""

from __future__ import annotations

from fitness.signals.confidence import branch_area, confidence_gap_series
from fitness.signals.forgetting import kaplan_meier, lives
from fitness.signals.generalisation import detect_grokking, plateau_index
from fitness.signals.learning_speed import delays
from fitness.signals.meta import acceleration
from fitness.signals.spectra import NO_SPECTRAL
from fitness.signals.stability import stuck_items, transitions
from fitness.signals.transfer import transferred

__all__ = ["NO_SPECTRAL", "acceleration", "branch_area", "confidence_gap_series", "delays",
           "detect_grokking", "kaplan_meier", "lives", "plateau_index", "stuck_items",
           "transferred", "transitions"]
