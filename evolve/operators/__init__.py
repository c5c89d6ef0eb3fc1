"""Selection and variation operators (DEAP-backed where DEAP has them)."""

from __future__ import annotations

from typing import Any

from evolve.registry import Registry

SELECTION: Registry[Any] = Registry("selection operator")
VARIATION: Registry[Any] = Registry("variation operator")

__all__ = ["SELECTION", "VARIATION"]
