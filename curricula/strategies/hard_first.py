"""Hard-first: descending `Item.difficulty`, ties broken by a seeded shuffle."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from common.ranges import ParamRange
from curricula.items import Item
from curricula.registry import STRATEGIES
from curricula.strategies._common import rng_for, shuffled


@STRATEGIES.named
class HardFirst:
    name: ClassVar[str]   # from curricula/registry.py (STRATEGIES.named)
    description: ClassVar[str] = "descending difficulty, ties in seeded random order"
    mutable: ClassVar[dict[str, ParamRange]] = {}

    def order(self, items: Sequence[Item], seed: int,
              probe: Mapping[str, tuple[bool, float]] | None = None) -> list[Item]:
        # shuffle, then a stable sort: equal difficulties keep the seeded order
        return sorted(shuffled(items, rng_for(self.name, seed)), key=lambda it: -it.difficulty)
