"""encode_pairs lays sequences out as documented; answer_verdicts is greedy decoding's verdict."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from learners.base import BaseConfig, build_base, pretrain
from learners.encoding import Batch, answer_verdicts, as_codec, encode_pairs, predicting
from learners.tokenizer import CharCodec, build_char_tokenizer

PAIRS = [(f"{a}+{b}=", str(a + b)) for a in range(0, 10, 3) for b in range(0, 30, 4)] + [
    ("rev:abc=", "cba"), ("(()?", "no"), ("x", "")]


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


@pytest.fixture(scope="module")
def partly_trained(tok: PreTrainedTokenizerFast) -> torch.nn.Module:
    """A small model that has memorised some of PAIRS, not all: verdicts of both kinds."""
    cfg = BaseConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64, max_len=64)
    model = build_base(cfg, tok, seed=1)
    pretrain(model, tok, PAIRS, steps=150, batch_size=16, lr=1e-2, seed=0, progress=False)
    return model


def test_layout_bos_prompt_answer_eos_padded_to_longest(tok: PreTrainedTokenizerFast) -> None:
    b = encode_pairs(tok, [("12+3=", "15"), ("1=", "")])
    ids = [tok.bos_token_id, *tok.encode("12+3=15", add_special_tokens=False), tok.eos_token_id]
    assert b.input_ids.shape == (2, len(ids))  # the longest row, no fixed-length padding
    assert b.input_ids[0].tolist() == ids
    assert b.attention_mask[1].tolist() == [1, 1, 1, 1] + [0] * (len(ids) - 4)
    assert b.input_ids[1, 4:].eq(tok.pad_token_id).all()
    assert b.labels[0].tolist() == [-100] * 6 + ids[6:]           # answer "15" + eos
    assert b.labels[1].tolist() == [-100, -100, -100, tok.eos_token_id] + [-100] * (len(ids) - 4)
    assert b.answer_start.tolist() == [6, 3] and b.answer_len.tolist() == [3, 1]
    assert len(encode_pairs(tok, [])) == 0


def test_hf_loss_is_cross_entropy_on_answer_and_eos(partly_trained: torch.nn.Module,
                                                     tok: PreTrainedTokenizerFast) -> None:
    b = encode_pairs(tok, PAIRS[:6])
    out = partly_trained(input_ids=b.input_ids, attention_mask=b.attention_mask, labels=b.labels)
    logp = torch.log_softmax(out.logits.float(), -1)
    terms = [-logp[i, t - 1, b.input_ids[i, t]] for i in range(len(b))
             for t in range(int(b.answer_start[i]), int(b.answer_start[i] + b.answer_len[i]))]
    torch.testing.assert_close(out.loss, torch.stack(terms).mean(), rtol=1e-5, atol=1e-6)


def test_predicting_cuts_only_columns_that_reach_no_label(partly_trained: torch.nn.Module,
                                                          tok: PreTrainedTokenizerFast) -> None:
    """The forward over the first L columns gives the full forward's hidden states at every
    position that predicts a label; L drops the longest row's eos (and nothing a label needs)."""
    b = encode_pairs(tok, PAIRS[:6])
    T = b.input_ids.shape[1]
    sel, target = predicting(b.labels)
    L = sel.shape[1]
    assert L == T - 1 and target.shape == (6, L)
    assert sel.sum() == (b.labels != -100).sum()                # every label's predictor kept
    assert torch.equal(target[sel], b.labels[b.labels != -100])  # and what it predicts, in order
    full = partly_trained(input_ids=b.input_ids, attention_mask=b.attention_mask,
                          output_hidden_states=True).hidden_states[-1]
    cut = partly_trained(input_ids=b.input_ids[:, :L], attention_mask=b.attention_mask[:, :L],
                         output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(cut[sel], full[:, :L][sel], rtol=1e-5, atol=1e-6)
    none, _ = predicting(torch.full((2, 5), -100))                # no labels: one column, none set
    assert none.shape == (2, 1) and not none.any()


def _greedy(model: torch.nn.Module, tok: PreTrainedTokenizerFast, prompt: str, answer: str) -> bool:
    """One item, no padding: does greedy generate() produce exactly answer + eos?"""
    ids = torch.tensor([[tok.bos_token_id, *tok.encode(prompt, add_special_tokens=False)]])
    target = [*tok.encode(answer, add_special_tokens=False), tok.eos_token_id]
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                         max_new_tokens=len(target), pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id)
    return out[0, ids.shape[1]:].tolist() == target


def test_verdicts_equal_greedy_generate(partly_trained: torch.nn.Module,
                                        tok: PreTrainedTokenizerFast) -> None:
    items = PAIRS + [(p, a + "0") for p, a in PAIRS[:12]]   # plus surely-wrong answers
    b = encode_pairs(tok, items)
    with torch.no_grad():
        logits = partly_trained(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    correct, prob, margin = answer_verdicts(logits, b)
    greedy = [_greedy(partly_trained, tok, p, a) for p, a in items]
    assert correct.tolist() == greedy
    assert 0 < sum(greedy) < len(items), "need both right and wrong verdicts"
    assert ((margin > 0) == correct).all()
    # prob is the product of the softmax probabilities of the answer tokens and eos
    sm = torch.softmax(logits.float(), -1)
    for i in range(len(items)):
        s, n = int(b.answer_start[i]), int(b.answer_len[i])
        expect = torch.stack([sm[i, t - 1, b.input_ids[i, t]] for t in range(s, s + n)]).prod()
        torch.testing.assert_close(prob[i], expect, rtol=1e-4, atol=1e-12)


def test_leading_dims_and_repeated_blocks(partly_trained: torch.nn.Module,
                                          tok: PreTrainedTokenizerFast) -> None:
    b = encode_pairs(tok, PAIRS[:5])
    with torch.no_grad():
        one = partly_trained(input_ids=b.input_ids, attention_mask=b.attention_mask).logits
    noisy = one + 0.5 * torch.randn(one.shape, generator=torch.Generator().manual_seed(0))
    stacked = torch.stack([one, noisy])                      # [P=2, B, T, V]
    ref = [answer_verdicts(x, b) for x in (one, noisy)]
    for got in (answer_verdicts(stacked, b), answer_verdicts(stacked.flatten(0, 1), b)):
        for k in range(3):
            assert got[k].reshape(2, 5).tolist() == [ref[0][k].tolist(), ref[1][k].tolist()]
    with pytest.raises(ValueError, match="logit rows"):
        answer_verdicts(one[:3], b)


def test_codec_and_tokenizer_give_the_same_batch(tok: PreTrainedTokenizerFast) -> None:
    assert isinstance(as_codec(tok), CharCodec) and as_codec(tok) is as_codec(tok)
    a, c = encode_pairs(tok, PAIRS), encode_pairs(CharCodec.from_tokenizer(tok), PAIRS)
    for f in ("input_ids", "attention_mask", "labels", "answer_start", "answer_len"):
        assert torch.equal(getattr(a, f), getattr(c, f))
    assert isinstance(a.to("cpu"), Batch)


def test_subword_tokenizer_without_bos_or_pad() -> None:
    """Any causal LM's tokenizer: prompt and answer tokenised apart, no bos, eos pads."""
    vocab = {"<unk>": 0, "</s>": 1, "capital": 2, "of": 3, "zorbia": 4, "?": 5, "vemlo": 6}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    words = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="</s>")
    b = encode_pairs(words, [("capital of zorbia?", "vemlo"), ("zorbia?", "")])
    assert b.input_ids.tolist() == [[2, 3, 4, 5, 6, 1], [4, 5, 1, 1, 1, 1]]
    assert b.labels.tolist() == [[-100] * 4 + [6, 1], [-100, -100, 1, -100, -100, -100]]
    assert b.attention_mask[1].tolist() == [1, 1, 1, 0, 0, 0]
