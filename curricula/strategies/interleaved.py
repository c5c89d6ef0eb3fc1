"""Interleaved categories: round-robin over `Item.category`, `block` items per turn.

Both the category order and the order inside each category are seeded shuffles; a category that
runs out drops out of the rotation, so every item still appears exactly once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from common.ranges import ParamRange
from curricula.items import Item
from curricula.registry import STRATEGIES
from curricula.strategies._common import rng_for, shuffled


@STRATEGIES.named
class Interleaved:
    name: ClassVar[str]   # from curricula/registry.py (STRATEGIES.named)
    description: ClassVar[str] = "round-robin over categories, `block` items per turn, seeded"
    mutable: ClassVar[dict[str, ParamRange]] = {"block": ParamRange(1, 4, "int")}

    def __init__(self, block: int = 1) -> None:
        self.block = self.mutable["block"].check(f"{self.name}.block", block)

    def order(self, items: Sequence[Item], seed: int,
              probe: Mapping[str, tuple[bool, float]] | None = None) -> list[Item]:
        rng = rng_for(self.name, seed)
        groups: dict[str, list[Item]] = {}
        for it in shuffled(items, rng):
            groups.setdefault(it.category, []).append(it)
        queues = [groups[c] for c in shuffled(sorted(groups), rng)]
        out: list[Item] = []
        while queues:
            for q in queues:
                out += q[:self.block]
                del q[:self.block]
            queues = [q for q in queues if q]
        return out
