"""Conformance over every curriculum strategy, and what each one promises about its order."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from common.ranges import ParamRange
from curricula import FAMILIES, STRATEGIES
from curricula.items import Item

NAMES = STRATEGIES.names()


@pytest.fixture(scope="module")
def pool() -> list[Item]:
    """60 modular items: 7 categories, difficulties tied within each op (ties test the seed)."""
    return FAMILIES.get("modular")().generate(60, seed=0)


def make(name: str, **params: object) -> object:
    return STRATEGIES.get(name)(**params)


def test_at_least_the_six_strategies() -> None:
    assert {"random", "easy_first", "hard_first", "interleaved", "rehearsal", "adversarial"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_metadata_and_mutable_ranges(name: str) -> None:
    cls = STRATEGIES.get(name)
    assert cls.name == name and cls.description == STRATEGIES.entry(name).description
    assert isinstance(cls.mutable, dict)
    for param, r in cls.mutable.items():
        assert isinstance(r, ParamRange)
        for v in ((r.low, r.high) if r.kind != "choice" else r.choices):
            cls(**{param: int(v) if r.kind == "int" else v})      # both ends are accepted
        if r.kind != "choice":
            with pytest.raises(ValueError, match=param):
                cls(**{param: r.high + 1})


@pytest.mark.parametrize("name", NAMES)
def test_yields_every_item_once_per_pass_unless_it_rehearses(name: str, pool: list[Item]) -> None:
    before = list(pool)
    out = make(name).order(pool, seed=3)
    assert pool == before                                   # the input is not reordered in place
    counts = Counter(i.id for i in out)
    assert set(counts) == {i.id for i in pool}
    if getattr(STRATEGIES.get(name), "rehearses", False):
        assert len(out) > len(pool)
        first = {}
        for k, it in enumerate(out):
            first.setdefault(it.id, k)
            if first[it.id] < k:                            # a repeat: an item already presented,
                assert out[k - 1].id != it.id               # never the one just presented
    else:
        assert len(out) == len(pool) and max(counts.values()) == 1


@pytest.mark.parametrize("name", NAMES)
def test_seeded_and_distinct_across_seeds(name: str, pool: list[Item]) -> None:
    state = random.getstate()
    a = [i.id for i in make(name).order(pool, seed=11)]
    assert random.getstate() == state                       # never the global RNG
    assert [i.id for i in make(name).order(pool, seed=11)] == a
    assert [i.id for i in make(name).order(pool, seed=12)] != a


@pytest.mark.parametrize("name", NAMES)
def test_empty_and_single_item_pools(name: str, pool: list[Item]) -> None:
    assert make(name).order([], seed=0) == []
    assert make(name).order(pool[:1], seed=0) == pool[:1]


def test_easy_and_hard_first_sort_by_difficulty(pool: list[Item]) -> None:
    easy = [i.difficulty for i in make("easy_first").order(pool, seed=0)]
    hard = [i.difficulty for i in make("hard_first").order(pool, seed=0)]
    assert easy == sorted(easy) and hard == sorted(hard, reverse=True)
    assert easy[0] < easy[-1]


def test_interleaved_rotates_categories(pool: list[Item]) -> None:
    out = make("interleaved").order(pool, seed=0)
    cats = sorted({i.category for i in pool})
    first_round = [i.category for i in out[:len(cats)]]
    assert sorted(first_round) == cats                      # one of each before any repeats
    blocks = make("interleaved", block=2).order(pool, seed=0)
    assert blocks[0].category == blocks[1].category != blocks[2].category


def test_rehearsal_ratio_and_power_law_recency(pool: list[Item]) -> None:
    big = FAMILIES.get("addition")().generate(600, seed=0)
    assert len(make("rehearsal", ratio=0.0).order(big, seed=0)) == 600

    def replay_ages(exponent: float) -> list[int]:
        out = make("rehearsal", ratio=0.5, exponent=exponent).order(big, seed=1)
        new_index: dict[str, int] = {}
        ages = []
        for it in out:
            if it.id in new_index:
                ages.append(len(new_index) - 1 - new_index[it.id] - 1)   # 0 = the one before
            else:
                new_index[it.id] = len(new_index)
        return ages

    steep, flat = replay_ages(3.0), replay_ages(0.5)
    assert 240 <= len(steep) <= 360                          # Binomial(599, 0.5): ±6 sigma
    assert min(steep) >= 0
    assert Counter(steep)[0] / len(steep) > 0.7              # 1 / zeta(3) = 0.83 of replays at age 0
    assert sum(flat) / len(flat) > 5 * sum(steep) / len(steep)


def test_adversarial_puts_confidently_wrong_first(pool: list[Item]) -> None:
    items = pool[:10]
    probe = {items[0].id: (True, 0.99), items[1].id: (False, 0.30), items[2].id: (False, 0.95),
             items[3].id: (True, 0.10), items[4].id: (False, 0.60)}
    for seed in (0, 1, 2):
        out = make("adversarial").order(items, seed=seed, probe=probe)
        assert [i.id for i in out[:5]] == [items[k].id for k in (2, 4, 1, 0, 3)]
        assert {i.id for i in out[5:]} == {i.id for i in items[5:]}     # unprobed items last
