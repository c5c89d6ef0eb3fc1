"""Base model build/save/load round trip, one-line load errors, any causal LM, and pretraining."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, GPT2Config, GPT2LMHeadModel

from evolve.errors import EvolveError
from learners.base import BaseConfig, build_base, load_base, pretrain, save_base
from learners.encoding import answer_verdicts, encode_pairs
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
    _one_line_error(tmp_path / "notok", "tokenizer")


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
