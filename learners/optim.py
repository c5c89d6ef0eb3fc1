"""AdamW over stacked adapter tensors, with every hyperparameter and all state per learner slice.

Each parameter is `[P, ...]`; slice p belongs to learner p alone. The update of slice p is exactly
`torch.optim.AdamW` (decoupled weight decay, bias-corrected moments) preceded by
`clip_grad_norm_(learner p's parameters, max_norm_p)`, so a learner in the population moves as if it
were trained alone. One `clip_grad_norm_` over the stacked tensors would couple the learners.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

import torch


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[P] -> [P, 1, 1, ...] to broadcast against a `[P, ...]` tensor."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


class AdamSlice(TypedDict):
    """One learner's optimiser state: per-parameter moments (each cut to that learner) and step."""

    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]
    step: float


class StackedAdamW:
    """Per-learner AdamW on `[P, ...]` tensors; learners not marked active this step are untouched."""

    def __init__(self, params: Sequence[torch.Tensor], lr: Sequence[float],
                 weight_decay: Sequence[float], max_grad_norm: Sequence[float | None],
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.params = list(params)
        dev = self.params[0].device
        self.P = self.params[0].shape[0]
        # float64 per-learner scalars: lr as large as 1e30 (a poisoned learner) must stay finite here
        self.lr = torch.tensor(list(lr), dtype=torch.float64, device=dev)
        self.weight_decay = torch.tensor(list(weight_decay), dtype=torch.float64, device=dev)
        self.max_grad_norm = torch.tensor(
            [float("inf") if m is None else m for m in max_grad_norm], dtype=torch.float64, device=dev)
        self.beta1, self.beta2 = betas
        self.eps = eps
        self.step_count = torch.zeros(self.P, dtype=torch.float64, device=dev)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]

    def grad_norms(self) -> torch.Tensor:
        """[P] float64: each learner's gradient 2-norm over all its parameters (0 without grads)."""
        sq = torch.zeros(self.P, dtype=torch.float64, device=self.lr.device)
        for p in self.params:
            if p.grad is not None:
                sq += p.grad.detach().double().pow(2).reshape(self.P, -1).sum(1)
        return sq.sqrt()

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> torch.Tensor:
        """Update the learners where `active` [P] bool is set and whose gradients are finite.

        Returns [P] bool: the learners that were updated (active, finite gradients and finite new
        weights). The others keep weights, moments and step count bit for bit.
        """
        norms = self.grad_norms()
        ok = active.to(self.lr.device) & torch.isfinite(norms)
        # clip_grad_norm_: coef = max_norm / (norm + 1e-6), clamped to 1
        coef = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        coef = torch.where(ok, coef, torch.zeros_like(coef))
        new_count = self.step_count + ok.double()
        step = new_count.clamp(min=1.0)
        bc1 = 1 - self.beta1 ** step
        bc2_sqrt = (1 - self.beta2 ** step).sqrt()
        step_size = self.lr / bc1
        decay = 1 - self.lr * self.weight_decay
        staged = []
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
            if p.grad is None:
                continue
            g = torch.where(_bcast(ok, p), p.grad * _bcast(coef, p).to(p.dtype), torch.zeros_like(p))
            new_m = m.lerp(g, 1 - self.beta1)
            new_v = v * self.beta2 + (1 - self.beta2) * g * g
            denom = new_v.sqrt() / _bcast(bc2_sqrt, p).to(p.dtype) + self.eps
            new_p = p * _bcast(decay, p).to(p.dtype) - _bcast(step_size, p).to(p.dtype) * new_m / denom
            ok = ok & torch.isfinite(new_p).reshape(self.P, -1).all(1)  # e.g. lr 1e30 overflows
            staged.append((p, m, v, new_p, new_m, new_v))
        for p, m, v, new_p, new_m, new_v in staged:
            okb = _bcast(ok, p)
            p.copy_(torch.where(okb, new_p, p))
            m.copy_(torch.where(okb, new_m, m))
            v.copy_(torch.where(okb, new_v, v))
        self.step_count = torch.where(ok, new_count, self.step_count)
        return ok

    def zero_grad(self) -> None:
        """Drop the gradients (set to None, as torch optimisers do by default)."""
        for p in self.params:
            p.grad = None

    def get_slice(self, p: int) -> AdamSlice:
        """Learner p's optimiser state: its moments per parameter, step and hyperparameters."""
        return {
            "exp_avg": [m[p].detach().clone().cpu() for m in self.exp_avg],
            "exp_avg_sq": [v[p].detach().clone().cpu() for v in self.exp_avg_sq],
            "step": float(self.step_count[p]),
        }

    def set_slice(self, p: int, state: AdamSlice) -> None:
        """Copy a `get_slice` state into learner p (moments and step)."""
        with torch.no_grad():
            for dst, src in zip(self.exp_avg, state["exp_avg"], strict=True):
                dst[p] = src.to(dst.device, dst.dtype)
            for dst, src in zip(self.exp_avg_sq, state["exp_avg_sq"], strict=True):
                dst[p] = src.to(dst.device, dst.dtype)
            self.step_count[p] = float(state["step"])

    def set_hparams(self, p: int, lr: float, weight_decay: float, max_grad_norm: float | None
                    ) -> None:
        """Set learner p's learning rate, weight decay and clipping threshold (None = no clipping)."""
        self.lr[p] = lr
        self.weight_decay[p] = weight_decay
        self.max_grad_norm[p] = float("inf") if max_grad_norm is None else max_grad_norm
