"""Conformance over every registered task family: verifiers, stable ids, seeds, limits, budgets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import curricula
from curricula import FAMILIES
from curricula.items import Item, key_terms_match

NAMES = FAMILIES.names()
FILE_BACKED = {"jsonl", "trivia", "trivia_counterfactual"}   # may hold Unicode and long questions
NO_PRETRAIN = {"jsonl", "trivia"}             # evaluation material, never pretraining data
PROCEDURAL = [n for n in NAMES if n not in FILE_BACKED]
BUDGET = 28    # prompt + answer characters at default difficulty: the tiny base has 64 positions

# A small configuration of each family and its exact number of distinct items.
SMALL: dict[str, tuple[dict, int]] = {
    "modular": ({"p": 3, "ops": "add,sqsum"}, 18),
    "addition": ({"digits": 1}, 100),
    "rpn": ({"depth": 1}, 300),
    "parens": ({"length": 2, "kinds": 1}, 4),
    "strings": ({"length": 2, "transforms": ["reverse"]}, 676),
    "facts": ({"entities": 2, "new_entities": 2, "relations": "color"}, 4),
    "jsonl": ({}, 40),
    "trivia": ({"categories": "film"}, 10),
    "trivia_counterfactual": ({"categories": ["film"], "contradict": 1.0, "known": False}, 10),
}
# One bad value per family, and the parameter name its error must mention.
BAD: dict[str, tuple[str, object]] = {
    "modular": ("p", 1), "addition": ("digits", 0), "rpn": ("depth", 9),
    "parens": ("length", 7), "strings": ("transforms", "upper"), "facts": ("contradict", 1.5),
    "jsonl": ("judge", "fuzzy"), "trivia": ("prior", "maybe"),
    "trivia_counterfactual": ("contradict", 1.5),
}


def make(name: str, **params: object) -> object:
    return FAMILIES.get(name)(**params)


def wrong_output(item: Item, others: list[Item]) -> str:
    """Another item's answer that this item's judge must reject."""
    for o in others:
        if o.answer.strip() != item.answer.strip() and \
                not (item.key_terms and key_terms_match(item.key_terms, o.answer)):
            return o.answer
    raise AssertionError("no differing answer in the draw")


def test_every_family_is_covered_by_the_tables() -> None:
    assert set(SMALL) == set(NAMES) and set(BAD) == set(NAMES)
    assert len(NAMES) >= 7


@pytest.mark.parametrize("name", NAMES)
def test_registry_metadata(name: str) -> None:
    cls = FAMILIES.get(name)
    assert cls.name == name
    assert cls.description == FAMILIES.entry(name).description


@pytest.mark.parametrize("name", NAMES)
def test_verifier_accepts_own_answers_and_rejects_wrong_ones(name: str) -> None:
    fam = make(name)
    items = fam.generate(30, seed=0)
    for it in items:
        assert it.family == name and 0.0 <= it.difficulty <= 1.0
        assert fam.verify(it, it.answer), it
        assert fam.verify(it, f"  {it.answer}\n"), it          # surrounding whitespace is no error
        assert not fam.verify(it, ""), it
        assert not fam.verify(it, wrong_output(it, items)), it


@pytest.mark.parametrize("name", NAMES)
def test_ids_distinct_and_stable_for_a_seed_and_differ_across_seeds(name: str) -> None:
    a = make(name).generate(25, seed=7)
    assert len({i.id for i in a}) == 25 and len({i.prompt for i in a}) == 25
    assert make(name).generate(25, seed=7) == a
    assert [i.id for i in make(name).generate(25, seed=8)] != [i.id for i in a]


@pytest.mark.parametrize("name", NAMES)
def test_generate_refuses_more_items_than_exist(name: str) -> None:
    params, size = SMALL[name]
    every = make(name, **params).generate(size, seed=1)
    assert len({i.id for i in every}) == size
    with pytest.raises(ValueError, match="distinct items"):
        make(name, **params).generate(size + 1, seed=1)


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameter_is_one_line_naming_it(name: str) -> None:
    param, value = BAD[name]
    with pytest.raises(ValueError) as exc:
        make(name, **{param: value})
    msg = str(exc.value)
    assert param in msg and "valid" in msg and "\n" not in msg


@pytest.mark.parametrize("name", NAMES)
def test_pretrain_items_are_verified_and_seeded(name: str) -> None:
    fam = make(name)
    pre = fam.pretrain_items(40, seed=3)
    if name in NO_PRETRAIN:
        assert pre == []       # evaluation material is never pretraining data
        return
    assert len(pre) == 40 and all(fam.verify(i, i.answer) for i in pre)
    assert fam.pretrain_items(40, seed=3) == pre
    assert fam.pretrain_items(40, seed=4) != pre


@pytest.mark.parametrize("name", PROCEDURAL)
def test_procedural_items_fit_the_budget_in_ascii(name: str) -> None:
    fam = make(name)
    for it in fam.generate(300, seed=0) + fam.pretrain_items(100, seed=0):
        assert (it.prompt + it.answer).isascii(), it
        assert len(it.prompt) + len(it.answer) <= BUDGET, it
        assert re.fullmatch(r"[a-z0-9_]+", it.id), it.id     # safe as an MLflow key
        assert it.category and it.exact


def test_ids_and_orders_are_the_same_in_a_fresh_process() -> None:
    """No hidden dependence on hash randomisation or process state."""
    code = (
        "import json, curricula\n"
        "from curricula import FAMILIES, STRATEGIES\n"
        "items = FAMILIES.get('modular')().generate(40, seed=5)\n"
        "out = {n: [i.id for i in FAMILIES.get(n)().generate(20, seed=5)] for n in FAMILIES.names()}\n"
        "out.update({'s_' + n: [i.id for i in STRATEGIES.get(n)().order(items, seed=9)]\n"
        "            for n in STRATEGIES.names()})\n"
        "print(json.dumps(out))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=root, check=True)
    there = json.loads(res.stdout)
    items = FAMILIES.get("modular")().generate(40, seed=5)
    here = {n: [i.id for i in FAMILIES.get(n)().generate(20, seed=5)] for n in NAMES}
    here.update({"s_" + n: [i.id for i in curricula.STRATEGIES.get(n)().order(items, seed=9)]
                 for n in curricula.STRATEGIES.names()})
    assert there == here
