"""Power-law rehearsal: new items in seeded order, earlier ones replayed with recency-weighted odds.

After each new item, with probability `ratio`, one earlier item is inserted, chosen with weight
(age + 1) ** -exponent, where age 0 is the item presented just before the current one: recent
items come back often, old ones rarely but never with zero chance (the spacing of human review).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from itertools import accumulate
from typing import ClassVar

from common.ranges import ParamRange
from curricula.items import Item
from curricula.registry import STRATEGIES
from curricula.strategies._common import rng_for, shuffled


@STRATEGIES.named
class Rehearsal:
    name: ClassVar[str]   # from curricula/registry.py (STRATEGIES.named)
    description: ClassVar[str] = "seeded order plus power-law replay of earlier items (`ratio`, `exponent`)"
    rehearses: ClassVar[bool] = True          # may repeat earlier items (others yield each once)
    mutable: ClassVar[dict[str, ParamRange]] = {
        "ratio": ParamRange(0.0, 0.5),        # at most one replay per two new items
        "exponent": ParamRange(0.5, 3.0),     # 0.5: nearly uniform over the past; 3: mostly the last
    }

    def __init__(self, ratio: float = 0.2, exponent: float = 1.0) -> None:
        self.ratio = self.mutable["ratio"].check(f"{self.name}.ratio", ratio)
        self.exponent = self.mutable["exponent"].check(f"{self.name}.exponent", exponent)

    def order(self, items: Sequence[Item], seed: int,
              probe: Mapping[str, tuple[bool, float]] | None = None) -> list[Item]:
        rng = rng_for(self.name, seed)
        new = shuffled(items, rng)
        # cum[a] = sum of weights of ages 0..a; choosing among t earlier items uses cum[:t]
        cum = list(accumulate((age + 1) ** -self.exponent for age in range(len(new))))
        out: list[Item] = []
        for t, it in enumerate(new):
            out.append(it)
            if t and rng.random() < self.ratio:
                age = bisect.bisect_right(cum, rng.random() * cum[t - 1], hi=t - 1)
                out.append(new[t - 1 - age])
        return out
