"""Any transformers causal LM as the base: the population equals PEFT (forward, gradients, AdamW
steps, probes, PEFT export/import) on tiny random models of six architectures (tests/conftest.py's
`arch_bases`: tied embeddings, GQA/MQA, q/k/v biases, embedding scaling, GPT-2's Conv1D, fused
qkv_proj and query_key_value), with the genome's default targets q_proj,v_proj resolved to each
architecture's attention projections."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from learners.arch import leaf, linear_names, shared_copy
from learners.peft_io import export_peft, import_peft
from learners.population import LearnerSpec, Population
from tests.conftest import ARCHITECTURES
from tests.learners.test_population import assert_forward_and_gradients_equal_peft

PAIRS = [("12+30=", "42"), ("7+8=", "15"), ("1+1=", "2"), ("33+44=", "77"), ("9+90=", "99"),
         ("5+5=", "10"), ("61+2=", "63"), ("0+0=", "0")]
# the modules the default targets q_proj,v_proj resolve to
ADAPTED = {"llama": {"q_proj", "v_proj"}, "qwen2": {"q_proj", "v_proj"}, "gemma": {"q_proj", "v_proj"},
           "gpt2": {"c_attn"}, "phi3": {"qkv_proj"}, "gpt_neox": {"query_key_value"}}


def load(path):
    from learners.base import load_base

    return load_base(path)


def specs() -> list[LearnerSpec]:
    """Two learners of different rank, alpha, lr and weight decay; one clipped hard."""
    return [LearnerSpec(lr=2e-2, weight_decay=0.0, rank=2, alpha=4.0, dropout=0.0, seed=1),
            LearnerSpec(lr=1e-2, weight_decay=0.1, rank=4, alpha=8.0, dropout=0.0, seed=2,
                        max_grad_norm=0.05)]


def population(path, randomise: bool = True) -> Population:
    model, tok = load(path)
    pop = Population(model, tok, specs())
    if randomise:  # non-zero B, so A gets gradients and the adapters change the outputs
        g = torch.Generator().manual_seed(0)
        for i in range(pop.P):
            st = pop.get_state(i)
            st.lora = {n: (a, torch.randn(b.shape, generator=g) * 0.3) for n, (a, b) in st.lora.items()}
            pop.set_state(i, st)
    return pop


def peft_twin(path, pop: Population, i: int):
    """A PEFT model on a fresh load of the base (no copy of the population's) with learner i."""
    from peft import LoraConfig, get_peft_model

    model, _ = load(path)
    spec, state = pop.specs[i], pop.get_state(i)
    cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0,  # type: ignore[arg-type]
                     target_modules=sorted({leaf(n) for n in state.lora}),
                     fan_in_fan_out=any(pop.layers[n].fan_in_fan_out for n in state.lora))
    pm = get_peft_model(model, cfg).eval()   # the base's own dropout off, as in the population
    seen = set()
    for name, mod in pm.base_model.model.named_modules():
        if hasattr(mod, "lora_A") and "default" in mod.lora_A:
            mod.lora_A["default"].weight.data.copy_(state.lora[name][0])
            mod.lora_B["default"].weight.data.copy_(state.lora[name][1])
            seen.add(name)
    assert seen == set(state.lora)
    return pm


def encode(tok, pairs):
    from learners.encoding import encode_pairs

    return encode_pairs(tok, pairs)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_default_targets_resolve_to_the_attention_projections(arch_bases, arch) -> None:
    pop = population(arch_bases[arch], randomise=False)
    assert {leaf(n) for n in pop.names} == ADAPTED[arch]
    assert len(pop.names) == len(ADAPTED[arch]) * 2          # both blocks
    assert (pop.fast is not None) == (arch in ("llama", "qwen2"))   # the fused path where it applies


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_forward_and_gradients_equal_peft(arch_bases, arch) -> None:
    path = arch_bases[arch]
    pop = population(path)
    assert_forward_and_gradients_equal_peft(pop, lambda i: peft_twin(path, pop, i), PAIRS[:4])


def train_alone(pm, spec: LearnerSpec, tok, batches) -> None:
    """Train the PEFT model `pm` on `batches` with torch's AdamW and clipping of `spec`."""
    params = [p for p in pm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
    for batch in batches:
        enc = encode(tok, batch)
        opt.zero_grad()
        pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask, labels=enc.labels).loss.backward()
        if spec.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
        opt.step()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_adamw_steps_equal_peft_trained_alone(arch_bases, arch) -> None:
    path = arch_bases[arch]
    pop = population(path, randomise=False)
    twins = [peft_twin(path, pop, i) for i in range(pop.P)]  # PEFT's init = the population's
    streams = [[PAIRS[(3 * p + t) % 8:][:2 + p] for t in range(3)] for p in range(pop.P)]
    for t in range(3):
        assert np.isfinite(pop.train_step([s[t] for s in streams])).all()
    for i, pm in enumerate(twins):
        train_alone(pm, pop.specs[i], pop.tokenizer, streams[i])
        ours = pop.get_state(i).lora
        for name, mod in pm.base_model.model.named_modules():
            if hasattr(mod, "lora_A") and "default" in mod.lora_A:
                assert_close(ours[name][0], mod.lora_A["default"].weight.detach(), atol=2e-6, rtol=1e-5)
                assert_close(ours[name][1], mod.lora_B["default"].weight.detach(), atol=2e-6, rtol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_probe_equals_peft_logits_and_generate(arch_bases, arch) -> None:
    from learners.encoding import answer_verdicts

    path = arch_bases[arch]
    pop = population(path)
    res = pop.probe(PAIRS)
    enc = encode(pop.tokenizer, PAIRS)
    for i in range(pop.P):
        with torch.no_grad():
            logits = peft_twin(path, pop, i)(input_ids=enc.input_ids,
                                             attention_mask=enc.attention_mask).logits
        correct, prob, margin = answer_verdicts(logits, enc)
        assert (res.correct[i] == correct.numpy()).all()
        assert_close(torch.from_numpy(res.prob[i]), prob.double(), atol=1e-6, rtol=1e-4)
        assert_close(torch.from_numpy(res.margin[i]), margin.double(), atol=1e-5, rtol=1e-4)
    assert (pop.probe_generate(PAIRS).correct == res.correct).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_key_term_generation_equals_transformers_generate(arch_bases, arch) -> None:
    """The key-term probe's decoding loop (shared prompt prefix, finished items dropped, explicit
    positions and cache) gives `generate()`'s greedy texts on every architecture."""
    from learners.probe import generate_greedy, generate_greedy_hf

    pop = population(arch_bases[arch])
    prompts = [p for p, _ in PAIRS]
    args = (pop.model, pop.tokenizer, pop.P, prompts, 6, pop.probe_chunk, pop.device)
    assert generate_greedy(*args) == generate_greedy_hf(*args)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_peft_export_loads_with_peft_and_imports_back(arch_bases, arch, tmp_path) -> None:
    from peft import PeftModel

    path = arch_bases[arch]
    pop = population(path)
    enc = encode(pop.tokenizer, PAIRS[:3])
    out = export_peft(pop, 1, tmp_path / "adapter", path)
    base, _ = load(path)
    pm = PeftModel.from_pretrained(base, str(out))
    with torch.no_grad():
        theirs = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        ours = pop.model(input_ids=enc.input_ids.repeat(pop.P, 1),
                         attention_mask=enc.attention_mask.repeat(pop.P, 1)).logits[3:]
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    fresh = population(path, randomise=False)
    import_peft(fresh, 0, out)
    for name, (a, b) in pop.get_state(1).lora.items():
        assert_close(fresh.get_state(0).lora[name][0], a)
        assert_close(fresh.get_state(0).lora[name][1], b)


def test_tied_embeddings_stay_tied_and_the_base_is_shared_not_copied(arch_bases) -> None:
    model, tok = load(arch_bases["llama"])
    assert model.lm_head.weight is model.model.embed_tokens.weight
    a = Population(model, tok, specs(), fused=False)
    b = Population(model, tok, specs())
    for pop in (a, b):
        assert pop.model.lm_head.weight is pop.model.model.embed_tokens.weight
        assert pop.model.lm_head.weight.data_ptr() == model.lm_head.weight.data_ptr()
        assert pop.model.model.norm.weight.data_ptr() == model.model.norm.weight.data_ptr()
        assert not any(p.requires_grad for p in pop.model.parameters()
                       if p.data_ptr() == model.lm_head.weight.data_ptr())
    assert all(p.requires_grad for p in model.parameters())  # the caller's model is untouched
    twin = shared_copy(model)
    assert twin.lm_head.weight is twin.model.embed_tokens.weight is not model.lm_head.weight


@pytest.mark.parametrize("arch", ["gpt2", "gpt_neox"])
def test_targets_that_match_nothing_name_the_modules_the_model_has(arch_bases, arch) -> None:
    model, tok = load(arch_bases[arch])
    with pytest.raises(ValueError, match="match no linear module") as err:
        Population(model, tok, specs(), target_modules=("q_proj", "o_proj"))
    msg = str(err.value)
    assert "'o_proj'" in msg and "\n" not in msg
    for name in linear_names(model):
        assert name in msg
    assert "lm_head" not in msg and "embed_out" not in msg


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_loads_on_threads_at_once_keep_tied_embeddings(arch_bases, arch) -> None:
    """The local backend loads the base on one thread per group at once: transformers' loading
    left a tied lm_head on the meta device then ("Cannot copy out of meta tensor")."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        models = [m for m, _ in pool.map(lambda _: load(arch_bases[arch]), range(4))]
    for model in models:
        assert not any(p.is_meta for p in model.parameters())
        assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
        Population(model, load(arch_bases[arch])[1], specs())
