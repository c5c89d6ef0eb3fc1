"""Task families (item generators with exact verifiers) and curriculum strategies (item → stream).

A leaf package: it imports neither `learners` nor `fitness`.
"""

from __future__ import annotations

from curricula.registry import FAMILIES, STRATEGIES

__all__ = ["FAMILIES", "STRATEGIES"]
