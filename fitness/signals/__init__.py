"""Every fitness signal, one small module per signal or related group; importing registers them.

Also the plain helpers other code calls directly: `detect_grokking`, `confidence_gap_series`,
`confidence_loop_area_of`, `lives`, `kaplan_meier`, `transitions`, `acceleration`,
`transferred`.
"""

from __future__ import annotations

from fitness.signals.confidence import (
    confidence_gap_series,
    confidence_loop_area_of,
    shoelace,
)
from fitness.signals.forgetting import kaplan_meier, lives
from fitness.signals.generalisation import detect_grokking, plateau_index
from fitness.signals.learning_speed import delays
from fitness.signals.meta import acceleration
from fitness.signals.spectra import NO_SPECTRAL
from fitness.signals.stability import stuck_items, transitions
from fitness.signals.transfer import transferred

__all__ = ["NO_SPECTRAL", "acceleration", "confidence_gap_series", "confidence_loop_area_of",
           "delays", "detect_grokking", "kaplan_meier", "lives", "plateau_index", "shoelace", "stuck_items",
           "transferred", "transitions"]
