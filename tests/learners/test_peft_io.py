"""Learners out to and in from the standard PEFT adapter format."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from torch.testing import assert_close

from learners.peft_io import export_peft, import_peft
from learners.population import LearnerSpec, Population

PAIRS = [("12+30=", "42"), ("7+8=", "15"), ("1+1=", "2")]


@pytest.fixture(scope="module")
def base(tiny_base):
    from learners.base import load_base

    model, tok = load_base(tiny_base)
    return model.float().eval(), tok


def learner_logits(pop: Population, i: int, tok) -> torch.Tensor:
    """Learner i's logits [N, T, V] on PAIRS from the stacked population."""
    from learners.encoding import encode_pairs

    enc = encode_pairs(tok, PAIRS)
    n = enc.input_ids.shape[0]
    with torch.no_grad():
        out = pop.model(input_ids=enc.input_ids.repeat(pop.P, 1),
                        attention_mask=enc.attention_mask.repeat(pop.P, 1)).logits
    return out[i * n:(i + 1) * n]


def peft_logits(pm, tok) -> torch.Tensor:
    from learners.encoding import encode_pairs

    enc = encode_pairs(tok, PAIRS)
    with torch.no_grad():
        return pm(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits


def test_export_loads_in_peft_with_the_same_logits(base, tiny_base, tmp_path) -> None:
    from peft import PeftModel

    model, tok = base
    specs = [LearnerSpec(lr=3e-2, weight_decay=0.0, rank=2, alpha=4.0, dropout=0.0, seed=1),
             LearnerSpec(lr=3e-2, weight_decay=0.1, rank=4, alpha=6.0, dropout=0.1, seed=2,
                         target_modules=("q_proj", "o_proj"))]
    pop = Population(model, tok, specs, target_modules=("q_proj", "v_proj"))
    for _ in range(3):  # B != 0, so the adapter changes the logits
        pop.train_step([PAIRS, PAIRS[:2]])
    out = export_peft(pop, 1, tmp_path / "l1", tiny_base)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_base.resolve())
    assert (cfg["r"], cfg["lora_alpha"], sorted(cfg["target_modules"])) == (4, 6.0, ["o_proj", "q_proj"])
    assert (out / "adapter_model.safetensors").is_file()
    pm = PeftModel.from_pretrained(copy.deepcopy(model), str(out)).eval()
    ours = learner_logits(pop, 1, tok)
    assert_close(peft_logits(pm, tok), ours, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(peft_logits(model, tok), ours, atol=1e-4)  # the adapter matters


def test_import_of_an_adapter_made_with_peft(base, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    model, tok = base
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False)  # random A and B: a non-trivial adapter
    pm = get_peft_model(copy.deepcopy(model), cfg).eval()
    pm.save_pretrained(str(tmp_path / "made_by_peft"))
    spec = LearnerSpec(lr=1e-3, weight_decay=0.0, rank=2, alpha=2.0, dropout=0.0, seed=5)
    pop = Population(model, tok, [spec, spec], r_max=4)
    import_peft(pop, 1, tmp_path / "made_by_peft")
    assert (pop.specs[1].rank, pop.specs[1].alpha, pop.specs[1].lr) == (4, 8.0, 1e-3)
    assert_close(learner_logits(pop, 1, tok), peft_logits(pm, tok), atol=1e-5, rtol=1e-5)
    assert pop.get_state(1).step == 0
    losses = pop.train_step([PAIRS, PAIRS])  # an imported learner trains on
    assert torch.isfinite(torch.as_tensor(losses)).all()


def test_import_above_r_max_is_a_clear_error(base, tmp_path) -> None:
    from peft import LoraConfig, get_peft_model

    model, tok = base
    pm = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, target_modules=["q_proj"]))
    pm.save_pretrained(str(tmp_path / "r8"))
    spec = LearnerSpec(lr=1e-3, weight_decay=0.0, rank=2, alpha=2.0, dropout=0.0, seed=5)
    pop = Population(model, tok, [spec])
    with pytest.raises(ValueError, match="rank 8 > the population's r_max 2"):
        import_peft(pop, 0, tmp_path / "r8")
    with pytest.raises(ValueError, match="not a PEFT adapter directory"):
        import_peft(pop, 0, tmp_path)
