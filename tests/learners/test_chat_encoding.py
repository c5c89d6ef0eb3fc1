"""Prompts as a real model expects them: a byte-level BPE tokenizer with a chat template (built in the
session), sequences laid out as the template renders them, answers tokenised across the BPE
boundary, and the teacher-forced verdict equal to greedy generate()'s on a tiny random model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from learners.encoding import TokenizerCodec, as_codec, encode_pairs, stop_ids
from learners.population import LearnerSpec, Population
from learners.probe import generate_greedy, generate_greedy_hf

# SmolLM2's template, with a shorter default system turn
TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nBe brief.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
FACTS = [("Capital of France?", "Paris"), ("Capital of Italy?", "Rome"),
         ("Largest planet?", "Jupiter"), ("Colour of the sky?", "blue"),
         ("Opposite of hot?", "cold"), ("Metal of a gold ring?", "gold"),
         ("Twelve plus thirty?", "42"), ("Author of Hamlet?", "Shakespeare")]
UNSEEN = [("Capital of Spain?", "Madrid"), ("Colour of grass?", "green"),
          ("Opposite of up?", "down"), ("Largest ocean?", "Pacific")]
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def bpe_tokenizer(chat: bool) -> PreTrainedTokenizerFast:
    """A byte-level BPE (GPT-2 style) of a few hundred tokens trained on the items' words."""
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    words = " ".join(f"{q} {a}. The {a} is {a}" for q, a in FACTS + UNSEEN)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=[
        "<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator([words, "system user assistant Be brief."] * 5, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>",
                                  eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  unk_token="<|endoftext|>")
    if chat:
        tok.chat_template = TEMPLATE
    return tok


def bpe_llama(out: Path, *, chat: bool, hidden: int, layers: int, heads: int, kv_heads: int,
              tied: bool, seed: int) -> Path:
    """A tiny random Llama with the BPE tokenizer (with or without the chat template), saved."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = bpe_tokenizer(chat=chat)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=kv_heads, max_position_embeddings=128,
                         tie_word_embeddings=tied, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama (grouped-query attention) with the chat BPE tokenizer, saved."""
    return bpe_llama(tmp_path_factory.mktemp("chat_base"), chat=True, hidden=32, layers=2,
                     heads=4, kv_heads=2, tied=False, seed=0)


def test_sequence_is_the_template_rendering_of_prompt_and_answer() -> None:
    tok = bpe_tokenizer(chat=True)
    codec = as_codec(tok)
    assert isinstance(codec, TokenizerCodec) and codec.end_id == tok.convert_tokens_to_ids("<|im_end|>")
    prompt, answer = FACTS[0]
    b = encode_pairs(tok, [(prompt, answer), FACTS[6]])
    full = tok.apply_chat_template([{"role": "user", "content": prompt},
                                    {"role": "assistant", "content": answer}], tokenize=False)
    n = int(b.attention_mask[0].sum())
    ids = b.input_ids[0, :n].tolist()
    # the template's text up to its end-of-turn token (the newline after it ends the turn, unscored)
    assert tok.decode(ids) == full[:-1] and full.endswith("<|im_end|>\n")
    start = int(b.answer_start[0])
    assert tok.decode(ids[:start]) == tok.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    assert tok.decode(ids[start:-1]) == answer and ids[-1] == codec.end_id
    assert b.labels[0, :start].eq(-100).all() and b.labels[0, start:n].tolist() == ids[start:]
    assert stop_ids(tok) == [codec.end_id]          # eos and end of turn are one token here


def test_answer_tokens_cross_the_bpe_boundary_as_tokenised_together() -> None:
    tok = bpe_tokenizer(chat=False)
    codec = as_codec(tok)
    assert not getattr(codec, "chat", True)
    # " Paris" after a space-less prompt: the joint tokenisation ("Ġ"-prefixed word) is used
    b = encode_pairs(tok, [("Capital of France?", " Paris")])
    ids, start = b.input_ids[0].tolist(), int(b.answer_start[0])
    joint = tok.encode("Capital of France? Paris", add_special_tokens=False)
    assert ids == [tok.bos_token_id] + joint + [tok.eos_token_id]
    assert ids[start:-1] == joint[len(tok.encode("Capital of France?", add_special_tokens=False)):]
    assert tok.decode(ids[start:-1]) == " Paris"
    # a prompt that stops inside a merged token: the prompt keeps its own tokens (generation
    # starts from them) and the answer is tokenised alone, still spelling the answer
    word = next(t for t in sorted(tok.get_vocab()) if t.isalpha() and len(t) >= 4
                and len(tok.encode(t, add_special_tokens=False)) == 1)
    prompt, answer = word[:2], word[2:]
    b = encode_pairs(tok, [(prompt, answer)])
    ids, start = b.input_ids[0].tolist(), int(b.answer_start[0])
    assert ids[1:start] == tok.encode(prompt, add_special_tokens=False)
    assert tok.decode(ids[start:-1]) == answer


@pytest.fixture(scope="module")
def chat_population(chat_base: Path) -> Population:
    """Two learners part-way through memorising FACTS through the chat template."""
    from learners.base import load_base

    model, tok = load_base(chat_base)
    specs = [LearnerSpec(lr=3e-2, weight_decay=0.0, rank=8, alpha=16.0, dropout=0.0, seed=s)
             for s in (1, 2)]
    pop = Population(model, tok, specs, target_modules=ALL_LINEAR)
    for t in range(120):
        pop.train_step([FACTS, FACTS[t % 4:t % 4 + 4]])
        if t >= 20 and t % 5 == 0 and 0 < pop.probe(FACTS).correct.sum() < 2 * len(FACTS) - 2:
            break
    return pop


def test_teacher_forced_verdict_equals_greedy_generate_with_a_chat_template(
        chat_population: Population) -> None:
    items = FACTS + UNSEEN
    fast = chat_population.probe(items)
    slow = chat_population.probe_generate(items)
    assert fast.correct.any() and not fast.correct.all(), "need a mix of right and wrong answers"
    np.testing.assert_array_equal(fast.correct, slow.correct)
    np.testing.assert_allclose(fast.prob[slow.correct], slow.prob[slow.correct], rtol=1e-4)
    # the key-term path: batched greedy generation through the template, cut at the end of turn,
    # gives the answer text exactly where the teacher-forced verdict says greedy decoding does
    texts = generate_greedy(chat_population.model, chat_population.tokenizer, 2,
                            [q for q, _ in items], 8, chat_population.probe_chunk,
                            chat_population.device)
    for p in range(2):
        for j, (_, answer) in enumerate(items):
            assert (texts[p][j] == answer) == bool(fast.correct[p, j]), (p, items[j], texts[p][j])


@pytest.mark.parametrize("which", ["generate_greedy", "generate_greedy_hf"])
def test_greedy_generation_records_no_autograd_graph(chat_population: Population, which: str) -> None:
    """Both key-term generators run without autograd even where the caller has it on (the
    engine's probe): a graph through the learners' adapters kept every decoding step's
    activations, 23 GB for 8 SmolLM2 learners x 16 questions, until the process was killed."""
    import torch

    from learners import probe

    grad_on: list[bool] = []
    hook = chat_population.model.register_forward_pre_hook(
        lambda *_: grad_on.append(torch.is_grad_enabled()))
    try:
        with torch.enable_grad():
            getattr(probe, which)(chat_population.model, chat_population.tokenizer, 2,
                                  [q for q, _ in FACTS], 4, chat_population.probe_chunk,
                                  chat_population.device)
    finally:
        hook.remove()
    assert grad_on and not any(grad_on)


@pytest.mark.parametrize("min_rows", [None, 6])
def test_greedy_generation_equals_transformers_generate(chat_base: Path, min_rows: int | None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The key-term probe's own decoding loop (the template's system turn computed once per
    learner, finished items dropped from the batch, chunks of like-length prompts) gives
    transformers' `generate()` texts, for learners whose answers end at different steps, in one
    chunk and in chunks of two items."""
    from learners import probe
    from learners.base import load_base

    budget = 1 << 18
    if min_rows is not None:     # the floor of rows per chunk lowered: 6 rows = 2 items a chunk
        monkeypatch.setattr(probe, "MIN_ROWS_GENERATE", min_rows)
        budget = 1

    model, tok = load_base(chat_base)
    specs = [LearnerSpec(lr=3e-2, weight_decay=0.0, rank=8, alpha=16.0, dropout=0.0, seed=s)
             for s in (1, 2, 3)]
    pop = Population(model, tok, specs, target_modules=ALL_LINEAR)
    for t in range(12):       # learner 0 part-trained, 1 barely, 2 untrained (random answers)
        pop.train_step([FACTS, FACTS[:2], []], active=[True, t < 2, False])
    prompts = [q for q, _ in FACTS + UNSEEN] + ["Capital", "The Jupiter is"]
    for new_tokens in (1, 3, 12):
        ours = generate_greedy(pop.model, tok, 3, prompts, new_tokens, budget, pop.device)
        assert ours == generate_greedy_hf(pop.model, tok, 3, prompts, new_tokens, budget,
                                          pop.device)
    # the untrained learner rambles: also end answers at frequent tokens of its, so items end
    # at different steps for every learner and leave the batch while others still run
    import torch

    from learners.probe import _greedy_rows

    enc = encode_pairs(tok, [(q, "") for q in prompts])
    seqs = [enc.input_ids[j, :s].tolist() for j, s in enumerate(enc.answer_start.tolist())]
    end = as_codec(tok).end_id
    rows = _greedy_rows(pop.model, 3, seqs, 12, torch.tensor([end]), pop.device)
    rambles = rows[2 * len(seqs):]

    def first_steps(t: int) -> set[int]:   # the step at which each item would end at token t
        return {r.index(t) if t in r else 12 for r in rambles}

    stops = [end, max({t for r in rambles for t in r}, key=lambda t: len(first_steps(t)))]
    ours = generate_greedy(pop.model, tok, 3, prompts, 12, budget, pop.device, stops)
    assert ours == generate_greedy_hf(pop.model, tok, 3, prompts, 12, budget, pop.device, stops)
    rows = _greedy_rows(pop.model, 3, seqs, 12, torch.tensor(stops), pop.device)
    steps = [max(len(rows[p * len(seqs) + j]) for p in range(3)) for j in range(len(seqs))]
    assert len(set(steps)) >= 2 and min(steps) < 11, "need items ending at different steps"


def test_passes_hold_at_most_group_tokens_real_tokens_with_a_chat_template(chat_base: Path) -> None:
    """A step's learners go through the forward in passes of at most `group_tokens` tokens (the
    memory bound of a big population), counted as encoded: the chat template's system turn and
    tags included, which a count of characters missed (SmolLM2's prompts: ~2.4x more tokens)."""
    from learners.base import load_base

    model, tok = load_base(chat_base)
    specs = [LearnerSpec(lr=1e-3, weight_decay=0.0, rank=4, alpha=8.0, dropout=0.0, seed=s)
             for s in range(8)]
    pop = Population(model, tok, specs, group_tokens=160)
    batches = [FACTS[p % 4:p % 4 + 3] for p in range(8)]
    T = encode_pairs(tok, [x for b in batches for x in b]).input_ids.shape[1]
    chars = max(len(q) + len(a) for b in batches for q, a in b) + 2
    assert pop.tokens(batches) == T > chars            # the template outweighs the characters
    fit = 160 // (3 * T)                               # learners that fit in one pass
    assert 1 <= fit < 8
    size = pop._group(batches)
    assert size <= fit and -(-8 // size) == -(-8 // fit)   # as few passes as fit, evened out
    seen: list[int] = []
    losses = pop.losses
    pop.losses = lambda b, span=None: seen.append(span[1] - span[0]) or losses(b, span)  # type: ignore[method-assign,assignment]
    assert np.isfinite(pop.train_step(batches)).all()
    assert sum(seen) == 8 and len(seen) == -(-8 // fit) and max(seen) == size <= fit
