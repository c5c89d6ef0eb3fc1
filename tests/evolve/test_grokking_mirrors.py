"""`evolve.experiments.grokking.mirrors`: a commutative op's holdout accuracy split into cells whose
mirror was trained, the diagonal and the rest, from a run's trajectories file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evolve.experiments.grokking import mirrors


def _traj(tmp_path: Path) -> Path:
    """One learner: trained 1+2, 3+4; held out 2+1 (mirror trained), 5+5 (diagonal), 6+7 (rest).
    Over 3 checkpoints it gets the mirror right from the 2nd, the rest only at the 3rd."""
    holdout = ["modadd_11_002_001", "modadd_11_005_005", "modadd_11_006_007"]
    correct = [[False, False, False], [True, False, False], [True, False, True]]
    doc = {"format": "evolve-trajectories", "version": 1, "trajectories": [{
        "learner_id": "g0-l0", "steps": [2, 4, 6], "failed": False, "spectral": None,
        "items": {"modadd_11_001_002": {}, "modadd_11_003_004": {}},
        "holdout": {"ids": holdout, "baseline": [False] * 3, "correct": correct}}]}
    path = tmp_path / "trajectories_g0.json"
    path.write_text(json.dumps(doc))
    return path


def test_holdout_accuracy_is_split_by_whether_the_mirror_was_trained(tmp_path: Path) -> None:
    (r,) = mirrors.report(_traj(tmp_path), last=2)
    assert r["mirror_trained"] == {"cells": 1, "last_mean": 1.0, "best": 1.0}
    assert r["diagonal"] == {"cells": 1, "last_mean": 0.0, "best": 0.0}
    assert r["rest"] == {"cells": 1, "last_mean": 0.5, "best": 1.0}
    assert mirrors.mirror("modsub_23_013_004") == "modsub_23_004_013"
    assert mirrors.mirror("trivia_0001") is None


def test_cli_prints_each_learner_and_names_a_missing_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mirrors.main([str(_traj(tmp_path)), "--last", "1"]) == 0
    out = capsys.readouterr().out
    assert "g0-l0: mirror trained (1 cells) 1.00 (1.00); diagonal (1 cells) 0.00" in out
    with pytest.raises(SystemExit) as e:
        mirrors.main([str(tmp_path / "nope.json")])
    assert e.value.code == 2 and "no such file" in capsys.readouterr().err
