"""Curriculum strategies: one module each, registered on `curricula.STRATEGIES` when imported."""

from __future__ import annotations

from curricula.strategies import (
    adversarial,
    easy_first,
    hard_first,
    interleaved,
    random_order,
    rehearsal,
)

__all__ = ["adversarial", "easy_first", "hard_first", "interleaved", "random_order", "rehearsal"]
