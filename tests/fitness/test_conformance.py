"""Every registered signal, on every awkward trajectory, is finite or None with a reason."""

from __future__ import annotations

import math

import pytest

import fitness
from fitness import SIGNALS, Signal, compute_signals


def _cases(make_traj):
    spec = {"alpha_distance": 0.0, "mean_alpha": 3.0, "n_alpha_below_2": 0, "n_traps": 0,
            "warnings": [], "update_cosine": {"mean_abs": 0.2, "mean": 0.1}}
    K = 24
    return {
        "empty": fitness.Trajectory("e", [], {}, {}, {}, {}),
        "no items": make_traj({}, steps=[10, 20, 30]),
        "one checkpoint": make_traj({"a": "1", "b": "0"}),
        "all correct": make_traj({"a": "1111", "b": "1111"}, baseline={"a": True}),
        "all wrong": make_traj({"a": "0000", "b": "0000"}),
        "failed": make_traj({"a": "0101"}, failed=True),
        # one item trained every 4 checkpoints (so every third has windows), two of them right
        # at baseline, all wrong at the start (so forward transfer is defined)
        "full": make_traj({f"i{j}": "." * (4 * j) + ("01" * K)[j % 2:j % 2 + K - 4 * j]
                           for j in range(6)}, baseline={"i0": True, "i3": True},
                          initial={f"i{j}": False for j in range(6)},
                          holdout_ids=["h1", "h2"], holdout_baseline=[False, True],
                          holdout_correct=[[k > 12, True] for k in range(K)],
                          holdout_confidence=[[0.3 + 0.02 * k, 0.9] for k in range(K)],
                          holdout_self_confidence=[[0.6, 0.9] for k in range(K)],
                          spectral=spec),
        "holdout without confidence": make_traj({"a": "011"}, holdout_ids=["h"],
                                                holdout_baseline=[False],
                                                holdout_correct=[[False], [True], [True]]),
    }


def test_every_signal_is_finite_or_none_with_a_reason(make_traj):
    assert len(SIGNALS) >= 15
    for case, traj in _cases(make_traj).items():
        values = compute_signals(traj)
        assert set(values) == set(SIGNALS.names()), case
        for name, v in values.items():
            if v.value is None:
                assert v.reason, f"{name} on {case!r}: None without a reason"
            else:
                assert isinstance(v.value, float) and math.isfinite(v.value), (name, case)


# defined only for some learners: a half-life may be "never reached"; the grokking timings only
# for learners that memorised (and grokked), which the full trajectory's oscillating items do not
OPTIONAL = ("forgetting_half_life", "grok_memorised_step", "grok_onset_step", "grok_delay")


def test_the_full_trajectory_defines_every_signal(make_traj):
    undefined = {n: v.reason for n, v in compute_signals(_cases(make_traj)["full"]).items()
                 if v.value is None and n not in OPTIONAL}
    assert not undefined


def test_failed_learner_has_no_values(make_traj):
    values = compute_signals(_cases(make_traj)["failed"])
    assert all(v.value is None and "failed" in v.reason for v in values.values())


def test_registry_entries_are_signals_with_metadata():
    for entry in SIGNALS.entries():
        s = entry.obj
        assert isinstance(s, Signal) and s.name == entry.name
        assert isinstance(s.higher_is_better, bool) and s.none_is in ("worst", "best")
        assert entry.description and "\n" not in entry.description


def test_names_other_code_relies_on():
    for name in ("meta_learning_window", "meta_learning_cumulative", "forgetting_half_life",
                 "survival_at_end", "oscillation", "stuck", "stuck_fraction", "holdout_gain",
                 "grokking", "confidence_gap", "confidence_gap_peak", "final_accuracy",
                 "spectral_alpha_distance"):
        assert name in SIGNALS
    assert SIGNALS.get("forgetting_half_life").none_is == "best"
    assert not SIGNALS.get("oscillation").higher_is_better


def test_unknown_signal_name_is_a_one_line_error(make_traj):
    from common.registry import UnknownNameError

    with pytest.raises(UnknownNameError, match="valid:.*oscillation") as err:
        compute_signals(make_traj({"a": "01"}), ["oscilation"])
    assert "\n" not in str(err.value)
