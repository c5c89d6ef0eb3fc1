"""Spectral analysis with the real weightwatcher: alphas, reliability, traps, update cosines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pytest import approx

from fitness.spectral import TRAP_RATIO, band_distance, spectral, trap_ratio, update_cosines


def _gauss(out: int, inp: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((out, inp))).float() * 0.1


def test_layers_are_fit_and_small_ones_flagged_unreliable(capfd):
    res = spectral({"model.layers.0.q_proj": _gauss(64, 64, 0),
                    "model.layers.0.v_proj": _gauss(4, 32, 1)})
    q, v = res["layers"]["model.layers.0.q_proj"], res["layers"]["model.layers.0.v_proj"]
    assert q["num_evals"] == 64 and q["reliable"] and math.isfinite(q["alpha"])
    assert 0 < q["num_pl_spikes"] <= 64
    assert v["num_evals"] == 4 and not v["reliable"]          # weightwatcher's minimum is 8
    assert any("v_proj: unreliable fit, 4 eigenvalues" in w for w in res["warnings"])
    assert res["mean_alpha"] == approx(q["alpha"]) and res["mean_alpha_reliable"]
    assert res["alpha_distance"] == approx(band_distance(q["alpha"]))
    assert res["seconds"] > 0 and res["update_cosine"] is None
    out, err = capfd.readouterr()
    assert "SMALL N" not in out + err and "PL FIT" not in out + err   # weightwatcher silenced


def test_band_distance():
    assert band_distance(3.0) == 0.0 and band_distance(1.5) == 0.5
    assert band_distance(7.0) == 1.0 and band_distance(None) is None


def test_correlation_trap_is_found_and_gaussian_is_clean():
    w = _gauss(48, 48, 2)
    assert trap_ratio(w.numpy()) < TRAP_RATIO
    w[3, 5] = 20.0   # one huge entry survives any permutation: a rank-one spike
    res = spectral({"fc": w})
    assert res["layers"]["fc"]["trap"] and res["n_traps"] == 1
    assert any("correlation trap" in x for x in res["warnings"])


def test_update_cosines_by_hand():
    e1 = torch.zeros(2, 2)
    e1[0, 0] = 1
    e2 = torch.zeros(2, 2)
    e2[1, 1] = 1
    deltas = [{"q": torch.zeros(2, 2)}, {"q": e1}, {"q": e1 + e2}, {"q": e1 + 2 * e2}]
    # updates: e1, e2, e2 -> cos(e1, e2) = 0, cos(e2, e2) = 1
    cos = update_cosines(deltas)
    assert cos["series"] == approx([0.0, 1.0]) and cos["per_layer"]["q"] == approx([0.0, 1.0])
    assert cos["mean_abs"] == approx(0.5)
    assert update_cosines(deltas[:2]) is None
    back = update_cosines([{"q": e1 * 0}, {"q": e1}, {"q": e1 * 0}])   # an update undone
    assert back["series"] == approx([-1.0]) and back["mean_abs"] == approx(1.0)


def test_bad_shape_is_a_one_line_error():
    with pytest.raises(ValueError, match=r"\[out, in\]"):
        spectral({"x": torch.zeros(3, 3, 3)})


def test_on_a_real_base_merged_with_a_delta(tiny_base):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    merged = {n: p.detach() + 0.01 * _gauss(*p.shape, seed=j)
              for j, (n, p) in enumerate(model.named_parameters())
              if n.endswith(("q_proj.weight", "v_proj.weight"))}
    assert merged
    res = spectral(merged, [{n: 0.01 * k * _gauss(*w.shape, seed=k) for n, w in merged.items()}
                            for k in range(3)])
    assert set(res["layers"]) == set(merged)
    for row in res["layers"].values():
        assert row["num_evals"] == min(row["shape"])
        assert row["alpha"] is None or math.isfinite(row["alpha"])
    assert res["update_cosine"] is not None and len(res["update_cosine"]["series"]) == 1


def test_quiet_on_two_threads_restores_stdout_whatever_the_exit_order() -> None:
    """Two learner groups analysed on threads: A enters, B enters, A leaves, B leaves. Nested
    redirect_stdout's left sys.stdout a StringIO here, and `evolve run` printed nothing after."""
    import sys
    import threading

    from fitness.spectral import _quiet

    out, err = sys.stdout, sys.stderr
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with _quiet():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with _quiet():
            b_in.set()
            a_out.wait(10)

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert a_out.is_set() and b_in.is_set()
    assert sys.stdout is out and sys.stderr is err
