"""Genome round trips (MLflow params, LearnerSpec), the gene space's validation and sampling."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import pytest

from common.errors import EvolveError
from common.ranges import ParamRange, round_sig
from common.registry import Entry
from curricula.registry import STRATEGIES
from evolve.genome import GeneSpace, Genome, fmt_value, sample_genome


def make_strategy(name: str, mutable: dict[str, Any]) -> type:
    class S:
        description: ClassVar[str] = "test strategy"

    S.name, S.mutable = name, mutable  # type: ignore[attr-defined]
    return S


@pytest.fixture
def strategies(monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    """Three test strategies with every ParamRange kind, registered only for this test."""
    specs = {
        "t_plain": {},
        "t_mixed": {"ratio": ParamRange(0.1, 0.9, "float"), "temp": ParamRange(1e-3, 1.0, "log"),
                    "window": ParamRange(1, 5, "int"), "mode": ParamRange(kind="choice", choices=("a", "b", "c"))},
        "t_power": {"exponent": ParamRange(0.5, 3.0, "float")},
    }
    for name, mutable in specs.items():
        monkeypatch.setitem(STRATEGIES._entries, name,
                            Entry(name, "test strategy", make_strategy(name, mutable)))
    return tuple(specs)


@pytest.fixture
def space(strategies: tuple[str, ...]) -> GeneSpace:
    return GeneSpace(curricula=strategies, target_modules=(("q_proj", "v_proj"),
                                                           ("q_proj", "k_proj", "v_proj", "o_proj")))


def mixed_genome() -> Genome:
    return Genome(lr=2.4e-4, rank=8, alpha=16.0, target_modules=("q_proj", "k_proj", "v_proj"),
                  weight_decay=0.01, dropout=0.05, curriculum="t_mixed",
                  curriculum_params={"ratio": 0.5, "temp": 3e-3, "window": 3, "mode": "b"},
                  rehearsal_ratio=0.2, steps_per_item=2, seed=812)


def test_params_are_flat_and_round_trip(strategies: tuple[str, ...]) -> None:
    g = mixed_genome()
    params = g.to_params()
    assert params["target_modules"] == "q_proj,k_proj,v_proj"
    assert params["curriculum_params.window"] == 3
    assert all(isinstance(v, (str, int, float)) for v in params.values())
    assert Genome.from_params(params) == g
    # MLflow gives every param back as a string: types come back from the gene / ParamRange kind
    back = Genome.from_params({k: str(v) for k, v in params.items()})
    assert back == g
    assert isinstance(back.curriculum_params["window"], int)
    assert isinstance(back.curriculum_params["ratio"], float)


def test_from_params_rejects_unknown_gene() -> None:
    with pytest.raises(EvolveError, match="unknown genome param 'lrr'; valid: lr, rank"):
        Genome.from_params({"lrr": 1e-3})


def test_to_spec_carries_the_learner_fields() -> None:
    population = pytest.importorskip("learners.population")
    g = mixed_genome()
    spec = g.to_spec()
    assert isinstance(spec, population.LearnerSpec)
    assert (spec.lr, spec.weight_decay, spec.rank, spec.alpha, spec.dropout, spec.seed) == (
        g.lr, g.weight_decay, g.rank, g.alpha, g.dropout, g.seed)
    assert tuple(spec.target_modules) == g.target_modules


def test_sampled_genomes_lie_in_the_space_and_are_seeded(space: GeneSpace) -> None:
    genomes = [sample_genome(space, random.Random(s)) for s in range(200)]
    assert all(space.contains(g) for g in genomes)
    assert {g.curriculum for g in genomes} == set(space.curricula)
    assert {g.rank for g in genomes} == set(space.rank)
    for g in genomes:   # every mutable parameter of the chosen strategy is set, and nothing else
        assert set(g.curriculum_params) == set(STRATEGIES.get(g.curriculum).mutable)
    assert sample_genome(space, random.Random(7)) == sample_genome(space, random.Random(7))
    assert sample_genome(space, random.Random(7)) != sample_genome(space, random.Random(8))


def test_space_rejects_unknown_curriculum_in_one_line(strategies: tuple[str, ...]) -> None:
    with pytest.raises(EvolveError) as e:
        GeneSpace(curricula=("t_plain", "nope"))
    msg = str(e.value)
    assert "\n" not in msg and "unknown curriculum strategy nope" in msg
    assert all(s in msg for s in strategies)


@pytest.mark.parametrize("bad, match", [
    ({"lr": [0.0, 1e-3]}, "lr"), ({"lr": [1e-2, 1e-3]}, "lr"), ({"rank": [4, 2]}, "rank"),
    ({"dropout": [0.0, 1.5]}, "dropout"), ({"steps_per_item": [0, 2]}, "steps_per_item"),
    ({"fixed": ["colour"]}, "colour"), ({"colour": [1, 2]}, "unknown gene space key 'colour'"),
])
def test_space_validation_names_the_problem(strategies: tuple[str, ...], bad: dict[str, Any],
                                            match: str) -> None:
    with pytest.raises(EvolveError, match=match):
        GeneSpace.from_dict({"curricula": list(strategies), **bad})


def test_space_from_yaml_lists(strategies: tuple[str, ...]) -> None:
    s = GeneSpace.from_dict({"lr": [1e-4, 1e-2], "rank": [2, 4], "curricula": ["t_plain"],
                             "target_modules": [["q_proj", "v_proj"], "q_proj,k_proj"]})
    assert s.lr == (1e-4, 1e-2) and s.rank == (2, 4)
    assert s.target_modules == (("q_proj", "v_proj"), ("q_proj", "k_proj"))


def test_genome_validation() -> None:
    with pytest.raises(EvolveError, match="lr"):
        Genome(lr=0.0)
    with pytest.raises(EvolveError, match="rank"):
        Genome(rank=0)


def test_values_print_exactly() -> None:
    rng = random.Random(0)
    for _ in range(2000):
        x = round_sig(10 ** rng.uniform(-8, 6))
        assert float(fmt_value(x)) == x
    assert fmt_value(3e-4) == "3e-4" and fmt_value(round_sig(3e-4 * 0.8)) == "2.4e-4"
    assert fmt_value(0.05) == "0.05" and fmt_value(8) == "8"
