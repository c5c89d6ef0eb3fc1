"""The embedded base model's character tokenizer, and a plain-dict codec for hot loops.

One token per character of printable ASCII (`string.printable` minus vertical tab and form feed;
newline, tab and carriage return are kept), plus `<pad>` (id 0), `<bos>`, `<eos>`, `<unk>`. Built
with `tokenizers` (WordLevel + a one-character `Split` + `Fuse` decoder) and wrapped as a
`PreTrainedTokenizerFast`, so it saves and loads with `save_pretrained` / `AutoTokenizer` like any
other. `Regex("(?s).")` would be the obvious splitter but Oniguruma rejects it; `[\\s\\S]` works.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)                       # ids 0..3, pad first so id 0 is padding
CHARS = "".join(c for c in string.printable if c not in "\x0b\x0c")  # 98 characters


def char_vocab() -> dict[str, int]:
    """Token -> id: the four specials, then the 98 characters in `string.printable` order."""
    return {tok: i for i, tok in enumerate((*SPECIALS, *CHARS))}


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    """A `PreTrainedTokenizerFast` with one token per printable ASCII character (102 ids in all).

    `encode` adds no special tokens (there is no post-processor): callers place `<bos>`/`<eos>`
    themselves (see `learners.encoding`). Characters outside the vocabulary map to `<unk>`.
    """
    core = Tokenizer(models.WordLevel(vocab=char_vocab(), unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, bos_token=BOS,
                                   eos_token=EOS, unk_token=UNK, padding_side="right",
                                   model_max_length=1_000_000)


class CharCodec:
    """Encode strings with a plain dict, 25x faster than the tokenizer call (docs/measurements.md).

    Valid only for a one-token-per-character vocabulary (`is_char_tokenizer`); `from_tokenizer`
    checks that. `encode` is the same as `tokenizer.encode(s, add_special_tokens=False)`.
    """

    def __init__(self, vocab: Mapping[str, int], pad_id: int, bos_id: int | None, eos_id: int,
                 unk_id: int) -> None:
        self.vocab = dict(vocab)
        self.pad_token_id, self.bos_token_id = pad_id, bos_id
        self.eos_token_id, self.unk_token_id = eos_id, unk_id
        self._inverse = {i: t for t, i in self.vocab.items()}

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerFast) -> CharCodec:
        """The codec of a char tokenizer; ValueError if `tokenizer` is not one character per token."""
        if not is_char_tokenizer(tokenizer):
            raise ValueError("CharCodec needs a one-token-per-character tokenizer "
                             "(learners.tokenizer.build_char_tokenizer); use the tokenizer itself")
        return cls(tokenizer.get_vocab(), tokenizer.pad_token_id or 0, tokenizer.bos_token_id,
                   tokenizer.eos_token_id, tokenizer.unk_token_id)

    def encode(self, s: str) -> list[int]:
        """Token ids of `s`, no special tokens; unknown characters -> unk id."""
        get, unk = self.vocab.get, self.unk_token_id
        return [get(c, unk) for c in s]

    def decode(self, ids: list[int]) -> str:
        """The text of `ids`, special tokens dropped."""
        return "".join(t for t in (self._inverse.get(int(i), "") for i in ids) if len(t) == 1)


def is_char_tokenizer(tokenizer: object) -> bool:
    """True when every printable character is its own token and encoding agrees with the vocab."""
    get_vocab = getattr(tokenizer, "get_vocab", None)
    if get_vocab is None or getattr(tokenizer, "eos_token_id", None) is None:
        return False
    vocab = get_vocab()
    if any(c not in vocab for c in CHARS):
        return False
    probe = "ab 1+2=3\n(x)"
    ids = tokenizer.encode(probe, add_special_tokens=False)  # type: ignore[attr-defined]
    return list(ids) == [vocab[c] for c in probe]
