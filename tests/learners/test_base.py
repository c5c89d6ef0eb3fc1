"""Base model build/save/load round trip, one-line load errors, any causal LM, and pretraining
(packed shares equal one padded batch; bitwise the same on one core or two)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, GPT2Config, GPT2LMHeadModel

from common.errors import EvolveError
from learners.base import (
    BaseConfig,
    build_base,
    load_base,
    pack,
    packed_loss_grads,
    pretrain,
    save_base,
    split_shares,
)
from learners.encoding import IGNORE, answer_verdicts, encode_pairs
from learners.tokenizer import build_char_tokenizer

TINY = BaseConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_len=64)
PAIRS = [("1+1=", "2"), ("2+2=", "4"), ("rev:ab=", "ba"), ("(()?", "no"), ("capital of zorbia?", "vemlo")]


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="num_heads"):
        BaseConfig(hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="num_layers"):
        BaseConfig(num_layers=0)
    with pytest.raises(ValueError, match="odd"):
        BaseConfig(hidden_size=12, num_heads=4)


def test_build_is_deterministic_in_seed_and_leaves_global_rng_alone() -> None:
    tok = build_char_tokenizer()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b, c = (build_base(TINY, tok, seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), before)
    sa, sb, sc = (m.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    assert a.config.vocab_size == len(tok) and a.config._attn_implementation == "eager"
    assert sum(p.numel() for p in build_base(BaseConfig(), tok, 0).parameters()) == 1_075_840


def test_save_load_round_trip_reproduces_logits(tmp_path: Path) -> None:
    tok = build_char_tokenizer()
    model = build_base(TINY, tok, seed=3)
    save_base(model, tok, tmp_path / "b")
    again, tok2 = load_base(tmp_path / "b")
    b, b2 = encode_pairs(tok, PAIRS), encode_pairs(tok2, PAIRS)
    assert torch.equal(b.input_ids, b2.input_ids)
    with torch.no_grad():
        x = model(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
        y = again(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    assert torch.equal(x, y)
    assert again.dtype == torch.float32 and not again.training


def _one_line_error(path: Path, *needles: str) -> str:
    with pytest.raises(EvolveError) as err:
        load_base(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg
    for n in needles:
        assert n in msg
    return msg


def test_load_errors_are_one_line_naming_path_and_fix(tmp_path: Path) -> None:
    _one_line_error(tmp_path / "nope", "no such directory", "causal-LM directory")
    (tmp_path / "empty").mkdir()
    _one_line_error(tmp_path / "empty", "no config.json")
    BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(tmp_path / "bert")
    _one_line_error(tmp_path / "bert", "not a causal LM")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    _one_line_error(tmp_path / "broken", "config.json")
    tok = build_char_tokenizer()
    build_base(TINY, tok, 0).config.save_pretrained(tmp_path / "noweights")  # config only
    _one_line_error(tmp_path / "noweights", "weights")
    save_base(build_base(TINY, tok, 0), tok, tmp_path / "notok")
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "notok" / f).unlink()
    _one_line_error(tmp_path / "notok", "no tokenizer", "tokenizer.save_pretrained")
    (tmp_path / "alien").mkdir()
    cfg = json.loads((tmp_path / "noweights" / "config.json").read_text())
    (tmp_path / "alien" / "config.json").write_text(json.dumps({**cfg, "model_type": "frobnitz"}))
    _one_line_error(tmp_path / "alien", "'frobnitz'", "cannot load", "pip install -U transformers")


def test_any_local_causal_lm_loads(tmp_path: Path) -> None:
    """Not only our Llama: a GPT-2 model dir loads and scores through the same encoding."""
    tok = build_char_tokenizer()
    cfg = GPT2Config(vocab_size=len(tok), n_embd=16, n_layer=1, n_head=2, n_positions=64,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    GPT2LMHeadModel(cfg).save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    model, tok2 = load_base(tmp_path / "gpt2")
    assert type(model).__name__ == "GPT2LMHeadModel"
    b = encode_pairs(tok2, PAIRS)
    correct, prob, _ = answer_verdicts(model(input_ids=b.input_ids).logits, b)
    assert correct.shape == (len(PAIRS),) and ((prob > 0) & (prob < 1)).all()


def test_pretrain_learns_and_is_deterministic() -> None:
    tok = build_char_tokenizer()
    runs = []
    for _ in range(2):
        model = build_base(TINY, tok, seed=0)
        curve = pretrain(model, tok, PAIRS, steps=60, batch_size=8, lr=1e-2, seed=5, progress=False)
        runs.append((curve, model))
    (c1, m1), (c2, m2) = runs
    assert len(c1) == 60 and c1 == c2
    assert all(torch.equal(p, q) for p, q in zip(m1.parameters(), m2.parameters(), strict=True))
    assert sum(c1[-10:]) / 10 < 0.5 * sum(c1[:10]) / 10
    assert not m1.training
    with pytest.raises(ValueError, match="no"):
        pretrain(m1, tok, [], steps=1, progress=False)


# lengths 5..31 tokens with <bos>/<eos>: several per 64-token row, and one longer than a row
VARIED = [*PAIRS, ("reverse the string qwertyuiop:", "poiuytrewq"), ("7 3 + 2 *=", "20"),
          ("x" * 70 + "?", "long")]


def _seqs(tok: object, pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    b = encode_pairs(tok, pairs)
    return [(b.input_ids[i, :int(b.attention_mask[i].sum())].tolist(), int(b.answer_start[i]))
            for i in range(len(b))]


def test_pack_layout_is_block_diagonal_with_restarting_positions() -> None:
    tok = build_char_tokenizer()
    seqs = _seqs(tok, VARIED)
    p = pack(seqs, row_tokens=32)
    R, T = p.input_ids.shape
    assert p.attention_mask.shape == (R, 1, T, T) and T == max(len(x) for x, _ in seqs)  # 74 > 32
    assert int((p.labels != IGNORE).sum()) == sum(len(x) - n for x, n in seqs)
    found = []
    for r in range(R):
        allowed = p.attention_mask[r, 0] == 0
        starts = (p.position_ids[r] == 0).nonzero().flatten().tolist() + [T]
        for a, b in zip(starts, starts[1:], strict=False):
            ids = p.input_ids[r, a:b].tolist()
            if ids[0] != tok.bos_token_id:       # trailing padding
                continue
            found.append(ids)
            assert p.position_ids[r, a:b].tolist() == list(range(b - a))
            # a sequence sees exactly its own earlier tokens
            assert allowed[a:b, a:b].equal(torch.ones(b - a, b - a, dtype=torch.bool).tril())
            assert not allowed[a:b, :a].any() and not allowed[a:b, b:].any()
    assert sorted(found) == sorted(x for x, _ in seqs)
    assert pack(seqs[:5], row_tokens=32).input_ids.shape[0] < 5  # short ones share rows


def test_packed_shares_equal_one_padded_batch() -> None:
    """The packed, split objective is the padded batch's mean answer-token loss, and its gradient."""
    tok = build_char_tokenizer()
    model = build_base(TINY, tok, seed=0)
    params = list(model.parameters())
    b = encode_pairs(tok, VARIED)
    ref = model(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels).loss
    ref_grads = torch.autograd.grad(ref, params)
    seqs = _seqs(tok, VARIED)
    denom = sum(len(x) - n for x, n in seqs)
    shares = split_shares(seqs)
    assert sorted(i for s in shares for i in s) == list(range(len(seqs))) and all(shares)
    loss, grads = 0.0, [torch.zeros_like(p) for p in params]
    for share in shares:
        part, g = packed_loss_grads(model, params, pack([seqs[i] for i in share]), denom)
        loss += part
        grads = [a + c for a, c in zip(grads, g, strict=True)]
    assert loss == pytest.approx(float(ref.detach()), rel=1e-5)
    for got, want in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


_BUILD = """
import hashlib, os, sys
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:int(sys.argv[1])]))
import torch
from learners.base import BaseConfig, build_base, pretrain
from learners.tokenizer import build_char_tokenizer
torch.set_num_threads(len(os.sched_getaffinity(0)))  # what a user's default would be
tok = build_char_tokenizer()
model = build_base(BaseConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32), tok, 0)
pairs = [(f"{a}+{b}=", str(a + b)) for a in range(30) for b in range(0, 300, 7)]
curve = pretrain(model, tok, pairs, steps=12, batch_size=24, seed=1, progress=False)
h = hashlib.sha256(repr(curve).encode())
for p in model.parameters():
    h.update(p.detach().numpy().tobytes())
print(torch.get_num_threads(), h.hexdigest())
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to compare with 1")
def test_pretrain_is_bitwise_the_same_on_one_core_or_two() -> None:
    """Fresh processes pinned to 1 and to 2 cores (torch defaulting to that many threads)."""
    root = Path(__file__).resolve().parents[2]
    out = {}
    for cores in (1, 2):
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        res = subprocess.run([sys.executable, "-c", _BUILD, str(cores)], capture_output=True,
                             text=True, cwd=root, env=env, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        threads, digest = res.stdout.split()
        assert int(threads) == cores      # pretrain restored the caller's thread count
        out[cores] = digest
    assert out[1] == out[2]
    assert len(out[1]) == len(hashlib.sha256().hexdigest())


def test_progress_bars_stay_off_while_any_thread_loads() -> None:
    """Two threads loading at once (the local backend's groups): bars stay off until the last is
    done, then come back as they were."""
    import threading

    from transformers.utils import logging as hf_logging

    from learners.base import _quiet_io

    hf_logging.enable_progress_bar()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[bool] = []

    def first() -> None:
        with _quiet_io():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(5)
    with _quiet_io():
        second_in.set()
        first_out.wait(5)
        seen.append(hf_logging.is_progress_bar_enabled())   # the first thread already left
    t.join(5)
    assert seen == [False]
    assert hf_logging.is_progress_bar_enabled()
