"""Whole modules that every learner trains a copy of, besides its LoRA adapters (PEFT's
`modules_to_save`).

LoRA changes linear layers only. A population may also give each learner its own trainable copy of
the input embeddings (`embed`), the output head (`head`), every normalisation layer (`norm`), or
any module named by PEFT's suffix rule (`lm_head`, `model.norm`). On a never-pretrained base this
is what grokking needs: docs/experiments.md, "What keeps LoRA learners from grokking", found that
the number base groks only when its embeddings, head and norms are trained too.

Each such module is replaced by a `StackedPart`: P copies of its own parameters, `[P, ...]`, and
learner p's rows (the p-th block of the batch, the layout of learners/lora.py) go through learner
p's copy (`torch.func.functional_call` on the frozen module). A weight the base ties to another
module (a tied LM head) is one weight: both modules are wrapped and share one stacked copy, so a
learner's head stays its embeddings. Copies start as the base's weights; AdamW, weight decay
included, acts on them with the learner's own hyperparameters, as PEFT trains modules_to_save.
Memory: P x (weights + gradient + two AdamW moments) of every named module (SmolLM2's tied
embeddings: 28 M numbers, so 0.45 GB per learner in float32).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from learners.arch import leaf

KEYWORDS = {"embed": "the input embeddings", "head": "the output head (LM head)",
            "norm": "every normalisation layer (RMSNorm, LayerNorm)"}


def _is_norm(module: nn.Module) -> bool:
    return (isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm))
            or type(module).__name__.endswith("Norm"))


def _own(module: nn.Module) -> dict[str, nn.Parameter]:
    return dict(module.named_parameters(recurse=False))


def _one_module(module: nn.Module) -> bool:
    """Whether `module` has weights of its own and no sub-module has any (what can be a part)."""
    return bool(_own(module)) and not any(_own(c) for c in module.modules() if c is not module)


def resolve_parts(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """Module path -> module for `names`: `embed`, `head`, `norm` (KEYWORDS) or module names by
    PEFT's suffix rule; a module whose parameter another module shares (tied embeddings) comes
    with it. Raises ValueError (one line) for a name that matches no module with parameters of
    its own, or one that matches a module with sub-modules that have parameters."""
    mods = dict(model.named_modules(remove_duplicate=False))
    path_of = {id(m): p for p, m in mods.items()}
    chosen: dict[str, nn.Module] = {}
    for name in names:
        if name in ("embed", "head"):
            get = getattr(model, "get_input_embeddings" if name == "embed"
                          else "get_output_embeddings", None)
            m = get() if callable(get) else None
            found = {path_of[id(m)]: m} if m is not None and id(m) in path_of else {}
        elif name == "norm":
            found = {p: m for p, m in mods.items() if _is_norm(m) and _own(m)}
        else:
            found = {p: m for p, m in mods.items() if p == name or p.endswith("." + name)}
        adapted = [p for p, m in found.items() if hasattr(m, "lora_A")]
        if adapted:
            raise ValueError(f"modules_to_save {name!r} names {adapted[0]}, which carries a LoRA "
                             "adapter; a module is either adapted or trained whole, so drop it "
                             "from one of the two")
        bad = [p for p, m in found.items() if not _one_module(m)]
        if not found or bad:
            kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            leaves = sorted({leaf(p) for p, m in mods.items() if p and _one_module(m)
                             and not hasattr(mods.get(p.rpartition(".")[0]), "lora_A")})
            what = f"matches {bad[0]}, which is not one module with weights" if bad else \
                "matches no module with weights"
            raise ValueError(f"modules_to_save {name!r} {what} in this {kind} model; use "
                             f"{', '.join(KEYWORDS)} or some of {leaves}")
        chosen.update(found)
    tied = {id(w) for m in chosen.values() for w in _own(m).values()}
    for p, m in mods.items():
        if p not in chosen and any(id(w) in tied for w in _own(m).values()):
            chosen[p] = m
    return {p: chosen[p] for p in mods if p in chosen}     # the model's order


class StackedPart(nn.Module):
    """A frozen module run with learner p's own copy of its parameters on learner p's rows."""

    def __init__(self, base: nn.Module, P: int, copies: dict[str, nn.Parameter]) -> None:
        super().__init__()
        self.base = base
        for w in base.parameters():
            w.requires_grad_(False)
        self.copies = nn.ParameterDict(copies)       # name -> [P, ...] (shared when tied)
        self.P = P
        self.span = (0, P)   # learners lo..hi-1 are in the current batch (as StackedLoRALinear)

    @property
    def weight(self) -> torch.Tensor:
        """The base module's weight (its shape is what callers read, e.g. the vocabulary size)."""
        w = self.base.weight
        assert isinstance(w, torch.Tensor)
        return w

    def reset_learner(self, p: int) -> None:
        """Learner p's copy back to the base's weights."""
        with torch.no_grad():
            for name, w in _own(self.base).items():
                self.copies[name][p] = w.to(self.copies[name].dtype)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """x [G*B, ...] for the G = hi - lo learners of `span`: the g-th block of rows through
        learner lo+g's copy."""
        lo, hi = self.span
        G = hi - lo
        if x.shape[0] % G:
            raise ValueError(f"batch of {x.shape[0]} rows is not a multiple of {G} learners")
        return torch.cat([functional_call(self.base, {n: c[lo + g] for n, c in self.copies.items()},
                                          (xg, *args), kwargs)
                          for g, xg in enumerate(x.split(x.shape[0] // G))])

    def extra_repr(self) -> str:
        return f"P={self.P}, trained={list(self.copies)}"


def inject_parts(model: nn.Module, names: Sequence[str], P: int
                 ) -> tuple[dict[str, StackedPart], dict[str, nn.Parameter]]:
    """Replace the modules `names` resolve to (`resolve_parts`) by StackedParts.

    Returns ({module path: part}, {state key: stacked parameter}); a state key is
    `<module path>.<parameter name>` of the first module holding that parameter, and a tied
    parameter has one key and one stacked copy."""
    if not names:
        return {}, {}
    chosen = resolve_parts(model, names)
    stacked: dict[int, tuple[str, nn.Parameter]] = {}
    parts: dict[str, StackedPart] = {}
    for path, m in chosen.items():
        copies = {}
        for n, w in _own(m).items():
            if id(w) not in stacked:
                stacked[id(w)] = (f"{path}.{n}", nn.Parameter(
                    w.detach().unsqueeze(0).repeat(P, *([1] * w.dim()))))
            copies[n] = stacked[id(w)][1]
        parts[path] = StackedPart(m, P, copies)
    for path, part in parts.items():
        parent, _, child = path.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, part)
    return parts, dict(stacked.values())


__all__ = ["KEYWORDS", "StackedPart", "inject_parts", "resolve_parts"]
