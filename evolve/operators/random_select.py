"""`uniform` selection: parents drawn uniformly at random, fitness ignored (a control arm).

`evolve experiment selection` runs it as the random-selection control: the same variation and
inheritance as the fitness arm, but the parents are chosen without looking at fitness, so any gain
over it is the work of selection. (Named `uniform`, not `random`, so it never shadows the module.)
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
