"""`evolve replay`: re-training a champion's ancestry reproduces its recorded adapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from evolve.cli import main


@pytest.mark.parametrize("merge", ["svd", "none"])
def test_replay_reproduces_the_champion_adapter(make_cfg: Any, run_evo: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                merge: str) -> None:
    # crossover_p 1 with svd merge: every non-elite child of generation 1 merges two parents
    cfg = make_cfg(**{"variation.crossover_p": 1.0 if merge == "svd" else 0.0,
                      "variation.merge": merge, "variation.weight_noise": 0.05})
    summary, tracker = run_evo(cfg)
    champ = summary.champion
    out = tmp_path / "replayed"
    code = main(["replay", champ, "--run", summary.run_id, "--out", str(out),
                 "--set", f"tracking.uri={cfg.tracking.uri}",
                 "--set", f"tracking.experiment={cfg.tracking.experiment}",
                 "--set", f"state_dir={cfg.state_dir}"])
    text = capsys.readouterr().out
    assert code == 0, text
    diff = float(re.search(r"max abs difference to the recorded adapter: (\S+)", text).group(1))
    assert diff < 1e-5
    assert (out / "adapter_config.json").is_file()
    if merge == "svd":
        ops = {r.operator for r in tracker.load_records(summary.run_id) if r.generation == 1}
        assert "crossover" in ops


def test_replay_of_an_unknown_learner_is_one_line(make_cfg: Any, run_evo: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = make_cfg(generations=1)
    summary, _ = run_evo(cfg)
    code = main(["replay", "g9-l9", "--run", summary.run_id,
                 "--set", f"tracking.uri={cfg.tracking.uri}",
                 "--set", f"tracking.experiment={cfg.tracking.experiment}"])
    err = capsys.readouterr().err
    assert code == 2 and "no learner 'g9-l9'" in err
