"""Stacked LoRA: P adapters on one frozen linear layer, applied to a batch laid out per learner.

PEFT cannot train different adapters in one batch (its mixed-adapter batches are inference only), so
the population owns this small layer. Learner p's rows are the p-th contiguous block of the batch:

    x      [P*B, T, in]   (any leading shape whose first dim is a multiple of P)
    A      [P, r_max, in]    lora_A of every learner, PEFT's lora_A.weight per slice
    B      [P, out, r_max]   lora_B of every learner, PEFT's lora_B.weight per slice
    gain   [P, r_max]        alpha_p / r_p on the first r_p ranks, 0 beyond them and 0 where learner p
                             does not adapt this module (mixed ranks and target sets by masking)
    y = base(x) + reshape( bmm( bmm(drop_p(x_p), A^T) * gain, B^T ) )

so learner p's output equals PEFT's `base(x) + lora_B(lora_A(dropout(x))) * alpha/r`. Masked entries
of A and B are zero and get zero gradients, so an exported slice is exactly a rank-r_p PEFT adapter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from learners.arch import CONV1D, check_targets, module_matches


def linear_dims(module: nn.Module) -> tuple[int, int, bool]:
    """(in_features, out_features, fan_in_fan_out) of an nn.Linear or a transformers Conv1D."""
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, False
    if isinstance(module, CONV1D):
        w = module.weight
        assert isinstance(w, torch.Tensor)
        return w.shape[0], w.shape[1], True
    raise TypeError(f"cannot adapt {type(module).__name__}: only nn.Linear and Conv1D")


def peft_init_A(r: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """[r, d_in] drawn like PEFT's default `kaiming_uniform_(a=sqrt(5))`: U(-1/sqrt(in), 1/sqrt(in))."""
    bound = 1.0 / math.sqrt(d_in)  # gain sqrt(2/(1+5)) * sqrt(3/fan_in)
    return (torch.rand(r, d_in, generator=generator) * 2 - 1) * bound


class StackedLoRALinear(nn.Module):
    """A frozen linear layer plus P LoRA adapters applied per learner with batched matmuls."""

    gain: torch.Tensor   # [P, r_max] buffer
    drop: torch.Tensor   # [P] buffer

    def __init__(self, base: nn.Module, P: int, r_max: int) -> None:
        super().__init__()
        d_in, d_out, self.fan_in_fan_out = linear_dims(base)
        self.base = base
        for p in base.parameters():
            p.requires_grad_(False)
        self.P, self.r_max, self.in_features, self.out_features = P, r_max, d_in, d_out
        w = base.weight
        assert isinstance(w, torch.Tensor)
        self.lora_A = nn.Parameter(torch.zeros(P, r_max, d_in, device=w.device, dtype=w.dtype))
        self.lora_B = nn.Parameter(torch.zeros(P, d_out, r_max, device=w.device, dtype=w.dtype))
        self.register_buffer("gain", torch.zeros(P, r_max, device=w.device, dtype=w.dtype))
        self.register_buffer("drop", torch.zeros(P, device=w.device, dtype=w.dtype))
        # dropout masks: one generator per learner (set by the population), so a learner's masks
        # do not depend on which learners share its batch; `rows[g]` = (pairs, tokens) of the g-th
        # learner of the span, set per step, so each draws masks for its own rows only
        self.generators: list[torch.Generator] | None = None
        self.rows: list[tuple[int, int]] | None = None
        self._T = 0  # the batch's padded length, with `rows`
        self.span = (0, P)  # learners lo..hi-1 are in the current batch (micro-groups of learners)

    def set_learner(self, p: int, rank: int, alpha: float, dropout: float, enabled: bool) -> None:
        """Set learner p's rank mask, scale alpha/rank and dropout (adapter weights untouched)."""
        if not 1 <= rank <= self.r_max:
            raise ValueError(f"rank {rank} outside 1..{self.r_max}; raise the population's r_max")
        with torch.no_grad():
            self.gain[p].zero_()
            if enabled:
                self.gain[p, :rank] = alpha / rank
            self.drop[p] = dropout

    def reset_learner(self, p: int, rank: int, generator: torch.Generator, enabled: bool,
                      init_scale: float = 0.0) -> None:
        """PEFT's init for learner p: A kaiming-uniform on its first `rank` rows, B zero.

        `init_scale` > 0 is the large-norm start of Omnigrok (Liu et al. 2023): B is drawn like A
        (kaiming-uniform over its fan-in, the rank) and both are multiplied by `init_scale`, so the
        adapter starts as a random update whose norm grows as init_scale squared; weight decay then
        has to shrink it. 0 = PEFT's init (the update starts at zero)."""
        with torch.no_grad():
            self.lora_A[p].zero_()
            self.lora_B[p].zero_()
            if enabled:
                a = peft_init_A(rank, self.in_features, generator)
                if init_scale > 0:
                    b = peft_init_A(self.out_features, rank, generator) * init_scale
                    self.lora_B[p, :, :rank] = b.to(self.lora_B.device, self.lora_B.dtype)
                    a = a * init_scale
                self.lora_A[p, :rank] = a.to(self.lora_A.device, self.lora_A.dtype)

    def delta(self, p: int) -> torch.Tensor:
        """Learner p's weight update B @ diag(gain) @ A as [out, in] (detached)."""
        with torch.no_grad():
            return (self.lora_B[p] * self.gain[p]) @ self.lora_A[p]

    def base_weight(self) -> torch.Tensor:
        """The frozen weight as [out, in] (Conv1D stores it transposed)."""
        w = self.base.weight
        assert isinstance(w, torch.Tensor)
        return w.detach().t() if self.fan_in_fan_out else w.detach()

    def _dropout(self, x: torch.Tensor, drop: torch.Tensor) -> torch.Tensor:
        """x [G, M, in] with learner g's dropout rate drop[g] applied to its slice (inverted).

        Learner g's mask is drawn from its own generator for its own rows only (`rows[g]` =
        (b, t): its b pairs of t tokens, the top-left corner of its [B, T] block), so it is the mask
        the learner gets when trained alone; padding positions keep x as is (they reach no loss).
        """
        lo = self.span[0]
        keep = 1.0 - drop  # [G]
        G, M, d = x.shape
        mask = torch.ones_like(x)
        if self.generators is None:
            raise RuntimeError("StackedLoRALinear dropout needs per-learner generators; "
                               "build it through learners.population.Population")
        for g in range(G):
            if float(drop[g]) <= 0:
                continue
            gen = self.generators[lo + g]
            if self.rows is None:  # no layout given: the whole slice
                u = torch.rand((M, d), generator=gen, device=x.device, dtype=x.dtype)
                mask[g] = (u < keep[g]).to(x.dtype) / keep[g]
                continue
            b, t = self.rows[g]
            T = self._T   # the batch's columns, which may cut the learner's t (they reach no loss)
            u = torch.rand((b, t, d), generator=gen, device=x.device, dtype=x.dtype)[:, :T]
            mask[g].view(-1, T, d)[:b, :t] = (u < keep[g]).to(x.dtype) / keep[g]
        return x * mask

    def _down(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The adapters' first half for the G = hi - lo learners of `span`, x [G*B, ..., in]:
        h = dropout_g(x_g) A_g^T * gain_g  [G, M, r_max] (M = B*T) and B^T  [G, r_max, out]."""
        lo, hi = self.span
        G, n = hi - lo, x.shape[0]
        if n % G:
            raise ValueError(f"batch of {n} rows is not a multiple of {G} learners")
        A: torch.Tensor = self.lora_A
        Bw: torch.Tensor = self.lora_B
        gain, drop = self.gain, self.drop
        if G != self.P:
            A, Bw, gain, drop = A[lo:hi], Bw[lo:hi], gain[lo:hi], drop[lo:hi]
        xp = x.reshape(G, -1, self.in_features)  # [G, M, in]
        if self.training and bool((drop > 0).any()):
            xp = self._dropout(xp, drop)
        return torch.bmm(xp, A.transpose(1, 2)) * gain[:, None, :], Bw.transpose(1, 2)

    def lora_out(self, x: torch.Tensor) -> torch.Tensor:
        """The adapters' output alone (no base): x [G*B, ..., in] -> [G*B, ..., out]."""
        h, bt = self._down(x)
        return torch.bmm(h, bt).reshape(*x.shape[:-1], self.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G*B, ..., in] -> [G*B, ..., out] for the G = hi - lo learners of `span`; rows of the
        g-th learner of the span are the g-th block of size B."""
        y = self.base(x)
        h, bt = self._down(x)
        return torch.baddbmm(y.reshape(h.shape[0], -1, self.out_features), h, bt).reshape(y.shape)

    def extra_repr(self) -> str:
        return f"P={self.P}, r_max={self.r_max}, in={self.in_features}, out={self.out_features}"


def inject(model: nn.Module, target_modules: Sequence[str], P: int, r_max: int
           ) -> dict[str, StackedLoRALinear]:
    """Replace every module whose name ends with a target (PEFT's suffix rule; q_proj, k_proj and
    v_proj also name a fused q/k/v module, see learners/arch.py) by a stacked layer.

    Returns {module name (as in `model.named_modules()`): layer}; raises ValueError (listing the
    model's linear module names) if a target matches no module.
    """
    targets = tuple(target_modules)
    check_targets(model, targets)
    found = [
        (name, mod) for name, mod in model.named_modules()
        if module_matches(name, targets) and not isinstance(mod, StackedLoRALinear)
    ]
    layers: dict[str, StackedLoRALinear] = {}
    for name, mod in found:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        layer = StackedLoRALinear(mod, P, r_max)
        setattr(parent, child, layer)
        layers[name] = layer
    return layers


__all__ = ["StackedLoRALinear", "inject", "module_matches", "peft_init_A", "linear_dims"]
