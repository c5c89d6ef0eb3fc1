"""Whole modules trained per learner beside LoRA (learners/parts.py, PEFT's modules_to_save): the
population equals PEFT with `modules_to_save` trained alone (tied head included), learners stay
isolated, state round-trips with its moments, PEFT export/import, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from learners.peft_io import export_peft, import_peft
from learners.population import Population
from tests.conftest import ARCHITECTURES
from tests.learners.test_architectures import PAIRS, encode, load, peft_twin, specs, train_alone

PARTS = ["embed", "head", "norm"]


def population(path, parts=PARTS) -> Population:
    model, tok = load(path)
    return Population(model, tok, specs(), modules_to_save=parts)


def twin(path, pop: Population, i: int):
    """PEFT with learner i's adapter and `modules_to_save` = the population's parts (a tied
    head kept tied, PEFT's ensure_weight_tying), on a fresh load of the base."""
    from peft import LoraConfig, get_peft_model

    pm = peft_twin(path, pop, i)
    cfg = pm.peft_config["default"]
    model, _ = load(path)
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    full = LoraConfig(r=cfg.r, lora_alpha=cfg.lora_alpha, target_modules=cfg.target_modules,
                      fan_in_fan_out=cfg.fan_in_fan_out, modules_to_save=list(pop.parts),
                      ensure_weight_tying=tied)
    out = get_peft_model(model, full).eval()
    out.load_state_dict(pm.state_dict(), strict=False)   # the adapter; parts start as the base
    return out


def peft_parts(pm) -> dict[str, torch.Tensor]:
    """`<module>.<param>` -> PEFT's trained copy."""
    out = {}
    for name, p in pm.named_parameters():
        if ".modules_to_save.default." in name:
            mod, _, param = name.removeprefix("base_model.model.").partition(".modules_to_save.default.")
            out[f"{mod}.{param}"] = p.detach()
    return out


STREAMS = [[PAIRS[(3 * p + t) % 8:][:2 + p] for t in range(3)] for p in range(2)]


# every architecture (Llama and Qwen2: a tied head; GPT-NeoX: LayerNorms with biases; Gemma: its
# 1 + weight RMSNorm); norms only: the frozen head on labelled positions
@pytest.mark.parametrize("arch, parts", [*((a, PARTS) for a in ARCHITECTURES), ("gpt_neox", ["norm"])])
def test_adamw_steps_equal_peft_modules_to_save_trained_alone(arch_bases, arch, parts) -> None:
    path = arch_bases[arch]
    pop = population(path, parts)
    assert pop.fast is None and pop.parts and pop.head_trained == ("head" in parts)
    twins = [twin(path, pop, i) for i in range(pop.P)]
    for t in range(3):
        assert np.isfinite(pop.train_step([s[t] for s in STREAMS])).all()
    for i, pm in enumerate(twins):
        train_alone(pm, pop.specs[i], pop.tokenizer, STREAMS[i])
        ours, theirs = pop.get_state(i).parts or {}, peft_parts(pm)
        assert set(ours) <= set(theirs) and len(ours) >= 3
        assert parts != ["norm"] or all("norm" in k for k in ours)   # GPT-NeoX's *_layernorm
        for key, value in ours.items():
            assert_close(value, theirs[key], atol=2e-6, rtol=1e-5)
            assert not torch.equal(value, dict(load(path)[0].named_parameters())[key])  # trained
        res = pop.probe(PAIRS)   # the probe reads each learner's own parts
        enc = encode(pop.tokenizer, PAIRS)
        with torch.no_grad():
            logits = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        from learners.encoding import answer_verdicts

        assert_close(torch.from_numpy(res.prob[i]), answer_verdicts(logits, enc)[1].double(),
                     atol=1e-6, rtol=1e-4)


def test_a_tied_head_stays_the_embeddings_and_the_base_is_untouched(arch_bases) -> None:
    model, tok = load(arch_bases["llama"])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    pop = Population(model, tok, specs(), modules_to_save=["embed"])   # the head comes with it
    assert set(pop.parts) == {"model.embed_tokens", "lm_head"}
    assert list(pop.part_params) == ["model.embed_tokens.weight"]
    pop.train_step([PAIRS[:3], PAIRS[3:]])
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    assert torch.equal(pop.model.lm_head.copies["weight"], pop.model.model.embed_tokens.copies["weight"])


def test_learners_are_isolated_and_state_round_trips_with_moments(arch_bases) -> None:
    path = arch_bases["llama"]
    pop = population(path)
    pop.train_step([PAIRS[:4], []])                 # learner 1 sits out: its parts stay the base's
    base = dict(load(path)[0].named_parameters())
    state1 = pop.get_state(1)
    assert all(torch.equal(v, base[k]) for k, v in (state1.parts or {}).items())
    state0 = pop.get_state(0)
    assert state0.parts_exp_avg and any(float(m.abs().sum()) > 0 for m in state0.parts_exp_avg.values())
    other = population(path)
    other.set_state(1, state0)                      # learner 0's adapter, parts and moments
    pop.train_step([PAIRS[4:], []])
    other.train_step([[], PAIRS[4:]])
    for key, value in (pop.get_state(0).parts or {}).items():
        assert_close((other.get_state(1).parts or {})[key], value, atol=1e-7, rtol=1e-6)


def test_peft_export_loads_with_peft_and_imports_back(arch_bases, tmp_path) -> None:
    from peft import PeftModel

    path = arch_bases["gpt_neox"]
    pop = population(path)
    pop.train_step([PAIRS[:4], PAIRS[4:]])
    out = export_peft(pop, 1, tmp_path / "adapter", path)
    pm = PeftModel.from_pretrained(load(path)[0], str(out)).eval()
    enc = encode(pop.tokenizer, PAIRS[:3])
    with torch.no_grad():
        theirs = pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        ours = pop.model(input_ids=enc.input_ids.repeat(2, 1),
                         attention_mask=enc.attention_mask.repeat(2, 1)).logits[3:]
    assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    fresh = population(path)
    import_peft(fresh, 0, out)
    for key, value in (pop.get_state(1).parts or {}).items():
        assert torch.equal((fresh.get_state(0).parts or {})[key], value)
    with pytest.raises(ValueError, match="training.modules_to_save") as err:
        import_peft(population(path, parts=[]), 0, out)
    assert "\n" not in str(err.value)


def test_names_that_match_no_single_module_are_one_line_errors(arch_bases) -> None:
    model, tok = load(arch_bases["llama"])
    for names, needle in ((["embedding"], "matches no module"), (["layers.0"], "not one module"),
                          (["q_proj"], "carries a LoRA adapter")):
        with pytest.raises(ValueError, match=needle) as err:
            Population(model, tok, specs(), modules_to_save=names)
        assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="embed, head, norm") as err:
        Population(model, tok, specs(), modules_to_save=["embedding"])
    assert "input_layernorm" in str(err.value)
