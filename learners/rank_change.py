"""A child that inherits an adapter at another rank: pad or truncate it, keep the optimiser state.

Pure functions on CPU tensors, the layout of `learners.population.LearnerState`: per module
`(A [r, in], B [out, r])`, delta = scale * B @ A with scale = alpha / r, and AdamW moments of the
same shapes. Re-factorising the update from scratch (an SVD) gives the child new factors whose
AdamW moments mean nothing, so it starts with none; here the factors keep their meaning:

- growing (r -> r' > r): A gets r' - r new rows drawn like PEFT's init, B gets zero columns, and B
  is multiplied by scale / scale' so the update is exactly the parent's; the moments of the kept
  components are kept, those of the new ones start at zero;
- shrinking (r -> r' < r): the r' components with the largest contribution |B[:, j]| * |A[j]|
  are kept (with their moments), B again rescaled by scale / scale'; the rest is dropped.

The moments are kept as they were (Adam's update is invariant to a constant rescaling of a
gradient up to epsilon, so the rescaled B does not need rescaled moments).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from learners.lora import peft_init_A

Factors = dict[str, tuple[torch.Tensor, torch.Tensor]]


def keep_order(a: torch.Tensor, b: torch.Tensor, rank: int) -> list[int]:
    """Indices of the `rank` components of (A, B) kept by a truncation, in their original order."""
    weight = b.norm(dim=0) * a.norm(dim=1)                      # [r] contribution of component j
    top = torch.topk(weight, rank).indices if rank < weight.numel() else torch.arange(weight.numel())
    return sorted(int(i) for i in top)


def change_rank(lora: Mapping[str, tuple[torch.Tensor, torch.Tensor]], rank: int,
                old_scale: float, new_scale: float, seed: int,
                moments: tuple[Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None, ...] = (),
                ) -> tuple[Factors, tuple[Factors | None, ...]]:
    """(the adapter at `rank`, each of `moments` at `rank`); see the module doc."""
    if rank < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    gen = torch.Generator().manual_seed(int(seed))
    out: Factors = {}
    kept: dict[str, list[int]] = {}
    for name in sorted(lora):
        a, b = lora[name]
        r = a.shape[0]
        idx = keep_order(a, b, min(rank, r))
        ratio = old_scale / new_scale
        a2, b2 = a[idx], b[:, idx] * ratio
        if rank > r:
            a2 = torch.cat([a2, peft_init_A(rank - r, a.shape[1], gen).to(a.dtype)])
            b2 = torch.cat([b2, b.new_zeros(b.shape[0], rank - r)], dim=1)
        out[name] = (a2.contiguous(), b2.contiguous())
        kept[name] = idx
    new_moments: list[Factors | None] = []
    for m in moments:
        if not m:
            new_moments.append(None)
            continue
        mm: Factors = {}
        for name, idx in kept.items():
            if name not in m:
                continue
            ma, mb = m[name]
            ma2, mb2 = ma[idx], mb[:, idx]
            extra = rank - len(idx)
            if extra > 0:
                ma2 = torch.cat([ma2, ma.new_zeros(extra, ma.shape[1])])
                mb2 = torch.cat([mb2, mb.new_zeros(mb.shape[0], extra)], dim=1)
            mm[name] = (ma2.contiguous(), mb2.contiguous())
        new_moments.append(mm)
    return out, tuple(new_moments)


__all__ = ["change_rank", "keep_order"]
