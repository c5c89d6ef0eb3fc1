"""Trajectory files: evolve JSON round trip, format detection, one-line errors naming the file."""

from __future__ import annotations

import json
import math

import pytest

from fitness import compute_signals, load, load_adaptible, load_evolve, save_evolve
from fitness.formats import detect, read_json


@pytest.fixture
def rich(make_traj):
    return make_traj({"a": "0.11", "b": "1100"}, baseline={"b": True}, learner_id="g0-l1",
                     holdout_ids=["h"], holdout_baseline=[False],
                     holdout_correct=[[False], [True], [True], [False]],
                     holdout_confidence=[[0.1], [0.7], [math.nan], [0.4]],
                     holdout_self_confidence=[[0.9], [0.7], [0.8], [0.6]],
                     spectral={"alpha_distance": 0.0, "layers": {"q": {"alpha": 3.1}}})


def test_evolve_round_trip_keeps_every_field(rich, tmp_path):
    rich.confidence["a"] = [0.2, None, 0.8, 0.9]
    p = save_evolve([rich], tmp_path / "sub" / "traj.json")
    [back] = load_evolve(p)
    assert back.learner_id == "g0-l1" and back.steps == rich.steps
    assert back.correct == rich.correct and back.baseline == rich.baseline
    assert back.window == rich.window and back.confidence["a"] == [0.2, None, 0.8, 0.9]
    assert back.holdout_correct == rich.holdout_correct
    assert back.holdout_confidence[2] == [None]       # NaN is written as null (valid JSON)
    assert back.holdout_self_confidence == rich.holdout_self_confidence
    assert back.spectral == rich.spectral and not back.failed
    json.loads(p.read_text())   # strict JSON: no NaN tokens
    ours = {n: v.value for n, v in compute_signals(rich).items()}
    theirs = {n: v.value for n, v in compute_signals(back).items()}
    assert ours == theirs


def test_format_is_detected(rich, tmp_path, reference):
    p = save_evolve([rich], tmp_path / "t.json")
    assert detect(read_json(p)) == "evolve" and detect(read_json(reference)) == "adaptible"
    assert [t.learner_id for t in load(p)] == ["g0-l1"]
    assert [t.learner_id for t in load(reference)] == ["42", "123", "456"]


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "neither an evolve trajectory file"),
    ('{"trajectories": {"7": {"checkpoints": [{"step": 10, "improved_ids": []}]}}}',
     "'retained_ids'"),
    ('{"trajectories": {"7": {"checkpoints": [{"improved_ids": []}]}}}', "integer 'step'"),
    ('{"format": "evolve-trajectories", "version": 1}', "'trajectories' list"),
    ('{"format": "evolve-trajectories", "version": 1, "trajectories": [{"learner_id": "x",'
     ' "steps": [1, 2], "items": {"a": {"baseline": false, "window": 0, "correct": [true]}}}]}',
     "1 values for 2 checkpoints"),
])
def test_bad_files_are_one_line_errors_naming_the_file(tmp_path, text, message):
    p = tmp_path / "bad.json"
    p.write_text(text)
    with pytest.raises(ValueError) as err:
        load(p)
    msg = str(err.value)
    assert message in msg and str(p) in msg and "\n" not in msg


def test_explicit_format_that_does_not_fit(tmp_path, reference):
    with pytest.raises(ValueError, match="format"):
        load(reference, "evolve")
    with pytest.raises(ValueError, match="no such file"):
        load(tmp_path / "missing.json")


def test_adaptible_inconsistent_baseline_is_rejected(tmp_path):
    cps = [{"step": 10, "improved_ids": ["a"], "retained_ids": [], "regressed_ids": [],
            "stuck_ids": []},
           {"step": 20, "improved_ids": [], "retained_ids": ["a"], "regressed_ids": [],
            "stuck_ids": []}]
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"trajectories": {"1": {"seed": 1, "checkpoints": cps}}}))
    with pytest.raises(ValueError, match="baseline was wrong"):
        load_adaptible(p)


def test_adaptible_window_is_the_first_appearance(tmp_path):
    cps = [{"step": 20, "improved_ids": ["b"], "retained_ids": ["a"], "regressed_ids": [],
            "stuck_ids": []},
           {"step": 10, "improved_ids": [], "retained_ids": ["a"], "regressed_ids": [],
            "stuck_ids": []}]   # out of order on purpose: sorted by step
    p = tmp_path / "a.json"
    p.write_text(json.dumps({"trajectories": [{"seed": 5, "checkpoints": cps}]}))
    [t] = load_adaptible(p)
    assert t.learner_id == "5" and t.steps == [10, 20]
    assert t.window == {"a": 0, "b": 1} and t.correct == {"a": [True, True], "b": [None, True]}
    assert t.baseline == {"a": True, "b": False}
