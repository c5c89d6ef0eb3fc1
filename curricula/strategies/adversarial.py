"""Adversarial: what the learner gets confidently wrong comes first (reads the latest probe).

Order: probed-wrong items by falling confidence, then probed-right items by falling confidence,
then unprobed items; ties (and everything, when there is no probe) in seeded random order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from common.ranges import ParamRange
from curricula.items import Item
from curricula.registry import STRATEGIES
from curricula.strategies._common import rng_for, shuffled


@STRATEGIES.named
class Adversarial:
    name: ClassVar[str]   # from curricula/registry.py (STRATEGIES.named)
    description: ClassVar[str] = "confidently-wrong items first, from the learner's latest probe"
    mutable: ClassVar[dict[str, ParamRange]] = {}

    def order(self, items: Sequence[Item], seed: int,
              probe: Mapping[str, tuple[bool, float]] | None = None) -> list[Item]:
        out = shuffled(items, rng_for(self.name, seed))
        if not probe:
            return out

        def key(it: Item) -> tuple[int, bool, float]:
            if it.id not in probe:
                return (1, False, 0.0)
            correct, confidence = probe[it.id]
            return (0, bool(correct), -float(confidence))

        return sorted(out, key=key)   # stable: ties keep the seeded order
