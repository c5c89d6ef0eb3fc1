"""Helpers shared by the curriculum strategies."""

from __future__ import annotations

import random
from collections.abc import Sequence

from curricula.items import Item


def rng_for(strategy: str, seed: int) -> random.Random:
    """A private RNG per (strategy, seed): streams never touch the global `random` state."""
    return random.Random(f"curriculum:{strategy}:{seed}")


def shuffled(items: Sequence[Item], rng: random.Random) -> list[Item]:
    """A seeded permutation of `items` (a new list)."""
    out = list(items)
    rng.shuffle(out)
    return out
