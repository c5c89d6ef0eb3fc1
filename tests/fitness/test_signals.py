"""Every signal on small trajectories whose values were computed by hand."""

from __future__ import annotations

import pytest
from pytest import approx

from fitness import compute_signals
from fitness.signals import detect_grokking, kaplan_meier, lives, plateau_index
from fitness.trajectory import cumulative_rates, item_states, window_rates


def sig(traj, name):
    return compute_signals(traj, [name])[name]


@pytest.fixture
def three(make_traj):
    """3 checkpoints, windows {a, b}, {c}, {d, e}; b and e right before training."""
    return make_traj({"a": "110", "b": "100", "c": ".01", "d": "..1", "e": "..1"},
                     baseline={"b": True, "e": True})


def test_item_states_compare_with_the_baseline(three):
    assert item_states(three, 2) == {"a": "stuck", "b": "regressed", "c": "improved",
                                     "d": "improved", "e": "retained"}
    assert item_states(three, 0) == {"a": "improved", "b": "retained"}


def test_cumulative_and_window_rates_by_hand(three):
    # k1: a improved (wrong before training, right now), b regressed, c stuck -> 1/2, 1
    # k2: a stuck, c d improved -> 2/3; b regressed, e retained -> 1/2
    flat = [x for pair in cumulative_rates(three) for x in pair]
    assert flat == approx([1.0, 0.0, 0.5, 1.0, 2 / 3, 0.5])
    # window 1 = {c}: stuck at k1, and no item right at baseline: its forgetting rate is
    # undefined (None), not 0; window 2 = {d, e}: improved + retained
    flat = [x for pair in window_rates(three) for x in pair]
    assert flat[3] is None
    assert flat[:3] + flat[4:] == approx([1.0, 0.0, 0.0, 1.0, 0.0])


def test_meta_learning_window_differs_from_cumulative(three):
    # third = 1: early = k0, late = k2
    assert sig(three, "meta_learning_cumulative").value == approx((2 / 3 - 1) + (0 - 0.5))
    assert sig(three, "meta_learning_window").value == approx(0.0)


def test_meta_learning_is_null_with_a_reason_under_three_checkpoints(make_traj):
    v = sig(make_traj({"a": "01"}), "meta_learning_window")
    assert v.value is None and "3 checkpoints" in v.reason


@pytest.fixture
def lives_traj(make_traj):
    return make_traj({"x": "1101", "y": "1000", "z": "0111", "w": "1111", "v": "..01"})


def test_lives_end_at_an_event_or_are_censored(lives_traj):
    assert sorted(lives(lives_traj)) == [(0, False), (0, False), (10, True), (20, False),
                                         (20, True), (30, False)]


def test_half_life_kaplan_meier_by_hand(lives_traj):
    # t=10: at risk = durations >= 10: 10E, 20E, 20C, 30C -> 4, one event: S = 3/4
    # t=20: 20E, 20C, 30C (censored at 20 is still at risk), S = 3/4 * 2/3 = 1/2 -> half-life
    curve = kaplan_meier(lives(lives_traj))
    assert [t for t, _ in curve] == [10, 20] and [s for _, s in curve] == approx([0.75, 0.5])
    v = sig(lives_traj, "forgetting_half_life")
    assert v.value == 20 and v.extra["events"] == 2 and v.extra["censored"] == 4
    assert sig(lives_traj, "survival_at_end").value == approx(0.5)


def test_half_life_never_reached_is_null_and_marked_best(make_traj):
    # lives: a 30 censored, b 20 event, c 20 censored -> t=20: 3 at risk, S = 2/3, never <= 0.5
    t = make_traj({"a": "1111", "b": "1100", "c": "0111"})
    v = sig(t, "forgetting_half_life")
    assert v.value is None and v.extra["never_reached"] and "never" in v.reason
    assert sig(t, "survival_at_end").value == approx(2 / 3)


def test_half_life_is_zero_when_nothing_was_ever_right(make_traj):
    v = sig(make_traj({"a": "000", "b": "000"}), "forgetting_half_life")
    assert v.value == 0.0 and not v.extra["never_reached"]


def test_oscillation_counts_transitions_over_probed_pairs(lives_traj):
    v = sig(lives_traj, "oscillation")
    assert v.extra["transitions"] == {"x": 2, "y": 1, "z": 1, "w": 0, "v": 1}
    assert v.extra["pairs"] == 3 * 4 + 1
    assert v.value == approx(5 / 13)


def test_stuck_means_wrong_at_baseline_and_never_right_since(make_traj):
    # "r" was right at baseline and never right again: regressed, not stuck
    t = make_traj({"s": "00.0", "r": "0000", "ok": "0010", "n": "...."}, baseline={"r": True})
    assert sig(t, "stuck").value == 1 and sig(t, "stuck").extra["items"] == ["s"]
    assert sig(t, "stuck_fraction").value == approx(1 / 3)   # "n" was never probed


def test_acceleration_averages_only_defined_windows(make_traj):
    # windows: k0 {a: wrong at baseline}, k1 {b, c: both right at baseline}, k2 {d: wrong}.
    # Window k1 has no wrong item: its improvement rate is undefined, so it cannot fix the
    # acceleration at 0 - 1; no window of the first or last third has a right item except k1,
    # so the forgetting term is undefined and only improvement's change counts.
    t = make_traj({"a": "100", "b": ".11", "c": ".10", "d": "..1"},
                  baseline={"b": True, "c": True})
    v = sig(t, "meta_learning_window")
    assert v.value == approx(1.0 - 1.0) and "early_forgetting" not in v.extra
    t2 = make_traj({"a": "000", "b": ".11", "d": "..1"}, baseline={"b": True})
    assert sig(t2, "meta_learning_window").value == approx(1.0 - 0.0)
    # the first third rates only forgetting (a was right), the last only improvement (c was
    # wrong): neither term has both thirds, so the acceleration is undefined, not 0
    none = make_traj({"a": "1..", "b": ".1.", "c": "..1"}, baseline={"a": True})
    v = sig(none, "meta_learning_window")
    assert v.value is None and "undefined" in v.reason


def test_forward_transfer_counts_items_right_before_their_window(make_traj):
    # wrong at the start: a (window 0: cannot count), b (right at its baseline: transferred),
    # c (still wrong at its baseline); d was right at the start (not eligible)
    t = make_traj({"a": "111", "b": ".11", "c": "..1", "d": ".11"},
                  baseline={"b": True, "d": True},
                  initial={"a": False, "b": False, "c": False, "d": True})
    v = sig(t, "forward_transfer")
    assert v.value == approx(1 / 2) and v.extra["items"] == ["b"]
    assert sig(make_traj({"a": "01"}), "forward_transfer").value is None   # no initial state


def test_final_accuracy_over_items_probed_at_the_end(make_traj):
    t = make_traj({"a": "01", "b": "11", "c": "00", "d": "1."})
    assert sig(t, "final_accuracy").value == approx(2 / 3)   # d was not probed at the end


def _holdout(make_traj, correct, conf, baseline, self_conf=None):
    K = len(correct)
    return make_traj({"a": "1" * K}, holdout_ids=["h1", "h2"], holdout_baseline=baseline,
                     holdout_correct=correct, holdout_confidence=conf,
                     holdout_self_confidence=self_conf or [])


def test_confidence_gap_uses_self_confidence_and_its_peak(make_traj):
    # wrong but sure of its own answer (0.8 while P(true answer) is 0.01), then right
    t = _holdout(make_traj, [[0, 0], [0, 0], [1, 0], [1, 1]], [[0.01, 0.01]] * 4, [False, False],
                 self_conf=[[0.2, 0.2], [0.8, 0.8], [0.9, 0.5], [0.95, 0.95]])
    gap = sig(t, "confidence_gap")
    assert gap.value == approx(0.95 - 1) and gap.extra["series"] == approx([0.2, 0.8, 0.2, -0.05])
    peak = sig(t, "confidence_gap_peak")
    assert peak.value == approx(0.8) and peak.extra["step"] == t.steps[1]
    # without self-confidences (older trajectory files) there is no gap, not a wrong one
    old = _holdout(make_traj, [[0, 0], [1, 1]], [[0.1, 0.1], [0.9, 0.9]], [False, False])
    assert sig(old, "confidence_gap").value is None
    assert "self-confidence" in sig(old, "confidence_gap").reason


def test_branch_area_is_zero_without_hysteresis():
    from fitness.signals import branch_area

    x = [0.0, 0.5, 1.0, 1.5]
    assert branch_area(x, [0, 0.2, 0.9, 1], [0, 0.2, 0.9, 1]) == approx(0.0)
    # the down-sweep stays high down to 0.5: gaps 0, 0.8, 0.1, 0 -> trapezoids 0.2 + 0.225 + 0.025
    assert branch_area(x, [0, 0.2, 0.9, 1], [0, 1.0, 1.0, 1]) == approx(0.45)
    assert branch_area(x[::-1], [1, 0.9, 0.2, 0], [1, 1.0, 1.0, 0]) == approx(0.45)  # any order
    with pytest.raises(ValueError, match="one value of each branch"):
        branch_area(x, [0, 1], [0, 1, 1, 1])


def test_holdout_gain(make_traj):
    t = _holdout(make_traj, [[0, 0], [1, 0], [1, 1]], [[0.5] * 2] * 3, [True, False])
    assert sig(t, "holdout_gain").value == approx(1.0 - 0.5)


def test_detect_grokking_fires_after_the_train_plateau():
    train = [0.2, 0.5, 0.8] + [1.0] * 57
    val = [0.0] * 40 + [0.9] * 20
    # plateau at probe 12; the window mean over (j-10, j] first beats the one before by > 0.2
    # at j = 42 (3 probes of 0.9: 0.27)
    assert detect_grokking(train, val, threshold=0.2, window=10) == 42
    assert detect_grokking(train, val, threshold=0.5, window=10) == 45
    # validation rising together with training is learning, not grokking
    assert detect_grokking(train, [0.0, 0.4, 0.8] + [0.95] * 57) is None
    # a jump while training is still moving does not count
    assert detect_grokking([i / 60 for i in range(60)], val) is None
    with pytest.raises(ValueError, match="one value per probe"):
        detect_grokking(train, val[:-1])


def test_a_holdout_rise_while_train_recovers_from_a_collapse_is_not_grokking():
    """Unclipped Adam's loss spikes: train collapses to chance and re-memorises, and holdout comes
    back with it. The window after the collapse beats the one holding it, but train accuracy was
    not on its plateau there, so it is not a late generalisation jump."""
    train = [0.2, 0.6] + [1.0] * 28 + [0.05] * 5 + [1.0] * 25
    val = [0.0, 0.0] + [0.4] * 28 + [0.02] * 5 + [0.45] * 25
    assert detect_grokking(train, val, window=10) is None
    # the same holdout jump with train steady on its plateau is grokking
    steady = [0.2, 0.6] + [1.0] * 58
    assert detect_grokking(steady, [0.0, 0.0] + [0.1] * 33 + [0.45] * 25, window=10) is not None
    # a chance-level "plateau" before any learning, then train and holdout rising together
    rising = [0.04] * 12 + [min(1.0, 0.04 + 0.05 * k) for k in range(48)]
    assert detect_grokking(rising, [0.03] * 12 + [min(0.5, 0.02 * k) for k in range(48)],
                           window=10) is None


def test_one_probe_caught_in_a_loss_spike_neither_hides_nor_makes_a_jump():
    """A transformer that groks under unclipped AdamW (session 12's number base, full parameters:
    `ablate --train linears,embed,head,norm --reinit`) has single probes where train accuracy
    drops to 0.35 and is back at 1.0 by the next. The jump around them is still grokking; three
    spike probes in a window are not a plateau."""
    train = [0.0] + [1.0] * 59
    train[30] = 0.35
    val = [0.0] * 32 + [0.9] * 28
    j = detect_grokking(train, val, window=10)
    assert j is not None and 32 <= j <= 36
    # the spike probe's own holdout (often at chance too) is not counted in either window
    dipped = val[:]
    dipped[40] = 0.0
    train2 = train[:]
    train2[40] = 0.3
    assert detect_grokking(train2, dipped, window=10) == j
    # two spikes within one window are tolerated; three are not a plateau
    assert plateau_index([0.3, 1, 1, 0.3, 1, 1, 1, 1, 1, 1]) == 9
    assert plateau_index([0.3, 1, 1, 0.3, 1, 0.3, 1, 1, 1, 1]) is None


def test_grokking_signal_on_a_trajectory(make_traj):
    K = 30
    rows = {"a": "0" + "1" * (K - 1)}
    hold = [[False, False]] * 20 + [[True, True]] * 10
    t = make_traj(rows, holdout_ids=["h1", "h2"], holdout_baseline=[False, False],
                  holdout_correct=hold, holdout_confidence=[[0.5, 0.5]] * K)
    v = sig(t, "grokking")
    assert v.value == 1.0 and v.extra["index"] == 22 and v.extra["step"] == 230
    short = make_traj({"a": "01"}, holdout_ids=["h"], holdout_baseline=[False],
                      holdout_correct=[[False], [True]], holdout_confidence=[[0.1], [0.9]])
    assert sig(short, "grokking").value is None


def test_grokking_signal_on_an_evolutions_six_checkpoints(make_traj):
    """An evolution probes 6 times a generation: the detector uses windows of 3 probes there."""
    hold = [[False, False]] * 3 + [[True, True]] * 3
    late = make_traj({"a": "111111"}, holdout_ids=["h1", "h2"], holdout_baseline=[False, False],
                     holdout_correct=hold, holdout_confidence=[[0.5, 0.5]] * 6)
    v = sig(late, "grokking")
    assert v.value == 1.0 and v.extra["window"] == 3 and v.extra["step"] == late.steps[5]
    # holdout rising while training accuracy still climbs is learning, not grokking
    early = make_traj({"a": "011111", "b": "001111"}, holdout_ids=["h1", "h2"],
                      holdout_baseline=[False, False], holdout_correct=hold,
                      holdout_confidence=[[0.5, 0.5]] * 6)
    assert sig(early, "grokking").value == 0.0
    three = make_traj({"a": "111"}, holdout_ids=["h"], holdout_baseline=[False],
                      holdout_correct=[[False], [False], [True]], holdout_confidence=[[0.1]] * 3)
    assert sig(three, "grokking").value is None and "4 checkpoints" in sig(three, "grokking").reason


def test_spectral_signals_read_the_trajectory_result(make_traj):
    t = make_traj({"a": "01"})
    assert sig(t, "spectral_alpha_distance").value is None
    t.spectral = {"alpha_distance": 0.5, "mean_alpha": 1.5, "n_alpha_below_2": 2, "n_traps": 1,
                  "warnings": ["q: alpha 1.50 < 2"], "update_cosine": {"mean_abs": 0.3,
                                                                       "mean": -0.1}}
    assert sig(t, "spectral_alpha_distance").value == 0.5
    assert sig(t, "spectral_warnings").value == 3
    assert sig(t, "spectral_update_cosine").value == 0.3


def test_learning_speed_signals_by_hand(make_traj):
    # wrong at baseline: a (right at its own window: d 0), b (right one checkpoint later: d 1),
    # c (never right); r was right at baseline (not counted). 4 checkpoints of 10 items.
    t = make_traj({"a": "1111", "b": "0111", "c": ".000", "r": "1111"}, baseline={"r": True})
    assert sig(t, "immediate_learning").value == approx(1 / 3)
    assert sig(t, "learning_speed").value == approx((1 + 1 / 2 + 0) / 3)
    assert sig(t, "learned_per_100").value == approx(100 * 2 / 40)
    assert sig(make_traj({"r": "11"}, baseline={"r": True}), "learning_speed").value is None


def _grok_traj(make_traj, hold_from: int | None, K: int = 24):
    """Train items memorised at checkpoint 2 (step 30); the 4 holdout items right from checkpoint
    `hold_from` on (None: never)."""
    hold = [[hold_from is not None and k >= hold_from] * 4 for k in range(K)]
    return make_traj({"a": "00" + "1" * (K - 2), "b": "01" + "1" * (K - 2)},
                     holdout_ids=["h1", "h2", "h3", "h4"], holdout_baseline=[False] * 4,
                     holdout_correct=hold, holdout_confidence=[[0.5] * 4] * K)


def test_grok_timing_of_a_learner_that_memorises_then_generalises(make_traj):
    late = _grok_traj(make_traj, hold_from=14)
    assert sig(late, "grokking").value == 1.0
    assert sig(late, "grok_memorised_step").value == 30
    assert sig(late, "grok_onset_step").value == 150       # checkpoint 14, the jump's midpoint
    assert sig(late, "grok_delay").value == 120


def test_no_grok_timing_without_a_late_holdout_jump(make_traj):
    never = _grok_traj(make_traj, hold_from=None)
    assert sig(never, "grokking").value == 0.0
    assert sig(never, "grok_memorised_step").value == 30
    for name in ("grok_onset_step", "grok_delay"):
        v = sig(never, name)
        assert v.value is None and "did not grok" in v.reason
    # generalising together with memorising (checkpoint 1) is learning, not grokking
    together = _grok_traj(make_traj, hold_from=1)
    assert sig(together, "grokking").value == 0.0 and sig(together, "grok_onset_step").value is None
    unmemorised = make_traj({"a": "0" * 24}, holdout_ids=["h"], holdout_baseline=[False],
                            holdout_correct=[[False]] * 24, holdout_confidence=[[0.1]] * 24)
    assert "never reached" in sig(unmemorised, "grok_memorised_step").reason
