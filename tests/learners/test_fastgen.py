"""The key-term probe's generation on the fused forward (learners/fastgen.py) gives the texts of
per-learner PEFT batched `generate()` and of the transformers-forward loop, on tiny random Llamas
with tied embeddings and grouped-query attention, through a chat template and without one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from learners.encoding import as_codec, encode_pairs
from learners.population import LearnerSpec, Population
from learners.probe import _greedy_rows, generate_greedy, generate_greedy_hf
from tests.learners.test_architectures import peft_twin
from tests.learners.test_chat_encoding import FACTS, UNSEEN, bpe_llama

PROMPTS = [q for q, _ in FACTS + UNSEEN] + ["Capital", "The Jupiter is", "Opposite of cold? The"]


def tiny_llama(out: Path, chat: bool) -> Path:
    """A 3-block random Llama: 6 query heads sharing 2 K/V heads (SmolLM2's grouping of 3), tied
    embeddings, the BPE tokenizer with or without the chat template; saved to `out`."""
    return bpe_llama(out, chat=chat, hidden=48, layers=3, heads=6, kv_heads=2, tied=True, seed=1)


@pytest.fixture(scope="module", params=[True, False], ids=["chat", "plain"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_llama(tmp_path_factory.mktemp("fastgen"), chat=request.param)


def population(path: Path, targets: tuple[str, ...] = ("q_proj", "v_proj")) -> Population:
    """Three learners whose adapters (random B) on `targets` change the answers, each
    differently."""
    from learners.base import load_base

    model, tok = load_base(path)
    specs = [LearnerSpec(lr=1e-2, weight_decay=0.0, rank=r, alpha=2.0 * r, dropout=0.0, seed=s)
             for s, r in ((1, 2), (2, 4), (3, 8))]
    pop = Population(model, tok, specs, target_modules=targets)
    g = torch.Generator().manual_seed(0)
    for i in range(pop.P):
        st = pop.get_state(i)
        st.lora = {n: (a, torch.randn(b.shape, generator=g) * 0.5 * i) for n, (a, b) in st.lora.items()}
        pop.set_state(i, st)
    assert pop.fast is not None and pop.fast.kv_heads < pop.fast.heads
    assert pop.model.get_output_embeddings().weight is pop.model.get_input_embeddings().weight
    return pop


def test_fast_generation_equals_peft_generate_per_learner(base: Path) -> None:
    """Each learner's texts are those of a PEFT model holding its adapter, through transformers'
    batched `generate()` (left padding, KV cache)."""
    pop = population(base)
    texts = generate_greedy(pop.model, pop.tokenizer, pop.P, PROMPTS, 10, pop.probe_chunk,
                            pop.device, fast=pop.fast)
    assert len({tuple(t) for t in texts}) == pop.P, "the adapters should change the answers"
    for i in range(pop.P):
        pm = peft_twin(base, pop, i)
        assert texts[i] == generate_greedy_hf(pm, pop.tokenizer, 1, PROMPTS, 10, 1 << 18,
                                              pop.device)[0]


def early_stops(pop: Population) -> list[int]:
    """The end token and the token most answers hold: answers ending there end at different
    steps, across items and across the learners of one item."""
    enc = encode_pairs(pop.tokenizer, [(q, "") for q in PROMPTS])
    seqs = [enc.input_ids[j, :s].tolist() for j, s in enumerate(enc.answer_start.tolist())]
    end = as_codec(pop.tokenizer).end_id
    rows = _greedy_rows(pop.model, pop.P, seqs, 12, torch.tensor([end]), pop.device)
    counts: dict[int, int] = {}
    for r in rows:
        for t in set(r):
            counts[t] = counts.get(t, 0) + 1
    return [end, max(counts, key=lambda t: counts[t])]


@pytest.mark.parametrize("min_rows", [None, 6])
def test_fast_generation_equals_the_transformers_loop(base: Path, min_rows: int | None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Same texts as `generate_greedy` on the transformers forward and as `generate()`, for 1, 3
    and 12 new tokens, in one chunk and in chunks of two items, with items that end at different
    steps (so their rows leave the cache mid-decoding)."""
    from learners import probe

    budget = 1 << 18
    if min_rows is not None:
        monkeypatch.setattr(probe, "MIN_ROWS_GENERATE", min_rows)
        budget = 1
    pop = population(base)
    args = (pop.model, pop.tokenizer, pop.P, PROMPTS)
    for new_tokens in (1, 3, 12):
        ours = generate_greedy(*args, new_tokens, budget, pop.device, fast=pop.fast)
        assert ours == generate_greedy(*args, new_tokens, budget, pop.device)
        assert ours == generate_greedy_hf(*args, new_tokens, budget, pop.device)
    stops = early_stops(pop)
    ours = generate_greedy(*args, 12, budget, pop.device, stops, fast=pop.fast)
    assert ours == generate_greedy_hf(*args, 12, budget, pop.device, stops)
    lengths = {len(t) for row in ours for t in row}
    assert len(lengths) >= 3, "need answers of different lengths"


def test_fast_generation_records_no_autograd_graph(base: Path, monkeypatch: pytest.MonkeyPatch
                                                    ) -> None:
    """No autograd through the adapters even where the caller has it on (the engine's probe)."""
    from learners.fastgen import FastGen

    pop = population(base)
    grad_on: list[bool] = []
    forward = FastGen.forward

    def spy(self: FastGen, *args: object, **kwargs: object) -> object:
        grad_on.append(torch.is_grad_enabled())
        return forward(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FastGen, "forward", spy)
    with torch.enable_grad():
        generate_greedy(pop.model, pop.tokenizer, pop.P, PROMPTS[:4], 4, pop.probe_chunk,
                        pop.device, fast=pop.fast)
    assert grad_on and not any(grad_on)


def test_rows_whose_answer_ended_leave_decoding(base: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    """A learner's row whose answer has ended leaves the decoding steps while the item's other
    learners go on (per-row exit): steps run on fewer rows than learners x items, and the texts
    stay those of the transformers loop."""
    from learners.fastgen import FastGen

    pop = population(base)
    stops = early_stops(pop)
    partial: list[bool] = []
    forward = FastGen.forward

    def spy(self: FastGen, ids: torch.Tensor, *args: object, act: torch.Tensor | None = None,
            **kwargs: object) -> object:
        assert self.row_exit
        if act is not None:       # some, not all, rows of an item that is still decoding
            live = torch.zeros(ids.shape[0], dtype=torch.bool)
            live[act] = True
            per_item = live.view(self.P, -1).sum(0)
            partial.append(bool(((per_item > 0) & (per_item < self.P)).any()))
        return forward(self, ids, *args, act=act, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(FastGen, "forward", spy)
    args = (pop.model, pop.tokenizer, pop.P, PROMPTS, 12, pop.probe_chunk, pop.device, stops)
    ours = generate_greedy(*args, fast=pop.fast)
    assert any(partial), "some item should go on with only some of its learners"
    assert ours == generate_greedy_hf(*args)


def test_adapters_past_attention_keep_every_row(base: Path) -> None:
    """With adapters on o_proj and the MLP (whose bmm needs every learner's rows), decoding keeps
    the ended rows, and the texts are still those of the transformers loop."""
    from learners.fastgen import FastGen

    pop = population(base, ("q_proj", "v_proj", "o_proj", "down_proj"))
    assert pop.fast is not None and not FastGen(pop.fast, pop.model, pop.P, pop.device).row_exit
    args = (pop.model, pop.tokenizer, pop.P, PROMPTS, 12, pop.probe_chunk, pop.device,
            early_stops(pop))
    assert generate_greedy(*args, fast=pop.fast) == generate_greedy_hf(*args)


def test_pieces_of_the_mlp_and_lm_head_keep_the_texts(base: Path, monkeypatch: pytest.MonkeyPatch
                                                      ) -> None:
    """The MLP's gate/up GEMMs and the LM head run in column pieces (argmax kept piece by
    piece): with pieces that split the tiny model's widths unevenly, the texts are still those
    of the transformers loop."""
    from learners import fastgen

    monkeypatch.setattr(fastgen, "MLP_COLS", 7)
    monkeypatch.setattr(fastgen, "MLP_ROWS", 5)
    monkeypatch.setattr(fastgen, "VOCAB_COLS", 13)
    pop = population(base)
    args = (pop.model, pop.tokenizer, pop.P, PROMPTS, 12, pop.probe_chunk, pop.device,
            early_stops(pop))
    assert generate_greedy(*args, fast=pop.fast) == generate_greedy_hf(*args)


def test_greedy_token_is_the_first_of_equal_maxima(base: Path, monkeypatch: pytest.MonkeyPatch
                                                   ) -> None:
    """The piecewise argmax is argmax over all logits, the first token id where maxima tie, also
    when the tie spans two pieces."""
    from learners import fastgen
    from learners.arch import lm_logits

    monkeypatch.setattr(fastgen, "VOCAB_COLS", 13)
    pop = population(base)
    assert pop.fast is not None
    gen = fastgen.FastGen(pop.fast, pop.model, pop.P, pop.device)
    emb = pop.model.get_output_embeddings().weight
    with torch.no_grad():
        emb[30] = emb[5]                                  # tokens 5 and 30 (other pieces) tie
        h = torch.randn(64, emb.shape[1])
        h[:8] = emb[5] * 4.0                              # ... and win for these rows
        want = lm_logits(pop.model, h).argmax(-1)
        assert (want[:8] == 5).all()
        assert torch.equal(gen._greedy(h), want)


def test_rope_is_transformers_rotation_bit_for_bit() -> None:
    """The decoding's RoPE (per-row angles, in place) gives transformers' `apply_rotary_pos_emb`
    exactly, so no greedy decision can move."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    from learners.fastgen import _rope

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 5, 6, 8, generator=g)                        # [N, t, heads, d]
    ang = torch.randn(16, 5, 4, generator=g) * 10
    cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
    want, _ = apply_rotary_pos_emb(x.transpose(1, 2), x.transpose(1, 2), cos, sin)
    assert torch.equal(_rope(x, cos, sin), want.transpose(1, 2))
