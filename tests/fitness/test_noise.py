"""Noise figures: Wilson intervals, the item bootstrap, repeat variance, spread vs noise."""

from __future__ import annotations

import pytest
from pytest import approx

from fitness import compute_signals
from fitness.noise import bootstrap_meta, repeat_variance, spread, wilson


def test_wilson_known_values():
    assert wilson(0, 10) == approx((0.0, 0.27753), abs=1e-5)
    lo, hi = wilson(47, 80)
    assert lo == approx(0.47804, abs=1e-5) and hi == approx(0.68894, abs=1e-5)
    assert wilson(0, 0) == (0.0, 1.0)


def test_bootstrap_is_seeded_and_brackets_the_estimate(make_traj):
    rows = {f"i{j}": r for j, r in enumerate(
        ["100", "110", "010", "011", ".01", ".11", ".10", "..1", "..0", "..1"])}
    t = make_traj(rows, baseline={"i1": True, "i5": True})
    est = compute_signals(t, ["meta_learning_window"])["meta_learning_window"].value
    a = bootstrap_meta(t, "window", n_boot=500, seed=3)
    assert a == bootstrap_meta(t, "window", n_boot=500, seed=3)
    assert a != bootstrap_meta(t, "window", n_boot=500, seed=4)
    assert a["lo"] <= est <= a["hi"] and a["std"] > 0
    assert bootstrap_meta(make_traj({"a": "01"}), "window") is None
    with pytest.raises(ValueError, match="window, cumulative"):
        bootstrap_meta(t, "windowed")


def test_bootstrap_of_a_deterministic_learner_has_no_spread(make_traj):
    # every item of every window behaves the same: resampling items changes nothing
    t = make_traj({"a": "111", "b": "111", "c": ".11", "d": ".11", "e": "..1", "f": "..1"})
    b = bootstrap_meta(t, "cumulative", n_boot=50)
    assert b["lo"] == b["hi"] == approx(0.0) and b["std"] == approx(0.0)


def test_spread_within_and_beyond_noise():
    iv = {"a": (0.0, 0.4), "b": (0.1, 0.5), "c": (0.05, 0.45)}
    s = spread({"a": 0.2, "b": 0.3, "c": 0.25}, iv)
    assert s["spread"] == approx(0.1) and s["noise"] == approx(2 ** 0.5 * 0.2)
    assert s["within_noise"] is True
    far = spread({"a": 0.2, "b": 0.9}, {"a": (0.19, 0.21), "b": (0.89, 0.91)})
    assert far["within_noise"] is False
    assert spread({"a": 0.2, "b": None}, iv)["within_noise"] is None


def test_repeat_variance():
    noisy = repeat_variance({"a": [0.1, 0.3, 0.2], "b": [0.25, 0.05, 0.15]})
    assert noisy["within"] == approx(0.01) and noisy["across"] == approx(0.00125)
    assert noisy["ratio"] == approx(8.0) and noisy["within_noise"] is True
    real = repeat_variance({"a": [0.10, 0.11, 0.09], "b": [0.50, 0.52, 0.51]})
    assert real["within_noise"] is False and real["p"] < 1e-4
    with pytest.raises(ValueError, match="repeats"):
        repeat_variance({"a": [0.1], "b": [0.2]})
