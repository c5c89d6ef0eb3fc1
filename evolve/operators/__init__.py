"""Selection and variation operators (DEAP-backed where DEAP has them).

Importing this package registers every operator: `selection` on SELECTION, `variation` on
VARIATION. DEAP's global `random` is seeded only by `selection.seed_deap`.
"""

from __future__ import annotations

from typing import Any

from evolve.registry import Registry

SELECTION: Registry[Any] = Registry("selection operator")
VARIATION: Registry[Any] = Registry("variation operator")

from evolve.operators import random_select, selection, variation  # noqa: E402,F401  (registers the operators)
from evolve.operators.decisions import MergePlan, adapter_plan, apply_decisions  # noqa: E402
from evolve.operators.selection import Individual, elitism, seed_deap, select  # noqa: E402
from evolve.operators.variation import Child, Parent, vary  # noqa: E402

__all__ = ["SELECTION", "VARIATION", "Child", "Individual", "MergePlan", "Parent", "adapter_plan",
           "apply_decisions", "elitism", "seed_deap", "select", "selection", "variation", "vary"]
