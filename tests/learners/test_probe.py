"""The one-pass teacher-forced probe gives the same verdicts as greedy generate()."""

from __future__ import annotations

import numpy as np
import pytest

from learners.population import LearnerSpec, Population

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRAIN = [("1+1=", "2"), ("2+3=", "5"), ("4+4=", "8"), ("12+30=", "42"), ("7+8=", "15"),
         ("50+9=", "59")]
UNSEEN = [("3+3=", "6"), ("20+21=", "41"), ("9+9=", "18"), ("6+1=", "7"), ("70+7=", "77")]


@pytest.fixture(scope="module")
def trained(tiny_base) -> Population:
    """Two learners part-way through memorising TRAIN (some items right, some wrong)."""
    from learners.base import load_base

    model, tok = load_base(tiny_base)
    specs = [LearnerSpec(lr=3e-2, weight_decay=0.0, rank=8, alpha=16.0, dropout=0.0, seed=s)
             for s in (1, 2)]
    pop = Population(model.float(), tok, specs, target_modules=ALL_LINEAR)
    for t in range(60):
        pop.train_step([TRAIN, TRAIN[t % 3:t % 3 + 3]])
        if t >= 20 and 0 < pop.probe(TRAIN).correct.sum() < 2 * len(TRAIN):
            break
    return pop


def test_teacher_forced_verdicts_equal_generate(trained: Population) -> None:
    items = TRAIN + UNSEEN
    fast = trained.probe(items)
    slow = trained.probe_generate(items)
    assert fast.correct.shape == (2, len(items))
    assert fast.correct.any() and not fast.correct.all(), "need a mix of right and wrong answers"
    np.testing.assert_array_equal(fast.correct, slow.correct)
    # where greedy decoding is right, the probabilities and margins agree too
    np.testing.assert_allclose(fast.prob[slow.correct], slow.prob[slow.correct], rtol=1e-4)
    np.testing.assert_allclose(fast.margin[slow.correct], slow.margin[slow.correct],
                               rtol=1e-4, atol=1e-5)
    assert (fast.margin[fast.correct] > 0).all() and (fast.margin[~fast.correct] <= 0).all()
    assert ((fast.prob > 0) & (fast.prob <= 1)).all()


def test_probe_chunks_do_not_change_results(trained: Population,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from learners import probe

    items = TRAIN + UNSEEN
    whole = trained.probe(items)
    budget = trained.probe_chunk
    trained.probe_chunk = 1  # one item per chunk (no floor of rows per chunk)
    monkeypatch.setattr(probe, "MIN_ROWS_SCORED", 0)
    try:
        one = trained.probe(items)
    finally:
        trained.probe_chunk = budget
    np.testing.assert_array_equal(whole.correct, one.correct)
    np.testing.assert_allclose(whole.prob, one.prob, rtol=1e-5)


def test_self_confidence_is_the_probability_of_the_models_own_answer(trained: Population) -> None:
    """self_prob is the greedy answer's probability: the true answer's where greedy is right, above
    it where wrong (so it can exceed accuracy); the first-token margin agrees with generate()."""
    items = TRAIN + UNSEEN
    fast = trained.probe(items)
    slow = trained.probe_generate(items)
    right, wrong = fast.correct, ~fast.correct
    assert right.any() and wrong.any()
    for res in (fast, slow):
        np.testing.assert_allclose(res.self_prob[right], fast.prob[right], rtol=1e-4)
        assert ((res.self_prob > 0) & (res.self_prob <= 1 + 1e-6)).all()
        assert (res.self_margin >= 0).all()
    assert (fast.self_prob[wrong] > fast.prob[wrong]).all()
    # the first answer token sees the same prompt in both probes: same top-two gap
    np.testing.assert_allclose(fast.self_margin, slow.self_margin, rtol=1e-4, atol=1e-5)
    # on a right answer the first-token margin is at least the answer's (min over tokens) margin
    assert (fast.self_margin[right] >= fast.margin[right] - 1e-5).all()
