"""Combining signals: normalisation, direction, None handling, failed learners, Pareto fronts."""

from __future__ import annotations

import math

import pytest
from pytest import approx

from fitness import combine, pareto_ranks

TABLE = {"a": {"meta_learning_window": 0.3, "oscillation": 0.5},
         "b": {"meta_learning_window": 0.1, "oscillation": 0.1},
         "c": {"meta_learning_window": 0.2, "oscillation": 0.3}}


def test_rank_flips_lower_is_better_and_weights():
    fit = combine(TABLE, {"meta_learning_window": 1.0, "oscillation": 0.5})
    # meta ranks a 1, c .5, b 0; oscillation (lower better) b 1, c .5, a 0
    assert fit == approx({"a": 1.0, "b": 0.5, "c": 0.75})


def test_zscore():
    fit = combine(TABLE, {"meta_learning_window": 1.0}, normalise="zscore")
    z = 0.1 / math.sqrt(0.02 / 3)
    assert fit == approx({"a": z, "b": -z, "c": 0.0})


def test_none_gets_the_population_worst():
    table = {k: dict(v) for k, v in TABLE.items()}
    table["c"]["meta_learning_window"] = None
    fit = combine(table, {"meta_learning_window": 1.0})
    assert fit == approx({"a": 1.0, "b": 0.25, "c": 0.25})   # c ties with the worst, b


def test_half_life_never_reached_beats_every_finite_one():
    table = {"a": {"forgetting_half_life": 20.0}, "b": {"forgetting_half_life": None},
             "c": {"forgetting_half_life": 40.0}}
    for mode in ("rank", "zscore"):
        fit = combine(table, {"forgetting_half_life": 1.0}, normalise=mode)
        assert fit["b"] > fit["c"] > fit["a"]


def test_failed_learners_get_minus_infinity_and_do_not_shift_the_others():
    table = {**TABLE, "x": {"meta_learning_window": 1e9, "oscillation": -1.0}}
    fit = combine(table, {"meta_learning_window": 1.0, "oscillation": 0.5}, failed={"x"})
    assert fit["x"] == -math.inf
    assert {k: fit[k] for k in TABLE} == approx({"a": 1.0, "b": 0.5, "c": 0.75})
    assert max(fit, key=fit.get) != "x"


def test_names_outside_the_registry_default_to_higher_and_can_be_described():
    table = {"a": {"assess_half_life": 5.0}, "b": {"assess_half_life": None}}
    assert combine(table, {"assess_half_life": 1.0}) == approx({"a": 0.5, "b": 0.5})
    fit = combine(table, {"assess_half_life": 1.0}, meta={"assess_half_life": (True, "best")})
    assert fit["b"] > fit["a"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="finite"):
        combine(TABLE, {"oscillation": math.nan})
    with pytest.raises(ValueError, match="rank, zscore"):
        combine(TABLE, {"oscillation": 1.0}, normalise="minmax")
    assert combine({}, {"oscillation": 1.0}) == {}
    assert combine({"a": {}}, {"oscillation": 1.0}) == {"a": 0.0}


def test_pareto_fronts_and_crowding():
    table = {**TABLE, "d": {"meta_learning_window": 0.05, "oscillation": 0.6},
             "x": {"meta_learning_window": 9.0, "oscillation": 0.0}}
    ranks = pareto_ranks(table, ["meta_learning_window", "oscillation"], failed={"x"})
    assert "x" not in ranks
    assert {k: f for k, (f, _) in ranks.items()} == {"a": 0, "b": 0, "c": 0, "d": 1}
    assert math.isinf(ranks["a"][1]) and math.isinf(ranks["b"][1])
    assert 0 < ranks["c"][1] < math.inf
