"""Random shuffle: the control arm every other curriculum is compared against."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from common.ranges import ParamRange
from curricula.items import Item
from curricula.registry import STRATEGIES
from curricula.strategies._common import rng_for, shuffled


@STRATEGIES.named
class RandomOrder:
    name: ClassVar[str]   # from curricula/registry.py (STRATEGIES.named)
    description: ClassVar[str] = "seeded random shuffle of the items"
    mutable: ClassVar[dict[str, ParamRange]] = {}

    def order(self, items: Sequence[Item], seed: int,
              probe: Mapping[str, tuple[bool, float]] | None = None) -> list[Item]:
        return shuffled(items, rng_for(self.name, seed))
