"""(prompt, answer) pairs to tensors, and exact-match verdicts from teacher-forced logits.

Shared by training, probing and pretraining. A sequence is the prompt as the model expects it, the
answer, and the token that ends the answer, right-padded to the batch's LONGEST sequence (padding
every batch to a fixed 32 tokens made probes 2-3x slower, docs/measurements.md):

- a tokenizer with a chat template: the template's rendering of one user turn (the prompt) with the
  generation prompt (`<|im_start|>assistant\n` ...), then the answer, then the template's end-of-turn
  token (`<|im_end|>`, `<|eot_id|>`; the eos when the template writes none);
- otherwise `<bos> prompt answer <eos>` (no `<bos>` when the tokenizer has none).

Subword (BPE) boundaries: the answer's tokens are those of `rendered prompt + answer` tokenised
TOGETHER past the rendered prompt's own tokens, so an answer whose first token would merge with a
space or newline is tokenised as the model saw such text in pretraining. When the joint
tokenisation does not start with the prompt's tokens (a merge across the boundary) the answer is
tokenised alone after them: generation always starts from the prompt's own tokens, so that is the
only sequence greedy decoding can produce from there. The char codec is unaffected (one token per
character).

Labels follow the Hugging Face causal-LM convention: `labels` is `input_ids` with every position
that is not an answer token or the final eos set to -100, NOT shifted; the model shifts internally
(logits at t predict labels at t+1), so `model(input_ids, attention_mask, labels=labels).loss` is the
mean cross-entropy over the answer tokens and eos.

Greedy decoding reproduces the answer exactly (its tokens, then the end-of-turn / eos token) iff,
teacher-forced, every answer token and the end token is the argmax of the logits one position
before it; `answer_verdicts` computes that verdict, the probability of the answer and the logit
margin from ONE forward pass. (Greedy decoding that spells the answer with OTHER tokens, or ends it
with the eos where the template writes a distinct end-of-turn token, counts as wrong in both.)
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from learners.tokenizer import CharCodec, is_char_tokenizer

Pair = tuple[str, str]
IGNORE = -100  # the label value torch's cross_entropy and HF models skip


class Codec(Protocol):
    """What `encode_pairs` needs: ids of a string without special tokens, and the special ids."""

    @property
    def pad_token_id(self) -> int | None: ...
    @property
    def bos_token_id(self) -> int | None: ...
    @property
    def eos_token_id(self) -> int | None: ...

    def encode(self, s: str) -> list[int]: ...


class TokenizerCodec:
    """A codec over any Hugging Face tokenizer (subword ones too, with or without a chat template),
    memoising the strings and pairs it has seen. `encode_pair` lays out one sequence (module doc).
    """

    MAX_CACHE = 1 << 16  # curricula repeat a few thousand distinct strings; bound memory anyway

    def __init__(self, tokenizer: object) -> None:
        self.tokenizer = tokenizer
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is None:
            raise ValueError("the tokenizer has no eos token; answers end with eos, so set "
                             "tokenizer.eos_token (e.g. in tokenizer_config.json)")
        self.eos_token_id: int | None = eos
        self.bos_token_id: int | None = getattr(tokenizer, "bos_token_id", None)
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_token_id: int | None = eos if pad is None else pad
        self._cache: dict[str, list[int]] = {}
        self._pairs: dict[Pair, tuple[list[int], int]] = {}
        template = getattr(tokenizer, "chat_template", None)
        self.chat = isinstance(template, str) and bool(template.strip())
        self.end_id: int = self._end_of_turn() if self.chat else eos
        self.stop_ids: tuple[int, ...] = tuple(dict.fromkeys((self.end_id, eos)))

    def encode(self, s: str) -> list[int]:
        """Token ids of `s` without special tokens added (special tokens IN `s` are parsed)."""
        got = self._cache.get(s)
        if got is None:
            got = list(self.tokenizer.encode(s, add_special_tokens=False))  # type: ignore[attr-defined]
            if len(self._cache) >= self.MAX_CACHE:
                self._cache.clear()
            self._cache[s] = got
        return got

    def render(self, prompt: str) -> str:
        """The prompt as the model expects it: one user turn through the chat template, ending
        with the generation prompt; the prompt itself without a template."""
        if not self.chat:
            return prompt
        return str(self.tokenizer.apply_chat_template(  # type: ignore[attr-defined]
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True))

    def _end_of_turn(self) -> int:
        """The token the template writes right after an assistant answer, if it is a special
        token (`<|im_end|>`, `<|eot_id|>`, `<end_of_turn>`), else the eos."""
        eos = int(self.eos_token_id)  # type: ignore[arg-type]
        try:
            head = self.render("Q")
            full = str(self.tokenizer.apply_chat_template(  # type: ignore[attr-defined]
                [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A1"}],
                tokenize=False))
        except Exception:  # noqa: BLE001 (a template that cannot render a plain turn: use eos)
            return eos
        if not full.startswith(head + "A1"):
            return eos
        tail = self.encode(full[len(head) + 2:])
        special = set(getattr(self.tokenizer, "all_special_ids", ()) or ())
        return tail[0] if tail and tail[0] in special else eos

    def encode_pair(self, prompt: str, answer: str) -> tuple[list[int], int]:
        """(ids, start): the whole sequence (rendered prompt, answer, end token) and the position of
        the first answer token; ids[start:] are the labelled tokens."""
        key = (prompt, answer)
        got = self._pairs.get(key)
        if got is not None:
            return got
        text = self.render(prompt)
        head = [] if self.chat or self.bos_token_id is None else [self.bos_token_id]
        p = head + self.encode(text)
        a: list[int] = []
        if answer:
            joint = head + list(self.tokenizer.encode(  # type: ignore[attr-defined]
                text + answer, add_special_tokens=False))
            a = joint[len(p):] if joint[:len(p)] == p else self.encode(answer)
        got = (p + a + [self.end_id], len(p))
        if len(self._pairs) >= self.MAX_CACHE:
            self._pairs.clear()
        self._pairs[key] = got
        return got


def pair_ids(codec: Codec, prompt: str, answer: str) -> tuple[list[int], int]:
    """(ids, start) of one sequence: the codec's own layout (`TokenizerCodec.encode_pair`), else
    `<bos> prompt answer <eos>` (the char codec); ids[start:] are the answer tokens and the end."""
    encode_pair = getattr(codec, "encode_pair", None)
    if encode_pair is not None:
        return encode_pair(prompt, answer)  # type: ignore[no-any-return]
    head = [] if codec.bos_token_id is None else [codec.bos_token_id]
    p = head + codec.encode(prompt)
    return p + codec.encode(answer) + [codec.eos_token_id], len(p)  # type: ignore[list-item]


def stop_ids(codec_or_tokenizer: object) -> list[int]:
    """The tokens that end an answer in generation: the end-of-turn token and the eos."""
    codec = as_codec(codec_or_tokenizer)
    return list(getattr(codec, "stop_ids", (codec.eos_token_id,)))


_CODECS: weakref.WeakKeyDictionary[object, Codec] = weakref.WeakKeyDictionary()


def as_codec(codec_or_tokenizer: object) -> Codec:
    """A fast codec for a tokenizer (a `CharCodec` for char tokenizers), cached per tokenizer."""
    if isinstance(codec_or_tokenizer, CharCodec | TokenizerCodec):
        return codec_or_tokenizer  # type: ignore[return-value]
    try:
        return _CODECS[codec_or_tokenizer]
    except (KeyError, TypeError):
        pass
    codec: Codec
    if is_char_tokenizer(codec_or_tokenizer):
        codec = CharCodec.from_tokenizer(codec_or_tokenizer)  # type: ignore[arg-type,assignment]
    else:
        codec = TokenizerCodec(codec_or_tokenizer)
    try:
        _CODECS[codec_or_tokenizer] = codec
    except TypeError:  # not weak-referenceable: no cache, still correct
        pass
    return codec


@dataclass
class Batch:
    """Right-padded (prompt, answer) batch. All tensors `[B, T]` long unless stated.

    input_ids:      `<bos> prompt answer <eos> <pad>...` (a chat template's layout: module doc)
    attention_mask: 1 on real tokens, 0 on padding.
    labels:         input_ids on the answer tokens and the end token (eos / end of turn), -100
                    elsewhere (unshifted, HF style).
    answer_start:   `[B]` position of the first answer token (of eos for an empty answer).
    answer_len:     `[B]` number of labelled tokens = answer tokens + 1 (the end token).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    answer_start: torch.Tensor
    answer_len: torch.Tensor

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: str | torch.device) -> Batch:
        """The same batch on `device`."""
        return Batch(*(t.to(device) for t in (self.input_ids, self.attention_mask, self.labels,
                                               self.answer_start, self.answer_len)))


def encode_pairs(codec_or_tokenizer: object, pairs: Sequence[Pair],
                 device: str | torch.device = "cpu") -> Batch:
    """Encode `pairs` as one right-padded batch `[B, T]`, T = the longest sequence (see Batch)."""
    codec = as_codec(codec_or_tokenizer)
    if codec.eos_token_id is None:
        raise ValueError("encode_pairs needs an eos token id (answers end with eos)")
    pad = codec.pad_token_id or 0
    rows, starts, lens = [], [], []
    for prompt, answer in pairs:
        seq, start = pair_ids(codec, prompt, answer)
        rows.append(seq)
        starts.append(start)
        lens.append(len(seq) - start)
    T = max((len(r) for r in rows), default=0)
    # one tensor call over padded lists: a tensor per row made 512 pairs 9x slower (60 vs 7 ms)
    ids = torch.tensor([r + [pad] * (T - len(r)) for r in rows], dtype=torch.long).reshape(len(rows), T)
    pos = torch.arange(T)
    end = torch.tensor([len(r) for r in rows], dtype=torch.long)[:, None]
    real = pos < end                                                      # [B, T]
    scored = real & (pos >= torch.tensor(starts, dtype=torch.long)[:, None])
    mask = real.long()
    labels = torch.where(scored, ids, torch.full_like(ids, IGNORE))
    out = Batch(ids, mask, labels, torch.tensor(starts, dtype=torch.long),
                torch.tensor(lens, dtype=torch.long))
    return out if str(device) == "cpu" else out.to(device)


def predicting(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The positions of a right-padded [N, T] batch that predict a label, cut to the leading
    columns a causal forward needs to compute them.

    Returns sel [N, L] (position t of row n predicts a label) and target [N, L] (the token each
    position predicts: labels shifted by one, IGNORE past the end), L = 1 + the last predicting
    position. Later columns (the final eos, padding) reach no label, and with causal attention no
    earlier position sees them, so a forward over ids[:, :L] gives the same hidden states at sel.
    At the probes' and the benchmark's 32 tokens a row this drops one column in 32."""
    target = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)   # [N, T]
    sel = target != IGNORE
    cols = sel.any(0).nonzero()
    L = int(cols[-1, 0]) + 1 if len(cols) else 1
    return sel[:, :L], target[:, :L]


def verdicts_at(lg: torch.Tensor, target: torch.Tensor, sel: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`answer_verdicts` from the logits at the scored positions only: lg [K, V] are the logits at
    the K positions where sel [R, T-1] is set (row-major), target [R, T-1] the next tokens.
    Returns correct, prob, margin, each [R]."""
    R = sel.shape[0]
    tgt = target[sel]                                         # [K]
    row = torch.arange(R, device=lg.device)[:, None].expand_as(sel)[sel]  # [K] owner row
    tl = lg.gather(1, tgt[:, None])[:, 0]                     # [K] logit of the target
    other = lg.scatter(1, tgt[:, None], float("-inf")).max(1).values
    hit = (lg.argmax(1) == tgt).float()
    logp = tl - torch.logsumexp(lg, 1)
    zeros = torch.zeros(R, device=lg.device)
    correct = zeros.index_add(0, row, 1.0 - hit) == 0         # no miss among the row's targets
    prob = zeros.index_add(0, row, logp).exp()
    margin = torch.full((R,), float("inf"), device=lg.device).scatter_reduce(
        0, row, tl - other, reduce="amin")
    return correct, prob, margin


def answer_verdicts(logits: torch.Tensor, batch: Batch
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact-match verdicts from teacher-forced logits of `batch` (no gradient needed).

    logits: `[..., T, V]` whose leading dims flatten to R = k*B rows, row r being item r % B of
    `batch` (e.g. `[P*B, T, V]` with the batch repeated once per learner, or `[P, B, T, V]`).
    Returns, each shaped like the leading dims:
      correct: bool, every answer token and eos is the argmax (ties: the first index, as greedy
               `generate()` picks) -> exactly greedy decoding's verdict.
      prob:    float, exp(sum log softmax(target)) over answer tokens + eos.
      margin:  float, min over answer tokens + eos of logit(target) - max other logit.
    """
    lead, (T, V) = logits.shape[:-2], logits.shape[-2:]
    flat = logits.reshape(-1, T, V)
    R, B = flat.shape[0], len(batch)
    if B == 0 or R % B:
        raise ValueError(f"answer_verdicts got {R} logit rows for a batch of {B}; "
                         "pass logits [k*B, T, V] for the same batch repeated k times")
    # logits at t predict t+1: sel, target [R, L], L <= T-1
    sel, target = predicting(batch.labels.to(flat.device).repeat(R // B, 1))
    lg = flat[:, :sel.shape[1]][sel].float()                  # [K, V] only the scored positions
    correct, prob, margin = verdicts_at(lg, target, sel)
    return correct.reshape(lead), prob.reshape(lead), margin.reshape(lead)
