"""Fused element-wise CPU kernels for the fast path: learners/kernels.c, built on first use.

The fast path's matmuls already run near the CPU's GEMM peak; what remained was about 40% of a
step in element-wise passes (RMSNorm, RoPE, SwiGLU) and small attention bmm, each a torch kernel
streaming [rows, width] arrays through memory. kernels.c does each of those in one pass. As first
written, measured on one thread of this project's 2-core CPU, [512, 512] float32, interleaved: the
SwiGLU forward epilogue 325-340 -> 222 us, its backward 283-325 -> 78-85 us; in a training step
(P = 16, one thread) the attention forward went from 1.44 to about 1.0 ms and its backward from
2.25 to 1.5 ms per call. docs/learners.md lists the later changes (the SwiGLU keeping g and u
only, the attention in the projections' layout, a vectorised transpose) and bench/population.py
gives the step-level figures.

The library is compiled once with the system C compiler (`$CC`, else `cc`; about a second) into
`$EVOLVE_CACHE` (default `~/.cache/evolve`), keyed by the source, the flags and the CPU, and loaded
with ctypes (calls release the GIL, so the local backend's threads run them in parallel).
`library()` returns None, and the fast path uses torch ops instead, where there is no compiler,
the build fails (a warning says why), or `EVOLVE_KERNELS=0`. The kernels cover float32 CPU tensors
(the attention: head dims 8, 16, 24, 32); other dtypes, devices and head dims take the torch ops.
Equality with torch is tested in tests/learners/test_kernels.py and, through the whole forward and
backward, in tests/learners/test_fastpath.py.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from common.cache import cache_root

SOURCE = Path(__file__).with_name("kernels.c")
# -fno-trapping-math lets float selects vectorize; no -ffast-math, which would drop NaN handling
# -march: native by default; EVOLVE_KERNELS_MARCH (e.g. x86-64-v3) builds for an instruction set
# instead (docs/reproducibility.md measures what each choice changes)
MARCH = os.environ.get("EVOLVE_KERNELS_MARCH", "native")
FLAGS = ("-O3", f"-march={MARCH}", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd",
         "-shared", "-fPIC")

_P, _I, _F = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float
_SIGNATURES = {
    "swiglu_fwd": [_P, _P, _P, _P, _P, _I],
    "swiglu_bwd": [_P, _P, _P, _P, _I],
    "rmsnorm_fwd": [_P, _I, _P, _P, _P, _I, _I, _F],
    "rmsnorm_bwd": [_P, _I, _P, _P, _P, _P, _I, _I],
    "rope": [_P, _I, _I, _I, _P, _I, _I, _I, _P, _P, _F, _I, _I, _I, _I],
    "attention_fwd": [_P, _P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _F],
    "attention_bwd": [_P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _F],
}


def _cpu_id() -> str:
    """What -march=native depends on: the CPU's model and flags."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    keep = [ln for ln in info.splitlines() if ln.startswith(("model name", "flags"))]
    return "\n".join(sorted(set(keep)))


def _build(cc: str, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:   # then an atomic rename
        so = Path(tmp) / out.name
        subprocess.run([cc, *FLAGS, "-o", str(so), str(SOURCE)], check=True, capture_output=True,
                       text=True, timeout=120)
        os.replace(so, out)


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be had (see the module docstring)."""
    if os.environ.get("EVOLVE_KERNELS", "1") == "0":
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *FLAGS, cc, platform.machine(),
                                    _cpu_id()]).encode()).hexdigest()[:16]
    so = cache_root() / "kernels" / f"kernels-{key}.so"
    try:
        if not so.exists():
            _build(cc, so)
        lib = ctypes.CDLL(str(so))
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", None) or e
        warnings.warn(f"evolve: fused CPU kernels unavailable ({str(detail).strip()[:300]}); "
                      "training uses torch ops instead (slower). Set EVOLVE_KERNELS=0 to silence.",
                      RuntimeWarning, stacklevel=2)
        return None
    for name, args in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, None
    return lib


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can take these tensors: float32 on the CPU, and the library built."""
    return (all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)
            and library() is not None)


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def swiglu_fwd(g: torch.Tensor, u: torch.Tensor, g_save: torch.Tensor, u_save: torch.Tensor,
               y: torch.Tensor) -> None:
    """Over equal-sized contiguous tensors: y = silu(g) * u; g_save = g and u_save = u (written
    with streaming stores: they are for the backward)."""
    ts = (g, u, g_save, u_save, y)
    assert all(t.is_contiguous() and t.numel() == g.numel() for t in ts)
    lib = library()
    assert lib is not None
    lib.swiglu_fwd(*(_ptr(t) for t in ts), g.numel())


def swiglu_bwd(dy: torch.Tensor, g: torch.Tensor, u: torch.Tensor, du: torch.Tensor) -> None:
    """In place, from y = silu(g) * u: du = silu(g) * dy; dy <- d(loss)/dg."""
    ts = (dy, g, u, du)
    assert all(t.is_contiguous() and t.numel() == dy.numel() for t in ts)
    lib = library()
    assert lib is not None
    lib.swiglu_bwd(*(_ptr(t) for t in ts), dy.numel())


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [rows, width] with unit column stride (a copy only when x has no such view)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def rmsnorm_fwd(x: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm of x [..., H] by w [H]: (y [..., H] contiguous, r [rows] = 1/rms per row)."""
    x2 = _rows(x)
    rows, h = x2.shape
    y, r = x.new_empty(x.shape), x.new_empty(rows)
    lib = library()
    assert lib is not None and w.is_contiguous()
    lib.rmsnorm_fwd(_ptr(x2), x2.stride(0), _ptr(w), _ptr(y), _ptr(r), rows, h, eps)
    return y, r


def rmsnorm_bwd(x: torch.Tensor, w: torch.Tensor, r: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """d(loss)/dx of RMSNorm, from rmsnorm_fwd's x, w, r and dy [..., H]."""
    x2, dy = _rows(x), dy.contiguous()
    rows, h = x2.shape
    dx = x.new_empty(x.shape)
    lib = library()
    assert lib is not None
    lib.rmsnorm_bwd(_ptr(x2), x2.stride(0), _ptr(w), _ptr(r), _ptr(dy), _ptr(dx), rows, h)
    return dx


def rope(x: torch.Tensor, out: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
         sign: float = 1.0) -> None:
    """out = RoPE(x) (sign -1: the inverse rotation), x and out [n, t, heads, d] with any strides
    but a unit last one, cos/sin [t, d/2] contiguous."""
    assert x.stride(-1) == 1 and out.stride(-1) == 1 and cos.is_contiguous() and sin.is_contiguous()
    n, t, heads, d = x.shape
    assert out.shape == x.shape and cos.shape == (t, d // 2) == sin.shape
    lib = library()
    assert lib is not None
    lib.rope(_ptr(x), x.stride(0), x.stride(1), x.stride(2), _ptr(out), out.stride(0),
             out.stride(1), out.stride(2), _ptr(cos), _ptr(sin), sign, n, t, heads, d)


def attention_usable(q: torch.Tensor) -> bool:
    """Whether attention_fwd/bwd take queries like q [..., Tq, d]: the kernels' tiles need d in
    {8, 16, 24, 32}."""
    return q.shape[-1] in (8, 16, 24, 32) and usable(q)


def _strides(x: torch.Tensor) -> Any:
    """A 4D [rows, heads, t, d] tensor's (row, head, position) strides for the C kernels (its last
    stride must be 1); contiguous or a transposed view of [rows, t, heads, d]."""
    assert x.dim() == 4 and x.stride(3) == 1 and x.dtype == torch.float32
    return (ctypes.c_int64 * 3)(x.stride(0), x.stride(1), x.stride(2))


def _scratch(q: torch.Tensor, t: int) -> torch.Tensor:
    """The attention kernels' working memory for queries q [..., Tq, d] over t keys: a transposed
    [d, tp] operand and [Tq, tp] scores, tp = t rounded up to the tiles' 8."""
    tq, d = q.shape[-2:]
    tp = -(-t // 8) * 8
    return q.new_empty(d * tp + tq * tp)


def attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, t0: int,
                  scale: float) -> torch.Tensor:
    """Causal attention of queries q [N, h, Tq, d] at positions t0.. over keys and values k, v
    [N, h, T, d] (query i sees keys j <= t0 + i) into o [N, h, Tq, d]; returns p [N*h, Tq, T], the
    softmax (0 past the diagonal). q and k contiguous; v and o any strides with a unit last one
    (e.g. transposed views of [N, T, h, d]: the projections' layout, no copy)."""
    assert q.is_contiguous() and k.is_contiguous()
    N, h, tq, d = q.shape
    t = k.shape[2]
    p, scratch = q.new_empty(N * h, tq, t), _scratch(q, t)   # held: the C call only gets pointers
    lib = library()
    assert lib is not None
    lib.attention_fwd(_ptr(q), _ptr(k), _ptr(v), _strides(v), _ptr(o), _strides(o), _ptr(p),
                      _ptr(scratch), N * h, h, tq, t, d, t0, scale)
    return p


def attention_bwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: torch.Tensor,
                  do: torch.Tensor, dv: torch.Tensor, t0: int, scale: float, need_dk: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The backward of attention_fwd from its q, k, v and p: writes dv (shaped and strided like
    v's argument there) and returns dq [N, h, Tq, d] and dk [N, h, T, d] (None unless `need_dk`).
    do [N, h, Tq, d]: any strides with a unit last one."""
    N, h, tq, d = q.shape
    t = k.shape[2]
    dq, dk = torch.empty_like(q), torch.empty_like(k) if need_dk else None
    scratch = _scratch(q, t)
    lib = library()
    assert lib is not None
    lib.attention_bwd(_ptr(q), _ptr(k), _ptr(v), _strides(v), _ptr(p), _ptr(do), _strides(do),
                      _ptr(dq), _ptr(dk) if dk is not None else None, _ptr(dv), _strides(dv),
                      _ptr(scratch), N * h, h, tq, t, d, t0, scale)
    return dq, dk


__all__ = ["attention_bwd", "attention_fwd", "attention_usable", "library", "rmsnorm_bwd",
           "rmsnorm_fwd", "rope", "swiglu_bwd", "swiglu_fwd", "usable"]
