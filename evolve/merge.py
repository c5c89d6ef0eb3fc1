"""Adapter crossover: merge the LoRA adapters of two or more parents into one child adapter of rank r.

Works on plain tensors, no PEFT in the hot path. An adapter is, per adapted layer,
`A [r, in]` and `B [out, r]` with the update `delta = scale * B @ A  [out, in]`, `scale = alpha / r`.

- `linear`: delta = sum_i w_i delta_i. Exact (the parents' factors side by side, PEFT's `cat`) when
  sum_i r_i <= r; otherwise the best rank-r approximation (the same delta as `svd`).
- `svd`: delta = sum_i w_i delta_i, truncated SVD to rank r, sqrt(S) on each of B and A.
- `ties`: trim each delta to its top `density` fraction by magnitude, elect the sign per entry
  (sign of the sum), average the weighted entries that agree with it, then SVD to rank r
  (PEFT's `ties_svd`; PEFT's plain `ties` trims A and B separately instead).

A child slot that the merge leaves empty (rank(delta) < r) gets B = 0 and a non-zero A row, as LoRA
initialises, so the slot can still learn; the delta is unchanged by it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from common.errors import EvolveError
from evolve.config import MERGE_METHODS


@dataclass
class LoraFactors:
    """One learner's adapter: layer name -> (A [r, in], B [out, r]); update = scale * B @ A."""

    layers: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scale: float                                            # alpha / r

    def delta(self) -> dict[str, torch.Tensor]:
        """layer name -> scale * B @ A  [out, in]."""
        return {n: self.scale * (b @ a) for n, (a, b) in self.layers.items()}

    @property
    def rank(self) -> int:
        return next(iter(self.layers.values()))[0].shape[0] if self.layers else 0


def _trim(t: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the top `density` fraction of entries by magnitude (PEFT's magnitude pruning)."""
    if density >= 1:
        return t
    k = int(density * t.numel())
    mask = torch.zeros(t.numel(), dtype=t.dtype, device=t.device)
    mask[torch.topk(t.abs().reshape(-1), k=k, largest=True).indices] = 1
    return t * mask.reshape(t.shape)


def ties_delta(deltas: Sequence[torch.Tensor], weights: Sequence[float], density: float) -> torch.Tensor:
    """TIES on full deltas [out, in]: trim, elect sign (of the unweighted sum), disjoint mean."""
    t = torch.stack([_trim(d, density) for d in deltas])               # [n, out, in]
    agree = t.sign() == torch.where(t.sum(0) >= 0, 1.0, -1.0)          # elected sign per entry
    w = torch.tensor(list(weights), dtype=t.dtype).view(-1, 1, 1)
    return (t * w * agree).sum(0) / agree.sum(0).clamp(min=1)


def _factor_lowrank(b: torch.Tensor, a: torch.Tensor, rank: int, scale: float,
                    gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Rank-`rank` (A, B) with scale * B @ A the best approximation of b @ a.

    b [out, R], a [R, in]: QR of both factors, then the SVD of the small R x R core, so a
    4096 x 4096 layer costs an R x R SVD instead of a 4096 x 4096 one.
    """
    qb, rb = torch.linalg.qr(b)                                      # [out, R'], [R', R]
    qa, ra = torch.linalg.qr(a.T)                                    # [in, R''], [R'', R]
    u, s, vh = torch.linalg.svd(rb @ ra.T)                           # core [R', R'']
    u, vh = qb @ u, vh @ qa.T                                        # [out, k], [k, in]
    return _split(u, s, vh, rank, scale, gen)


def _split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int, scale: float,
           gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """sqrt(S) on each side, divided by sqrt(scale); empty slots get B = 0, A = unit row * mean."""
    out_dim, in_dim = u.shape[0], vh.shape[1]
    k = min(rank, s.shape[0])
    root = s[:k].clamp(min=0).sqrt()
    live = root > (root.max() * 1e-6 if k else 0)        # below 1e-6 of the top: an empty slot
    fill = root[live].mean() if bool(live.any()) else torch.tensor(1.0, dtype=u.dtype)
    a = torch.zeros(rank, in_dim, dtype=u.dtype)
    b = torch.zeros(out_dim, rank, dtype=u.dtype)
    a[:k] = vh[:k] * torch.where(live, root, fill)[:, None]
    b[:, :k] = u[:, :k] * torch.where(live, root, torch.zeros_like(root))[None, :]
    if rank > k:                                                     # rows with no direction at all
        r = torch.randn(rank - k, in_dim, generator=gen, dtype=u.dtype)
        a[k:] = r / r.norm(dim=1, keepdim=True) * fill
    c = scale ** -0.5
    return a * c, b * c


def merge_adapters(parents: Sequence[LoraFactors], weights: Sequence[float] | None = None,
                   method: str = "svd", rank: int | None = None, alpha: float | None = None,
                   density: float = 0.5, layers: Sequence[str] | None = None,
                   seed: int = 0) -> LoraFactors:
    """Merge `parents` into one adapter of `rank` (default the first parent's) and `alpha`
    (default `rank`, so scale 1). A layer a parent lacks counts as a zero delta for it. `layers`
    default: every layer of any parent. `seed` only fills slots the merge leaves empty."""
    if method not in MERGE_METHODS:
        raise EvolveError(f"unknown merge method {method!r}; valid: {', '.join(MERGE_METHODS)}")
    if not parents:
        raise EvolveError("merge needs at least one parent adapter")
    w = [1.0 / len(parents)] * len(parents) if weights is None else [float(x) for x in weights]
    if len(w) != len(parents):
        raise EvolveError(f"{len(w)} merge weights for {len(parents)} parents; give one each")
    if method == "ties" and not 0 < density <= 1:
        raise EvolveError(f"ties density must be in (0, 1], got {density}")
    rank = rank or parents[0].rank
    scale = (alpha if alpha is not None else rank) / rank
    names = list(layers) if layers is not None else list(dict.fromkeys(
        n for p in parents for n in p.layers))
    gen = torch.Generator().manual_seed(seed)
    out: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for name in names:
        have = [(p, wi) for p, wi in zip(parents, w, strict=True) if name in p.layers]
        if not have:
            raise EvolveError(f"no parent adapter has layer {name!r}; merge only shared layers")
        if method == "ties":
            d = ties_delta([p.scale * (p.layers[name][1] @ p.layers[name][0]) for p, _ in have],
                           [wi for _, wi in have], density)
            u, s, vh = torch.linalg.svd(d, full_matrices=False)
            out[name] = _split(u, s, vh, rank, scale, gen)
            continue
        b = torch.cat([p.layers[name][1] for p, _ in have], dim=1)                 # [out, R]
        a = torch.cat([wi * p.scale * p.layers[name][0] for p, wi in have], dim=0)  # [R, in]
        if method == "linear" and a.shape[0] <= rank:                               # exact: cat
            a, extra = a / scale, rank - a.shape[0]
            pad = torch.randn(extra, a.shape[1], generator=gen, dtype=a.dtype)
            pad = pad / pad.norm(dim=1, keepdim=True) * a.norm(dim=1).mean()        # LoRA-like init
            out[name] = (torch.cat([a, pad]), torch.cat([b, b.new_zeros(b.shape[0], extra)], dim=1))
        else:
            out[name] = _factor_lowrank(b, a, rank, scale, gen)
    return LoraFactors(out, scale)


def resize(adapter: LoraFactors, rank: int, alpha: float | None = None, seed: int = 0) -> LoraFactors:
    """The same update at another rank (exact when growing; best rank-r approximation when
    shrinking): for a child whose genome changed rank but inherits its parent's adapter."""
    return merge_adapters([adapter], [1.0], "linear", rank, alpha, seed=seed)


def add_noise(adapter: LoraFactors, std: float, seed: int) -> LoraFactors:
    """Every A and B plus Gaussian noise of `std` times that tensor's RMS (a B of zeros stays 0)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(adapter.layers):
        a, b = adapter.layers[name]
        out[name] = tuple(t + torch.randn(t.shape, generator=gen, dtype=t.dtype) * std
                          * t.pow(2).mean().sqrt() for t in (a, b))
    return LoraFactors(out, adapter.scale)  # type: ignore[arg-type]


def max_delta_error(x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> float:
    """max over layers of |x - y|_max / |y|_max: the relative error the tests report."""
    return max(float((x[n] - y[n]).abs().max() / y[n].abs().max().clamp(min=1e-30)) for n in y)
