"""Task families (item generators with exact verifiers) and curriculum strategies (item → stream).

A leaf package: it imports neither `learners`, `fitness` nor `evolve`. `FAMILIES` / `STRATEGIES`
list every family and strategy; each module loads on its first lookup (see docs/curricula.md).
"""

from __future__ import annotations

from curricula.items import Item, normalise_text, split_holdout
from curricula.registry import FAMILIES, STRATEGIES

__all__ = ["FAMILIES", "STRATEGIES", "Item", "normalise_text", "split_holdout"]
