"""Synthetic facts ``capital of zorbia?`` → ``vemlo``, some contradicting what the base model learnt.

The world (entity names, their true attributes, and one fixed counterfactual attribute each) is a
function of `world_seed` alone, never of the `seed` argument: the base model is pretrained once on
`pretrain_items` (the prior) and cached, so every run must meet the same priors. `generate` mixes
counterfactual items (a prior question with a different answer: the model starts confidently wrong)
and items about new entities that pretraining never showed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import ClassVar

from curricula.families._common import (
    check_float,
    check_int,
    check_subset,
    cycle,
    distinct_indices,
    rng_for,
)
from curricula.items import Item, exact_match
from curricula.registry import FAMILIES

_C, _V = "bcdfghjklmnprstvwz", "aeiou"
COLORS = ("red", "blue", "green", "gold", "gray", "pink", "teal", "black", "white", "brown",
          "amber", "cyan")


def _word(rng: random.Random, pattern: str) -> str:
    return "".join(rng.choice(_C if ch == "C" else _V) for ch in pattern)


def _vocab(purpose: str, pattern: str, size: int) -> tuple[str, ...]:
    """A fixed vocabulary of pseudo-words (the same for every world: only assignments differ)."""
    out: dict[str, None]
    rng, out = random.Random(f"facts:vocab:{purpose}"), {}
    while len(out) < size:
        out[_word(rng, pattern)] = None
    return tuple(out)


RELATIONS: dict[str, tuple[str, ...]] = {
    "capital": _vocab("capital", "CVCCV", 64),   # "vemlo"
    "color": COLORS,
    "ruler": _vocab("ruler", "CVCVC", 64),       # "tarek"
}


@FAMILIES.named
class Facts:
    """Category ``counterfactual`` (difficulty 0.8) or ``new`` (0.4)."""

    name: ClassVar[str]   # from curricula/registry.py (FAMILIES.named)
    description: ClassVar[str] = "synthetic entity facts: counterfactuals against the pretrained prior, and new ones"

    def __init__(self, world_seed: int = 0, entities: int = 200, new_entities: int = 200,
                 relations: Sequence[str] | str = tuple(RELATIONS), contradict: float = 0.5) -> None:
        self.world_seed = check_int(self.name, "world_seed", world_seed, 0, 2**31 - 1)
        self.n_entities = check_int(self.name, "entities", entities, 1, 5000)
        self.n_new = check_int(self.name, "new_entities", new_entities, 0, 5000)
        self.relations = check_subset(self.name, "relations", relations, tuple(RELATIONS))
        self.contradict = check_float(self.name, "contradict", contradict, 0.0, 1.0)
        # "CVCC" + "ia" gives 6-letter names like "zorbia": 18*5*18*18 = 29,160 possible names.
        names: dict[str, None] = {}
        for purpose, count in (("prior", self.n_entities), ("new", self.n_new)):
            rng, target = random.Random(f"facts:{purpose}:{self.world_seed}"), len(names) + count
            while len(names) < target:
                names.setdefault(_word(rng, "CVCC") + "ia", None)
        every = list(names)
        self.prior_entities, self.new_entities = every[:self.n_entities], every[self.n_entities:]

    def answers(self, entity: str, relation: str) -> tuple[str, str]:
        """(true prior answer, counterfactual answer) of one fact: fixed by world_seed, never equal."""
        vocab = RELATIONS[relation]
        rng = random.Random(f"facts:answer:{self.world_seed}:{entity}:{relation}")
        prior = rng.choice(vocab)
        return prior, rng.choice([v for v in vocab if v != prior])

    def _item(self, kind: str, entity: str, relation: str) -> Item:
        prior, counter = self.answers(entity, relation)
        category = {"prior": "prior", "cf": "counterfactual", "new": "new"}[kind]
        return Item(id=f"fact_{kind}_{entity}_{relation}", prompt=f"{relation} of {entity}?",
                    answer=counter if kind == "cf" else prior, family=self.name,
                    category=category, difficulty={"prior": 0.2, "cf": 0.8, "new": 0.4}[kind])

    def _pool(self, kind: str, entities: list[str], index: int) -> Item:
        e, r = divmod(index, len(self.relations))
        return self._item(kind, entities[e], self.relations[r])

    def generate(self, n: int, seed: int) -> list[Item]:
        """round(contradict * n) counterfactual items, the rest about new entities, shuffled."""
        rng = rng_for(self.name, "generate", seed)
        n_cf = round(self.contradict * n)
        R = len(self.relations)
        cf = distinct_indices(rng, n_cf, self.n_entities * R,
                              f"facts counterfactuals (entities {self.n_entities} x relations {R})")
        new = distinct_indices(rng, n - n_cf, self.n_new * R,
                               f"facts new (new_entities {self.n_new} x relations {R})")
        items = [self._pool("cf", self.prior_entities, i) for i in cf]
        items += [self._pool("new", self.new_entities, i) for i in new]
        rng.shuffle(items)
        return items

    def verify(self, item: Item, output: str) -> bool:
        return exact_match(item, output)

    def pretrain_items(self, n: int, seed: int) -> list[Item]:
        """The prior: true answers about the prior entities only (new entities stay unseen)."""
        return cycle(rng_for(self.name, "pretrain", seed), n, self.n_entities * len(self.relations),
                     lambda i: self._pool("prior", self.prior_entities, i), "facts prior")
