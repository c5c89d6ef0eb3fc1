"""The char tokenizer round-trips ASCII, maps the rest to <unk>, and the dict codec agrees with it."""

from __future__ import annotations

import random
import string

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from learners.tokenizer import CHARS, CharCodec, build_char_tokenizer, is_char_tokenizer


@pytest.fixture(scope="module")
def tok() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


def test_every_printable_char_is_one_token_and_round_trips(tok: PreTrainedTokenizerFast) -> None:
    assert set(CHARS) == set(string.printable) - {"\x0b", "\x0c"}
    ids = tok.encode(CHARS, add_special_tokens=False)
    assert len(ids) == len(CHARS) and len(set(ids)) == len(CHARS)
    assert tok.decode(ids) == CHARS
    for c in CHARS:  # alone too: whitespace is not stripped or merged
        assert tok.decode(tok.encode(c, add_special_tokens=False)) == c


def test_special_tokens(tok: PreTrainedTokenizerFast) -> None:
    assert tok.pad_token_id == 0
    specials = {tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id}
    assert len(specials) == 4 and len(tok) == 4 + len(CHARS)
    assert tok.encode("ab", add_special_tokens=False) == tok.encode("ab")  # no bos/eos added
    ids = [tok.bos_token_id, *tok.encode("x=1", add_special_tokens=False), tok.eos_token_id]
    assert tok.decode(ids, skip_special_tokens=True) == "x=1"


def test_unknown_chars_become_unk(tok: PreTrainedTokenizerFast) -> None:
    ids = tok.encode("aé\x0b€z", add_special_tokens=False)
    unk = tok.unk_token_id
    assert ids[1:4] == [unk, unk, unk] and ids[0] != unk and ids[4] != unk


def test_save_and_autotokenizer_load_round_trip(tok: PreTrainedTokenizerFast, tmp_path) -> None:
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "(12+3)*4%97=\tsort:abc\r\n"
    assert again.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert (again.pad_token_id, again.eos_token_id) == (tok.pad_token_id, tok.eos_token_id)


def test_codec_equals_tokenizer_on_random_ascii(tok: PreTrainedTokenizerFast) -> None:
    codec = CharCodec.from_tokenizer(tok)
    rng = random.Random(0)
    for _ in range(200):
        s = "".join(rng.choice(CHARS + "é€") for _ in range(rng.randrange(0, 30)))
        assert codec.encode(s) == tok.encode(s, add_special_tokens=False)
        assert codec.decode(codec.encode(s)) == s.replace("é", "").replace("€", "")
    assert codec.eos_token_id == tok.eos_token_id and codec.pad_token_id == 0


def test_codec_refuses_a_subword_tokenizer() -> None:
    vocab = {"<unk>": 0, "<eos>": 1, "hello": 2, "world": 3}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    words = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>")
    assert not is_char_tokenizer(words)
    with pytest.raises(ValueError, match="one-token-per-character"):
        CharCodec.from_tokenizer(words)
