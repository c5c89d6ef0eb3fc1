"""What selection ranks (`selection.basis`): the arms of the selection experiment, usable in any run.

- `fitness` (default): the learners' fitness, as scored.
- `shuffled`: each non-failed learner gets another non-failed learner's fitness (and its signals,
  Pareto front and per-task cases), a seeded permutation within the generation. The selection
  operator, the elitism and the distribution of values are exactly those of `fitness`; only the
  link between a learner and its value is cut: a negative control whose answer is known to be no.
- `random`: each non-failed learner gets a fresh uniform random value (the elites are then random
  learners too): with the fitness arm's operator and elitism this is the experiment's `random` arm
  (with `selection.operator=uniform`, its exploratory `random-uniform` arm).
- `outcome`: the learner's own `assess_gain` (the outcome the experiment judges, measured on forks
  that are thrown away): the oracle, the most selection on this population can buy. It needs the
  assessment every generation (`assess.every=1`).

The values recorded for each learner (its fitness, in MLflow and the resume state) never change;
only the list handed to the selection operator does. `random` and `outcome` set the scalar only, so
they refuse operators that read signals, fronts or cases (nsga2, lexicase).
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence
from typing import Any

BASES = ("fitness", "shuffled", "random", "outcome")
OUTCOME = "assess_gain"
SCALAR_ONLY = ("random", "outcome")
NON_SCALAR_OPERATORS = ("nsga2", "lexicase")


def check(on: str, operator: str) -> str | None:
    """A one-line problem with `selection.basis` and `selection.operator` together, or None."""
    if on in SCALAR_ONLY and operator in NON_SCALAR_OPERATORS:
        return (f"selection.basis={on} sets a scalar value, which selection.operator={operator} does "
                "not read; use tournament, truncation or uniform with it")
    return None


def basis(on: str, pop: Sequence[Any], rng: random.Random) -> list[Any]:
    """The individuals (`evolve.operators.selection.Individual`) selection sees under `on`.

    Failed learners stay failed (fitness -inf) in every basis; `rng` draws the permutation or the
    random values (seed it per generation so a resumed run selects as the uninterrupted one)."""
    if on == "fitness":
        return list(pop)
    ok = [i for i, p in enumerate(pop) if not p.failed]
    out = list(pop)
    if on == "shuffled":
        perm = list(ok)
        rng.shuffle(perm)
        for i, j in zip(ok, perm, strict=True):
            src = pop[j]
            out[i] = dataclasses.replace(pop[i], fitness=src.fitness, signals=dict(src.signals),
                                         front=src.front, crowding=src.crowding,
                                         cases=dict(src.cases))
    elif on == "random":
        for i in ok:
            out[i] = dataclasses.replace(pop[i], fitness=rng.random())
    elif on == "outcome":
        for i in ok:
            v = pop[i].signals.get(OUTCOME)
            good = v is not None and math.isfinite(v)
            out[i] = dataclasses.replace(pop[i], fitness=float(v) if good else -math.inf)
    else:
        raise ValueError(f"unknown selection basis {on!r}; valid: {', '.join(BASES)}")
    return out
