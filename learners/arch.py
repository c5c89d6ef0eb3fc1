"""What differs between transformers causal-LM architectures, in one place.

- Which modules "q_proj" / "k_proj" / "v_proj" name. Llama-family models (Llama, Mistral, Qwen2,
  Gemma, OPT, GPT-J, Phi...) have separate q/k/v projections; others fuse them into one module:
  GPT-2's `c_attn` (a `Conv1D`), GPT-NeoX's, Falcon's and Bloom's `query_key_value`, Phi-3's and
  CodeGen's `qkv_proj`, MPT's `Wqkv`, Baichuan's `W_pack`. PEFT cannot adapt a part of a fused
  module, so on such a model a target `q_proj`, `k_proj` or `v_proj` names the fused module: the
  genome's default `q_proj,v_proj` becomes "the attention projections" of any architecture.
- Which module names a model has that can carry an adapter (`linear_names`), for error messages.
- The population's private model: the module tree copied, every weight shared with the caller's
  model (`shared_copy`), so P learners and several populations cost one base in memory.
- What the LM head does after its matmul (`lm_logits`): Gemma-2/3's final logit soft-capping,
  Cohere's `logit_scale`, Granite's `logits_scaling`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# fused q/k/v projections, by module name (the last component of the module's path)
FUSED_QKV = ("c_attn", "query_key_value", "qkv_proj", "Wqkv", "W_pack")
QKV = ("q_proj", "k_proj", "v_proj")

try:  # GPT-2 style projections (weight stored [in, out])
    from transformers.pytorch_utils import Conv1D as _Conv1D
    CONV1D: tuple[type[nn.Module], ...] = (_Conv1D,)
except ImportError:  # pragma: no cover - transformers is a dependency
    CONV1D = ()


def leaf(name: str) -> str:
    """`model.layers.0.self_attn.q_proj` -> `q_proj`."""
    return name.rpartition(".")[2]


def module_matches(name: str, targets: Sequence[str]) -> bool:
    """PEFT's suffix rule (`model.layers.0.self_attn.q_proj` matches `q_proj`), plus: q_proj,
    k_proj and v_proj also match a fused q/k/v module (`FUSED_QKV`), which holds them."""
    if any(name == t or name.endswith("." + t) for t in targets):
        return True
    return leaf(name) in FUSED_QKV and any(t in QKV for t in targets)


def adaptable(module: nn.Module) -> bool:
    """Whether a LoRA adapter can sit on `module`: an nn.Linear or a transformers Conv1D."""
    return isinstance(module, (nn.Linear, *CONV1D))


def linear_names(model: nn.Module) -> list[str]:
    """The distinct leaf names of the model's adaptable modules, the LM head left out (sorted)."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    return sorted({leaf(n) for n, m in model.named_modules() if adaptable(m) and m is not head
                   and not n.endswith("lm_head")})


def check_targets(model: nn.Module, targets: Sequence[str]) -> None:
    """Raise ValueError (one line, listing the model's module names) for a target that matches
    no adaptable module of `model`."""
    names = [n for n, m in model.named_modules() if adaptable(m)]
    missing = [t for t in targets if not any(module_matches(n, (t,)) for n in names)]
    if missing:
        kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(f"target_modules {missing} match no linear module of this {kind} model; "
                         f"use some of {linear_names(model)}")


def shared_copy(model: nn.Module) -> Any:
    """A copy of `model`'s module tree whose parameters are new frozen `nn.Parameter`s over the
    SAME storage (and whose buffers are the same tensors): no weight is copied, tied weights stay
    tied, and the caller's parameters (their requires_grad included) are left as they were.

    `copy.deepcopy(model)` would duplicate every weight, and on some loads of tied-embedding models
    failed with "Cannot copy out of meta tensor"."""
    memo: dict[int, Any] = {}
    for p in model.parameters():
        memo[id(p)] = nn.Parameter(p.detach(), requires_grad=False)
    for b in model.buffers():
        memo[id(b)] = b
    return copy.deepcopy(model, memo)


def lm_logits(model: Any, h: torch.Tensor, vocab: slice | None = None) -> torch.Tensor:
    """The model's logits (float32) from final hidden states `h` [..., H], as its own forward
    computes them after the decoder: the output embedding, then any scaling or soft-capping.
    `vocab`: the logits of those token ids only (the same values as the full call's columns)."""
    head = model.get_output_embeddings()
    if vocab is None:
        logits = head(h)
    else:
        bias = getattr(head, "bias", None)
        logits = nn.functional.linear(h, head.weight[vocab], None if bias is None else bias[vocab])
    cfg = model.config
    scale = getattr(cfg, "logit_scale", None)            # Cohere multiplies
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale != 1:
        logits = logits * scale
    div = getattr(cfg, "logits_scaling", None)           # Granite divides
    if isinstance(div, (int, float)) and not isinstance(div, bool) and div != 1:
        logits = logits / div
    cap = getattr(cfg, "final_logit_softcapping", None)  # Gemma-2/3
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return logits.float()


__all__ = ["FUSED_QKV", "CONV1D", "module_matches", "adaptable", "linear_names", "check_targets",
           "shared_copy", "lm_logits", "leaf"]
