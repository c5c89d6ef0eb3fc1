"""Task families (item generators with exact verifiers) and curriculum strategies (item → stream).

A leaf package: it imports neither `learners` nor `fitness`. Importing it registers every family
and strategy on `FAMILIES` / `STRATEGIES` (see docs/curricula.md).
"""

from __future__ import annotations

from curricula import families, strategies  # noqa: F401  (registers everything)
from curricula.items import Item, ParamRange, normalise_text, split_holdout
from curricula.registry import FAMILIES, STRATEGIES

__all__ = ["FAMILIES", "STRATEGIES", "Item", "ParamRange", "normalise_text", "split_holdout"]
