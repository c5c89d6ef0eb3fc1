"""Selection and variation operators (DEAP-backed where DEAP has them).

`SELECTION` / `VARIATION` (in `evolve.operators.registry`) list every operator; each module loads on
its operator's first lookup. DEAP's global `random` is seeded only by `selection.seed_deap`.
"""

from __future__ import annotations

from evolve.operators.decisions import MergePlan, adapter_plan, apply_decisions
from evolve.operators.registry import SELECTION, VARIATION
from evolve.operators.selection import Individual, elitism, seed_deap, select
from evolve.operators.variation import Child, Parent, vary

__all__ = ["SELECTION", "VARIATION", "Child", "Individual", "MergePlan", "Parent", "adapter_plan",
           "apply_decisions", "elitism", "seed_deap", "select", "vary"]
