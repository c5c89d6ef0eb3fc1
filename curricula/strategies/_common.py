"""Helpers shared by the curriculum strategies."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def rng_for(strategy: str, seed: int) -> random.Random:
    """A private RNG per (strategy, seed): streams never touch the global `random` state."""
    return random.Random(f"curriculum:{strategy}:{seed}")


def shuffled(items: Sequence[T], rng: random.Random) -> list[T]:
    """A seeded permutation of `items` (a new list)."""
    out = list(items)
    rng.shuffle(out)
    return out
