"""One learner in and out of the standard PEFT adapter format.

A directory with `adapter_config.json` (a `LoraConfig`: r, lora_alpha, target_modules,
`base_model_name_or_path` = the real base directory) and `adapter_model.safetensors` with PEFT's key
names `base_model.model.<module>.lora_A.weight` [r, in] and `...lora_B.weight` [out, r], so
`PeftModel.from_pretrained(base, dir)` reproduces the learner's logits. Modules the population
trains whole (learners/parts.py) are PEFT's `modules_to_save`, by module path, with their weights
under `base_model.model.<module>.<parameter>` (a tied head is written under both names).

The functions take the `Population` (this module imports `learners.population`, never the reverse).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from safetensors.torch import load_file, save_file

from learners.arch import leaf
from learners.population import LearnerState, Population

PREFIX = "base_model.model."
WEIGHTS = "adapter_model.safetensors"
CONFIG = "adapter_config.json"


def export_peft(pop: Population, i: int, out_dir: str | Path, base_path: str | Path) -> Path:
    """Write learner i of `pop` to `out_dir` as a PEFT LoRA adapter; returns the directory."""
    from peft import LoraConfig

    spec = pop.specs[i]
    state = pop.get_state(i)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fan = any(pop.layers[n].fan_in_fan_out for n in state.lora)
    # PEFT annotates lora_alpha as int but scales by alpha / r for any number; alphas evolve as floats
    whole = part_keys(pop)
    cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha,  # type: ignore[arg-type]
                     lora_dropout=spec.dropout, bias="none",
                     # the modules' own names: q_proj on a fused-qkv model means e.g. c_attn
                     target_modules=sorted({leaf(n) for n in state.lora}),
                     task_type="CAUSAL_LM", fan_in_fan_out=fan,
                     base_model_name_or_path=str(Path(base_path).resolve()),
                     modules_to_save=list(pop.parts) or None,
                     # a tied head trained with the embeddings stays tied (one weight) in PEFT too
                     ensure_weight_tying=len(set(whole.values())) < len(whole))
    cfg.save_pretrained(str(out))
    tensors = {}
    for name, (a, b) in state.lora.items():
        tensors[f"{PREFIX}{name}.lora_A.weight"] = a.contiguous()
        tensors[f"{PREFIX}{name}.lora_B.weight"] = b.contiguous()
    for name, key in whole.items():
        tensors[f"{PREFIX}{name}"] = (state.parts or {})[key].clone()   # a tied one twice
    save_file(tensors, str(out / WEIGHTS), metadata={"format": "pt"})
    return out


def part_keys(pop: Population) -> dict[str, str]:
    """`<module path>.<parameter>` of every trained part's parameter -> its LearnerState key (the
    same key for both names of a tied weight)."""
    key_of = {id(t): key for key, t in pop.part_params.items()}
    return {f"{path}.{n}": key_of[id(c)] for path, part in pop.parts.items()
            for n, c in part.copies.items()}


def import_peft(pop: Population, i: int, adapter_dir: str | Path) -> None:
    """Make learner i the LoRA adapter in `adapter_dir` (fresh AdamW state, step 0).

    Rank, alpha, dropout and target modules come from the adapter; lr, weight decay, seed and
    clipping stay those of learner i's current spec.
    """
    d = Path(adapter_dir)
    if not (d / CONFIG).is_file() or not (d / WEIGHTS).is_file():
        raise ValueError(f"{d} is not a PEFT adapter directory (needs {CONFIG} and {WEIGHTS}); "
                         "pass a directory written by save_pretrained or export_peft")
    cfg = json.loads((d / CONFIG).read_text())
    if cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{d} holds a {cfg['peft_type']} adapter; only LoRA adapters can be imported")
    if cfg.get("rank_pattern") or cfg.get("alpha_pattern") or cfg.get("use_dora"):
        raise ValueError(f"{d} uses rank_pattern/alpha_pattern/DoRA; import a plain LoRA adapter")
    r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
    if r > pop.r_max:
        raise ValueError(f"adapter {d} has rank {r} > the population's r_max {pop.r_max}; "
                         f"build the Population with r_max={r} or more")
    if cfg.get("use_rslora"):
        alpha = alpha * math.sqrt(r)  # rsLoRA scales by alpha/sqrt(r) = (alpha*sqrt(r))/r
    targets = cfg.get("target_modules")
    if isinstance(targets, str) or not targets:
        raise ValueError(f"{d}: target_modules must be a list of module names, got {targets!r}")
    weights = load_file(str(d / WEIGHTS))
    lora: dict = {}
    whole = part_keys(pop)
    parts: dict = {}
    for key, t in weights.items():
        module_param = key.removeprefix(PREFIX)
        if key.startswith(PREFIX) and ".lora_" not in key and cfg.get("modules_to_save"):
            if module_param not in whole:
                raise ValueError(f"{d} trains {module_param} whole (modules_to_save), which "
                                 "this population does not; set training.modules_to_save to "
                                 f"{cfg['modules_to_save']}")
            parts[whole[module_param]] = t
            continue
        if not key.startswith(PREFIX) or ".lora_" not in key:
            raise ValueError(f"{d}: unexpected tensor {key!r}; expected PEFT LoRA key names")
        name, _, part = module_param.rpartition(".lora_")
        if name not in pop.layers:
            raise ValueError(f"{d} adapts {name}, which this population has no adapter on; "
                             f"add it to target_modules (population adapts {pop.names})")
        a, b = lora.get(name, (None, None))
        lora[name] = (t, b) if part.startswith("A.") else (a, t)
    for name, (a, b) in lora.items():
        if a is None or b is None:
            raise ValueError(f"{d}: {name} lacks lora_A or lora_B")
    spec = replace(pop.specs[i], rank=r, alpha=alpha, dropout=float(cfg.get("lora_dropout", 0.0)),
                   target_modules=tuple(targets))
    pop.set_state(i, LearnerState(spec=spec, step=0, lora=lora, parts=parts or None))
