"""The never-pretrained number base (`evolve.experiments.grokking.number_base`): a local causal LM
that `load_base` takes, one token per number (the answer of a modular cell is one token), random
and deterministic for a seed, and LoRA learners on it train and are probed like on any base."""

from __future__ import annotations

from pathlib import Path

import torch

from curricula.families.modular import Modular
from evolve.experiments.grokking.number_base import build, main
from learners.base import load_base
from learners.encoding import as_codec
from learners.population import LearnerSpec, Population


def test_a_number_base_loads_and_answers_are_one_token(tmp_path: Path) -> None:
    build(tmp_path / "a", numbers=32, hidden=32, layers=1, seed=3)
    model, tok = load_base(tmp_path / "a")
    item = Modular(p=23, ops=["sub"]).item("sub", 13, 4)
    assert tok.encode(item.prompt, add_special_tokens=False) == [
        tok.convert_tokens_to_ids(t) for t in ["13", "-", "4", "%", "23", "="]]
    ids, start = as_codec(tok).encode_pair(item.prompt, item.answer)
    assert ids[start:] == [tok.convert_tokens_to_ids("9"), tok.eos_token_id]
    assert main(["--out", str(tmp_path / "b"), "--numbers", "32", "--hidden", "32",
                 "--layers", "1", "--seed", "3"]) == 0
    again, _ = load_base(tmp_path / "b")
    for (n, w), (_, w2) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(w, w2), n
    spec = LearnerSpec(lr=1e-2, weight_decay=0.0, rank=4, alpha=8.0, dropout=0.0, seed=0)
    pop = Population(model, tok, [spec], target_modules=("q_proj", "v_proj", "down_proj"))
    pairs = [(i.prompt, i.answer) for i in Modular(p=7, ops=["sub"]).table("sub")[:8]]
    before = pop.probe(pairs).prob.copy()
    for _ in range(5):
        pop.train_step([pairs])
    assert (pop.probe(pairs).prob.mean() > before.mean())


def test_explore_trains_the_learners_and_reports_both_accuracies(tmp_path: Path) -> None:
    from evolve.experiments.grokking.explore import explore

    build(tmp_path, numbers=16, hidden=32, layers=1)
    lines: list[str] = []
    rows = explore(tmp_path, "sub", 5, 0.6, 4, ["1e-2:0:4", "1e-2:1:4:8:1"], batch=4, every=2,
                   log=lines.append)
    assert [r[0] for r in rows] == [0, 2, 4] and lines[0].startswith("train 15 hold 10 ")
    assert all(len(tr) == len(ho) == 2 and all(0 <= x <= 1 for x in tr + ho) for _, tr, ho in rows)
    assert rows[0][1] != rows[-1][1]   # the learners trained


def test_linear_std_sets_the_frozen_linears_and_explore_runs_full_batch(tmp_path: Path) -> None:
    """`--linear-std` scales the frozen linear layers (the embeddings and head keep their own
    stds), 0 is refused with the reason; `explore` with batch 0 takes the whole split per step,
    no clipping and beta2 0.98 (the grokking papers' optimiser)."""
    import pytest

    from evolve.experiments.grokking.explore import explore

    build(tmp_path / "s", numbers=16, hidden=64, layers=1, linear_std=1e-3)
    small, _ = load_base(tmp_path / "s")
    build(tmp_path / "d", numbers=16, hidden=64, layers=1)
    default, _ = load_base(tmp_path / "d")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert 0.5e-3 < float(small.state_dict()[q].std()) < 2e-3
    assert 0.01 < float(default.state_dict()[q].std()) < 0.04
    emb = "model.embed_tokens.weight"
    assert torch.equal(small.state_dict()[emb], default.state_dict()[emb])
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "z"), "--linear-std", "0"])
    lines: list[str] = []
    rows = explore(tmp_path / "s", "add", 5, 0.6, 3, ["1e-2:1:8:16:1"], batch=0, every=3,
                   log=lines.append, clip=None, betas=(0.9, 0.98))
    assert lines[0].startswith("train 15 ") and [r[0] for r in rows] == [0, 3]
