"""The selection and variation operator registries: one line per operator, loaded on first lookup.

An operator's description is the first line of its docstring (shown by `evolve ls`).
"""

from __future__ import annotations

from typing import Any

from common.registry import Registry

SELECTION: Registry[Any] = Registry("selection operator", {
    "elitism": "evolve.operators.selection:elitism",
    "lexicase": "evolve.operators.selection:lexicase",
    "nsga2": "evolve.operators.selection:nsga2",
    "tournament": "evolve.operators.selection:tournament",
    "truncation": "evolve.operators.selection:truncation",
    "uniform": "evolve.operators.random_select:uniform",
})
VARIATION: Registry[Any] = Registry("variation operator", {
    "crossover": "evolve.operators.variation:crossover",
    "explore": "evolve.operators.variation:explore",
    "merge": "evolve.operators.variation:merge",
    "noise": "evolve.operators.variation:noise",
    "reseed": "evolve.operators.variation:reseed",
})
