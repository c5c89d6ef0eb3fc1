"""The two registries of this package: task families and curriculum strategies."""

from __future__ import annotations

from typing import Any

from evolve.registry import Registry

FAMILIES: Registry[Any] = Registry("task family")
STRATEGIES: Registry[Any] = Registry("curriculum strategy")
