"""Spectral signals with weightwatcher, the only module of the project that imports it.

The caller passes the adapted layers' MERGED weights (base + LoRA delta, `[out, in]` each): a rank-r
delta alone has only r eigenvalues, too few for a power-law fit, and weightwatcher's own `peft`
modes give meaningless alphas at small rank. Fits on small matrices are weak, so every layer reports
how many eigenvalues its ESD had (`num_evals`) and how many the power-law tail used
(`num_pl_spikes`); layers under weightwatcher's own minimum (`DEFAULT_MIN_EVALS`, 8) are still fit
but marked `reliable: False` rather than hidden.

Correlation traps: weightwatcher's `randomize=True` finds them by fitting a Marchenko-Pastur density
to the element-permuted matrix, which took 2.2 s per 128x128 layer here (a brute-force KDE fit) vs
0.02 s for the alpha fit. We permute the entries the same way but compare the permuted matrix's top
singular value with the random-matrix edge std(W)*(sqrt(out)+sqrt(in)) (milliseconds): a ratio above
`TRAP_RATIO` is a trap. On Gaussian matrices the ratio's 99th percentile was 1.055 at 16x16 and 1.02
at 128x128 (200 draws each, max 1.09); one planted outlier entry gave 1.9-3.8.

Threads: weightwatcher's SVDs run in BLAS threads that spin-wait; on a busy 2-core box an analysis
went from 0.16 s to 27 s (docs/measurements.md). Everything here runs under `threadpool_limits(1)`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

BAND = (2.0, 6.0)        # weightwatcher's well-trained band for the power-law exponent alpha
TRAP_RATIO = 1.2         # permuted top singular value / random edge above this = correlation trap
FIT_MIN_EVALS = 2        # fit down to 2 eigenvalues (weightwatcher would skip them), then flag


_QUIET_LOCK = threading.Lock()
_QUIET: dict[str, Any] = {"depth": 0, "saved": None}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """No prints, warnings or log lines from weightwatcher (it prints per small layer).

    sys.stdout/stderr, the warning filters and the log level are process-wide, and the local
    backend analyses learner groups on several threads at once: the first thread in silences them,
    the last one out restores them. (Nested `redirect_stdout`s on two threads that exit in the
    order they entered left sys.stdout pointing at a StringIO for the rest of the process: `evolve
    run` then printed nothing after its first spectral analysis, its final table included.)
    """
    log = logging.getLogger("weightwatcher")
    with _QUIET_LOCK:
        if _QUIET["depth"] == 0:
            _QUIET["saved"] = (sys.stdout, sys.stderr, list(warnings.filters), log.level)
            sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
            warnings.simplefilter("ignore")
            log.setLevel(logging.CRITICAL)
        _QUIET["depth"] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET["depth"] -= 1
            if _QUIET["depth"] == 0:
                sys.stdout, sys.stderr, filters, level = _QUIET["saved"]
                warnings.filters = filters  # type: ignore[misc]
                mutated = getattr(warnings, "_filters_mutated", None)  # drop cached verdicts
                if mutated is not None:
                    mutated()
                log.setLevel(level)


def _one_thread() -> contextlib.AbstractContextManager[Any]:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # weightwatcher pulls in scikit-learn, which needs threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)


def band_distance(alpha: float | None) -> float | None:
    """Distance of alpha from [2, 6]: 0 inside the band."""
    if alpha is None:
        return None
    return max(BAND[0] - alpha, 0.0, alpha - BAND[1])


def _alphas(merged: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], int]:
    """weightwatcher's power-law fit per layer, and its own minimum number of eigenvalues."""
    import torch

    with _quiet():
        import weightwatcher as ww
        from weightwatcher.constants import DEFAULT_MIN_EVALS

        module = torch.nn.Module()
        names = list(merged)
        for j, name in enumerate(names):
            w = torch.as_tensor(merged[name]).detach().to("cpu", torch.float32)
            if w.ndim != 2:
                raise ValueError(f"spectral: layer {name!r} has shape {tuple(w.shape)}; pass 2-D "
                                 "[out, in] weight matrices")
            lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False)
            lin.weight.data = w.clone()
            module.add_module(f"m{j}", lin)
        details = ww.WeightWatcher(model=module).analyze(min_evals=FIT_MIN_EVALS)
    rows = {str(r["name"]): r for r in details.to_dict("records")} if len(details) else {}
    out = {}
    for j, name in enumerate(names):
        r = rows.get(f"m{j}")
        n_evals = int(min(merged[name].shape))
        alpha = None if r is None else _finite(r.get("alpha"))
        out[name] = {
            "alpha": alpha, "num_evals": n_evals,
            "num_pl_spikes": None if r is None else int(r.get("num_pl_spikes") or 0),
            "reliable": alpha is not None and n_evals >= DEFAULT_MIN_EVALS,
            "shape": [int(s) for s in merged[name].shape]}
    return out, int(DEFAULT_MIN_EVALS)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def trap_ratio(w: np.ndarray, seed: int = 0) -> float | None:
    """Top singular value of `w` [out, in] with its entries permuted, over the random-matrix edge
    std(w) * (sqrt(out) + sqrt(in)). None for a constant matrix."""
    std = float(w.std())
    if std == 0.0 or min(w.shape) == 0:
        return None
    perm = np.random.default_rng(seed).permutation(w.ravel()).reshape(w.shape)
    top = float(np.linalg.svd(perm, compute_uv=False)[0])
    return top / (std * (math.sqrt(w.shape[0]) + math.sqrt(w.shape[1])))


def _flat(d: Mapping[str, Any], names: Sequence[str]) -> np.ndarray:
    return np.concatenate([_np(d[n]).ravel() for n in names])


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy() if hasattr(t, "detach") else np.asarray(t, float)


def _cos(a: np.ndarray, b: np.ndarray) -> float | None:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return None if na == 0.0 or nb == 0.0 else float(a @ b / (na * nb))


def update_cosines(deltas: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Cosine similarity of successive LoRA updates. `deltas[t]` is the delta (B@A*scale, [out,
    in] per layer) at checkpoint t; update u_t = delta[t] - delta[t-1]; cos(u_t, u_t+1) per layer
    and over all layers at once. None with fewer than 3 checkpoints (fewer than 2 updates)."""
    if len(deltas) < 3:
        return None
    names = sorted(deltas[0])
    ups = [{n: _np(b[n]) - _np(a[n]) for n in names}
           for a, b in zip(deltas, deltas[1:], strict=False)]
    per_layer = {n: [_cos(u[n].ravel(), v[n].ravel()) for u, v in zip(ups, ups[1:], strict=False)]
                 for n in names}
    series = [_cos(_flat(u, names), _flat(v, names)) for u, v in zip(ups, ups[1:], strict=False)]
    ok = [c for c in series if c is not None]
    return {"series": series, "per_layer": per_layer,
            "mean": sum(ok) / len(ok) if ok else None,
            "mean_abs": sum(map(abs, ok)) / len(ok) if ok else None}


def spectral(merged: Mapping[str, Any], deltas_over_time: Sequence[Mapping[str, Any]] | None = None,
             seed: int = 0) -> dict[str, Any]:
    """weightwatcher on `merged` (layer name -> [out, in] base + LoRA delta) plus update cosines.

    Returns a JSON-ready dict: `layers` {name: {alpha, num_evals, num_pl_spikes, reliable, shape,
    trap_ratio, trap}}, `mean_alpha` (over reliable fits; over all fits when none is reliable,
    then `mean_alpha_reliable` is False), `alpha_distance` (from the 2-6 band), `n_alpha_below_2`,
    `n_traps`, `warnings` (one line each), `min_evals` (weightwatcher's), `update_cosine`
    (see `update_cosines`, or None) and `seconds` (wall time of the whole call).
    """
    t0 = time.perf_counter()
    warn: list[str] = []
    with _one_thread():
        layers, min_evals = _alphas(merged) if merged else ({}, 8)
        for i, (name, row) in enumerate(layers.items()):
            ratio = trap_ratio(_np(merged[name]), seed + i)
            row["trap_ratio"] = ratio
            row["trap"] = ratio is not None and ratio > TRAP_RATIO
            a = row["alpha"]
            if a is None:
                warn.append(f"{name}: no power-law fit ({row['num_evals']} eigenvalues)")
                continue
            if not row["reliable"]:
                warn.append(f"{name}: unreliable fit, {row['num_evals']} eigenvalues < "
                            f"weightwatcher's minimum {min_evals}")
            if a < BAND[0]:
                warn.append(f"{name}: alpha {a:.2f} < 2 (over-fit warning)")
            if row["trap"]:
                warn.append(f"{name}: correlation trap (permuted top singular value "
                            f"{ratio:.2f}x the random edge)")
        cos = update_cosines(deltas_over_time) if deltas_over_time else None
    fitted = [r["alpha"] for r in layers.values() if r["alpha"] is not None]
    reliable = [r["alpha"] for r in layers.values() if r["reliable"]]
    use = reliable or fitted
    mean_alpha = sum(use) / len(use) if use else None
    return {"layers": layers, "mean_alpha": mean_alpha, "mean_alpha_reliable": bool(reliable),
            "alpha_distance": band_distance(mean_alpha),
            "n_alpha_below_2": sum(a < BAND[0] for a in fitted),
            "n_traps": sum(bool(r["trap"]) for r in layers.values()),
            "warnings": warn, "min_evals": min_evals, "update_cosine": cos,
            "seconds": time.perf_counter() - t0}
