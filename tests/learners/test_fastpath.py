"""The fused Llama forward equals the transformers forward it replaces (which equals PEFT's, see
test_population.py): losses, gradients and training, for every kind of adapter placement."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from learners import fastpath, kernels
from learners.encoding import predicting
from learners.fastpath import FastLlama
from learners.population import LearnerSpec, Population

PAIRS = [("12+30=", "42"), ("7+8=", "15"), ("1+1=", "2"), ("33+44=", "77"), ("9+90=", "99"),
         ("5+5=", "10"), ("61+2=", "63"), ("0+0=", "0")]
# prompts that start alike (as a chat template's system turn makes them): the fused forward runs
# the common leading tokens once per learner
SHARED = [("1000+2000+3000+" + p, a) for p, a in PAIRS]

# (population targets, per-learner extra targets): q/v only lets the last block run on labelled
# rows; o_proj, MLP and k_proj adapters take the other branches of the fused forward (an adapter
# on any MLP module, down_proj alone included, takes the modules' path for the MLP)
PLACEMENTS = {
    "q_v": (("q_proj", "v_proj"), [None, None, ("v_proj",)]),
    "q_v_o": (("q_proj", "v_proj"), [None, ("q_proj", "o_proj"), None]),
    "q_v_down": (("q_proj", "v_proj", "down_proj"), [None, ("q_proj",), None]),
    "k_mlp": (("k_proj", "gate_proj", "up_proj", "down_proj"), [None, ("down_proj",), ("up_proj",)]),
    "v": (("v_proj",), [None, None, None]),   # the last block's q GEMM on the queried rows alone
}


@pytest.fixture(scope="module")
def base(tiny_base):
    from learners.base import load_base

    model, tok = load_base(tiny_base)
    return model.float().eval(), tok


def specs(extra: list, dropout: float = 0.0) -> list[LearnerSpec]:
    return [LearnerSpec(lr=1e-2 * (k + 1), weight_decay=0.1, rank=k + 2, alpha=4.0, dropout=dropout,
                        seed=k + 1, target_modules=t) for k, t in enumerate(extra)]


def pair_of_populations(base, placement: str, dropout: float = 0.0) -> tuple[Population, Population]:
    model, tok = base
    targets, extra = PLACEMENTS[placement]
    fused = Population(model, tok, specs(extra, dropout), target_modules=targets)
    plain = Population(model, tok, specs(extra, dropout), target_modules=targets, fused=False)
    g = torch.Generator().manual_seed(0)
    for i in range(fused.P):  # non-zero B so A gets gradients too
        st = fused.get_state(i)
        st.lora = {n: (a, torch.randn(b.shape, generator=g) * 0.3) for n, (a, b) in st.lora.items()}
        fused.set_state(i, st)
        plain.set_state(i, st)
    return fused, plain


def test_supports_llama_and_shares_the_base_weights(base) -> None:
    fused, plain = pair_of_populations(base, "q_v")
    assert fused.fast is not None and plain.fast is None
    assert fused.fast.trim_tail            # q/v only: the last block runs on labelled rows
    attn = fused.model.model.layers[0].self_attn
    qkv = fused.fast.blocks[0].w_qkv
    assert attn.k_proj.weight.data_ptr() == qkv[attn.q_proj.out_features:].data_ptr()
    assert_close(attn.k_proj.weight, plain.model.model.layers[0].self_attn.k_proj.weight)
    assert not pair_of_populations(base, "q_v_o")[0].fast.trim_tail


@pytest.mark.parametrize("c_kernels", [True, False])  # learners/kernels.c, and torch ops alone
@pytest.mark.parametrize("chunk", [512, 13])  # the MLP's rows in one chunk, and in uneven chunks
@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_losses_and_gradients_equal_the_transformers_forward(base, placement, chunk, c_kernels,
                                                             monkeypatch) -> None:
    monkeypatch.setattr(fastpath._MLP, "CHUNK", chunk)
    if not c_kernels:
        monkeypatch.setattr(kernels, "usable", lambda *tensors: False)
    else:
        assert kernels.library() is not None, "no C compiler: the fused kernels are untested"
    assert_losses_and_gradients_equal(*pair_of_populations(base, placement))


def assert_losses_and_gradients_equal(fused: Population, plain: Population,
                                      pairs: list = PAIRS) -> None:
    batches = [pairs[:3], pairs[2:7], pairs[5:]]   # different lengths and batch sizes per learner
    lf, lp = fused.losses(batches), plain.losses(batches)
    assert_close(lf, lp, atol=1e-5, rtol=1e-5)
    lf.sum().backward()
    lp.sum().backward()
    for name in fused.names:
        for part in ("lora_A", "lora_B"):
            gp = getattr(plain.layers[name], part).grad
            assert gp is not None and float(gp.abs().sum()) > 0
            assert_close(getattr(fused.layers[name], part).grad, gp, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("c_kernels", [True, False])
@pytest.mark.parametrize("placement", sorted(PLACEMENTS))
def test_a_shared_prompt_prefix_runs_once_per_learner_with_equal_gradients(base, placement,
                                                                         c_kernels, monkeypatch) -> None:
    if not c_kernels:
        monkeypatch.setattr(kernels, "usable", lambda *tensors: False)
    fused, plain = pair_of_populations(base, placement)
    ids, _, labels, B = fused._stack([SHARED[:3], SHARED[2:7], SHARED[5:]])
    sel, _ = predicting(labels)
    assert fused.fast is not None and fused.fast.shared_prefix(ids[:, :sel.shape[1]], sel, 3) >= 15
    assert_losses_and_gradients_equal(fused, plain, SHARED)


@pytest.mark.parametrize("placement,dropout,pairs", [
    ("q_v", 0.0, PAIRS), ("q_v", 0.3, PAIRS), ("k_mlp", 0.3, PAIRS),
    ("q_v", 0.0, SHARED), ("q_v", 0.3, SHARED)])   # dropout: the rows' prefixes differ, none shared
def test_training_steps_equal_the_transformers_forward(base, placement, dropout, pairs) -> None:
    fused, plain = pair_of_populations(base, placement, dropout)
    for t in range(4):
        batches = [pairs[t:t + 3], pairs[t + 1:t + 4], pairs[:2]]
        assert_close(fused.train_step(batches), plain.train_step(batches), atol=1e-5, rtol=1e-5)
    for i in range(fused.P):
        a, b = fused.get_state(i), plain.get_state(i)
        for name in a.lora:
            assert_close(a.lora[name][0], b.lora[name][0], atol=1e-5, rtol=1e-4)
            assert_close(a.lora[name][1], b.lora[name][1], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("placement", ["q_v", "q_v_down"])
def test_probes_equal_the_transformers_forward(base, placement) -> None:
    fused, plain = pair_of_populations(base, placement)
    items = PAIRS + [("123+1=", "124"), ("5+", "5")]  # answers of other lengths, a 1-token one
    a, b = fused.probe(items), plain.probe(items)
    assert (a.correct == b.correct).all()
    assert_close(torch.from_numpy(a.prob), torch.from_numpy(b.prob), atol=1e-5, rtol=1e-4)
    assert_close(torch.from_numpy(a.margin), torch.from_numpy(b.margin), atol=1e-4, rtol=1e-4)


def test_bfloat16_bases_norm_and_softmax_in_float32_like_transformers(base) -> None:
    model, tok = base
    half = copy.deepcopy(model).to(torch.bfloat16)
    targets, extra = PLACEMENTS["q_v"]
    fused = Population(half, tok, specs(extra), target_modules=targets)
    plain = Population(half, tok, specs(extra), target_modules=targets, fused=False)
    batches = [PAIRS[:3], PAIRS[2:7], PAIRS[5:]]
    lf, lp = fused.losses(batches), plain.losses(batches)
    assert lf.dtype == lp.dtype == torch.float32 and bool(torch.isfinite(lf).all())
    assert_close(lf, lp, atol=5e-3, rtol=1e-3)


def test_other_architectures_take_the_transformers_path() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=20, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    assert not FastLlama.supports(gpt2)


def test_first_block_reads_a_per_token_table_when_the_batch_outnumbers_the_vocabulary(base) -> None:
    fused, _ = pair_of_populations(base, "q_v")
    fast = fused.fast
    block, vocab = fast.blocks[0], fast.embed.weight.shape[0]
    ids = torch.randint(0, vocab, (vocab // 4 + 1, 4), generator=torch.Generator().manual_seed(3))
    x, qkv = fast._first_block_inputs(block, ids)            # more tokens than vocabulary rows
    ref = fast._norm(block.ln1, fast.embed(ids).view(ids.numel(), -1))
    assert qkv is not None
    assert_close(x, ref)
    assert_close(qkv, ref @ block.w_qkv.t())
    x, qkv = fast._first_block_inputs(block, ids[:2])        # fewer: the norm and the GEMM
    assert qkv is None
    assert_close(x, ref[:8])


@pytest.mark.parametrize("pairs", [PAIRS, SHARED])
@pytest.mark.parametrize("hidden,heads,kv_heads", [(32, 4, 2), (192, 3, 1)])  # head dims 8, 64
@pytest.mark.parametrize("c_kernels", [True, False])
def test_grouped_query_attention_equals_the_transformers_forward(base, c_kernels, hidden, heads,
                                                                 kv_heads, pairs, monkeypatch) -> None:
    """Bases with fewer key/value heads than query heads (as many local Llama checkpoints have;
    SmolLM2: 9 and 3 of dimension 64), with and without a shared prompt prefix."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if not c_kernels:
        monkeypatch.setattr(kernels, "usable", lambda *tensors: False)
    _, tok = base
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=48,
                      num_hidden_layers=2, num_attention_heads=heads, num_key_value_heads=kv_heads,
                      max_position_embeddings=64, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    fused, plain = pair_of_populations((model, tok), "q_v")
    assert fused.fast is not None and fused.fast.kv_heads == kv_heads
    assert_losses_and_gradients_equal(fused, plain, pairs)


@pytest.mark.parametrize("placement", ["q_v", "q_v_o"])
def test_attention_biases_equal_the_transformers_forward(base, placement) -> None:
    """Llama's attention_bias (q/k/v and o_proj biases; Qwen2 has the q/k/v ones): the fused
    GEMMs add them, the unadapted o_proj's addmm too."""
    from transformers import LlamaConfig, LlamaForCausalLM

    _, tok = base
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      attention_bias=True, attn_implementation="eager")
    model = LlamaForCausalLM(cfg).eval()
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            p.data.normal_(0.0, 0.5)
    fused, plain = pair_of_populations((model, tok), placement)
    assert fused.fast is not None and fused.fast.blocks[0].b_qkv is not None
    assert_losses_and_gradients_equal(fused, plain)
