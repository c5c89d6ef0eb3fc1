"""`uniform` selection: parents drawn uniformly at random, fitness ignored (a control arm).

`evolve experiment selection` runs it in its exploratory `random-uniform` arm: the parents are
chosen without looking at fitness, but also without the fitness arm's tournament, which on random
values alone beats uniform parents; the experiment's `random` arm is that tournament on random
values. (Named `uniform`, not `random`, so it never shadows the module.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from evolve.operators.selection import Individual, _check_k, valid


def uniform(pop: Sequence[Individual], k: int, rng: random.Random) -> list[Individual]:
    """parents drawn uniformly at random, fitness ignored (control arm).

    k valid individuals drawn uniformly with replacement from `rng` (failed ones never)."""
    _check_k(k)
    ok = valid(pop)
    return [ok[rng.randrange(len(ok))] for _ in range(k)]
