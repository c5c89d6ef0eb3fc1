"""The registry of fitness signals: one line per signal, each loaded on its first lookup."""

from __future__ import annotations

from typing import Any

from common.registry import Registry

SIGNALS: Registry[Any] = Registry("signal", {
    "confidence_gap": "fitness.signals.confidence:confidence_gap",
    "confidence_gap_peak": "fitness.signals.confidence:confidence_gap_peak",
    "final_accuracy": "fitness.signals.stability:final_accuracy",
    "forgetting_half_life": "fitness.signals.forgetting:forgetting_half_life",
    "forward_transfer": "fitness.signals.transfer:forward_transfer",
    "grok_delay": "fitness.signals.generalisation:grok_delay",
    "grok_memorised_step": "fitness.signals.generalisation:grok_memorised_step",
    "grok_onset_step": "fitness.signals.generalisation:grok_onset_step",
    "grokking": "fitness.signals.generalisation:grokking",
    "holdout_gain": "fitness.signals.generalisation:holdout_gain",
    "immediate_learning": "fitness.signals.learning_speed:immediate_learning",
    "learned_per_100": "fitness.signals.learning_speed:learned_per_100",
    "learning_speed": "fitness.signals.learning_speed:learning_speed",
    "meta_learning_cumulative": "fitness.signals.meta:meta_learning_cumulative",
    "meta_learning_window": "fitness.signals.meta:meta_learning_window",
    "oscillation": "fitness.signals.stability:oscillation",
    "spectral_alpha_distance": "fitness.signals.spectra:spectral_alpha_distance",
    "spectral_update_cosine": "fitness.signals.spectra:spectral_update_cosine",
    "spectral_warnings": "fitness.signals.spectra:spectral_warnings",
    "stuck": "fitness.signals.stability:stuck",
    "stuck_fraction": "fitness.signals.stability:stuck_fraction",
    "survival_at_end": "fitness.signals.forgetting:survival_at_end",
})
