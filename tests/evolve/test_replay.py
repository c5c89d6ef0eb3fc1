"""`evolve replay`: re-training a champion's ancestry reproduces its recorded adapter."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from evolve.cli import main
from evolve.commands.replay import replay_state
from evolve.resume import load_state


def test_replay_reproduces_the_champion_adapter(make_cfg: Any, run_evo: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # crossover_p 0.7 with svd merge and weight noise: generation 1 has merged, noisy and cloned
    # children; LoRA dropout up to 0.3: every learner draws its masks from its own generator for
    # its own rows, so it replays alone as it trained in its group.
    cfg = make_cfg(**{"variation.crossover_p": 0.7, "variation.merge": "svd",
                      "variation.weight_noise": 0.05, "genome.dropout": "[0.1, 0.3]"})
    summary, tracker = run_evo(cfg)
    store = ["--set", f"tracking.uri={cfg.tracking.uri}",
             "--set", f"tracking.experiment={cfg.tracking.experiment}",
             "--set", f"state_dir={cfg.state_dir}"]
    records = tracker.load_records(summary.run_id, curves=False)
    assert {"crossover", "clone"} <= {r.operator for r in records if r.generation == 1}
    out = tmp_path / "champion"
    code = main(["replay", summary.champion, "--run", summary.run_id, "--out", str(out), *store])
    text = capsys.readouterr().out
    assert code == 0, text
    assert (out / "adapter_config.json").is_file()
    diff = float(re.search(r"max abs difference to the recorded adapter: (\S+)", text).group(1))
    assert diff < 1e-5
    # a merged child of the last generation (no adapter in the store): against its saved state
    saved = load_state(cfg, summary.run_id)
    ids = [r.learner_id for r in saved.records]
    merged = next(r for r in records if r.generation == 1 and r.operator == "crossover")
    _, state = replay_state(tracker, summary.run_id, merged.learner_id, cfg.state_dir)
    want = saved.states[ids.index(merged.learner_id)]
    assert set(state.lora) == set(want.lora)
    for name, (a, b) in want.lora.items():
        assert torch.allclose(state.lora[name][0], a, atol=1e-5)
        assert torch.allclose(state.lora[name][1], b, atol=1e-5)
    code = main(["replay", "g9-l9", "--run", summary.run_id, *store])
    err = capsys.readouterr().err
    assert code == 2 and "no learner 'g9-l9'" in err
