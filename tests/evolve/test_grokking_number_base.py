"""The never-pretrained number base (`evolve.experiments.grokking.number_base`): a local causal LM
that `load_base` takes, one token per number (the answer of a modular cell is one token), random
and deterministic for a seed, and LoRA learners on it train and are probed like on any base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from curricula.families.modular import Modular
from evolve.experiments.grokking.explore import main as main_explore
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


def test_explore_verdicts_use_the_grokking_detector_and_read_saved_logs(
        tmp_path: Path, capsys: Any) -> None:
    """Each learner's verdict says where it memorised and whether the evolution's detector fired
    (a late holdout jump); `--verdict LOG` gives the same verdicts from a saved output."""
    import pytest

    from evolve.experiments.grokking.explore import parse_log, verdicts

    n = 40
    grok = [(0.1 if e < 5 else 1.0, 0.0 if e < 25 else 0.9) for e in range(n)]
    flat = [(0.1 if e < 5 else 1.0, 0.05) for e in range(n)]
    lines = [f"pass {10 * e:4d} t={e:5d}s " + " ".join(f"{a:.2f}/{b:.2f}" for a, b in pair)
             for e, pair in enumerate(zip(grok, flat, strict=True))]
    text = "train 480 hold 256 learners x y\n" + "\n".join(lines) + "\nx: a verdict\n"
    rows = parse_log(text)
    assert [r[0] for r in rows] == [10 * e for e in range(n)] and rows[30][2] == [0.9, 0.05]
    got, never = verdicts(rows)
    assert got.startswith("memorised at pass 50; the grokking detector fired at pass ")
    assert "midpoint at pass 250" in got and never.endswith("holdout 0.05 (best 0.05)")
    assert "did not grok" in never
    (tmp_path / "run.log").write_text(text)
    assert main_explore(["--verdict", str(tmp_path / "run.log")]) == 0
    assert capsys.readouterr().out.splitlines() == [f"learner 1: {got}", f"learner 2: {never}"]
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(SystemExit):
        main_explore(["--verdict", str(tmp_path / "empty.log")])
    assert "no 'pass N" in capsys.readouterr().err


def test_ablate_trains_only_the_parts_named_and_logs_what_explore_reads(tmp_path: Path) -> None:
    """`ablate` trains exactly the parts named (or LoRA factors on the decoder's linears plus
    them), logs probes `explore --verdict` parses, refuses an unknown part with the fix, and a
    full-batch step moves the trained parts and nothing else."""
    import pytest

    from common.errors import EvolveError
    from evolve.experiments.grokking.ablate import ablate, trainable
    from evolve.experiments.grokking.explore import parse_log

    build(tmp_path, numbers=16, hidden=32, layers=1, linear_std=1e-3)
    model, _ = load_base(tmp_path)
    params, kinds = trainable(model, {"embed", "norm"}, 0, 0.0, 0)
    on = {kinds[n] for n, w in model.named_parameters() if w.requires_grad}
    assert on == {"embed", "norm"} and len(params) == 4   # embeddings, two block norms, final norm
    assert {"linears", "head"} <= set(kinds.values())
    model, _ = load_base(tmp_path)
    params, kinds = trainable(model, {"head"}, 4, 1.0, 0)
    on = {kinds[n] for n, w in model.named_parameters() if w.requires_grad}
    assert on == {"head", "lora"} and len(params) == 1 + 2 * 7   # A and B on seven linears
    lines: list[str] = []
    rows = ablate(tmp_path, "add", 5, 0.6, 4, {"linears", "embed", "head", "norm"}, lr=1e-2,
                  every=2, reinit=True, canonical=True, log=lines.append)
    assert [r[0] for r in rows] == [0, 2, 4] and lines[0].startswith("train 9 hold 6 ")
    assert [(s, [round(a, 2)], [round(b, 2)]) for s, (a,), (b,) in rows] == \
        parse_log("\n".join(lines)) and lines[-1].startswith("verdict: ")
    assert rows[-1][1] != rows[0][1]   # it trained
    with pytest.raises(EvolveError, match="name parts from linears, embed, head, norm"):
        ablate(tmp_path, "add", 5, 0.6, 1, {"embeddings"})


def test_ablate_refuses_a_base_whose_answers_are_not_one_token(
        tiny_base: Path, capsys: Any) -> None:
    """On a character-level base "17" is two tokens: the command exits with the one-line fix
    (build a number base) before training anything."""
    import pytest

    from evolve.experiments.grokking.ablate import main as main_ablate

    with pytest.raises(SystemExit) as exit_:
        main_ablate(["--base", str(tiny_base), "--p", "23", "--train", "linears", "--steps", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "answers to one token" in err and "number_base" in err
