"""Shared pieces of the benchmarks: the base model, workloads, a GEMM peak, PEFT twins, workers.

Import this before torch: it sets `OMP_WAIT_POLICY=PASSIVE` (spin-waiting OpenMP threads run 65x
slower when another process is busy on the machine, see NOTES.md).
"""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

Pair = tuple[str, str]
CORES = os.cpu_count() or 1


def save_bench_base(out: Path, base: str | None = None, untrained: bool = False,
                    hidden: int | None = None) -> str:
    """Save the benchmark's base to `out`; returns a description for the JSON.

    `base`: a saved base directory; `untrained`: an untrained base of the default `BaseConfig`;
    `hidden`: an untrained base of width `hidden` (MLP 4x, head dim 32, 4 blocks) to see how the
    figures change with the base's size; neither: the embedded default base
    (`evolve.basemodel.default_base()`, built on first use), or the untrained one where that module
    is missing.
    """
    from learners.base import BaseConfig, build_base, load_base, save_base
    from learners.tokenizer import build_char_tokenizer

    if base is not None:
        model, tok = load_base(base)
        kind = f"saved base {base}"
    elif hidden is not None:
        tok = build_char_tokenizer()
        cfg = BaseConfig(hidden_size=hidden, intermediate_size=4 * hidden, num_heads=max(1, hidden // 32))
        model = build_base(cfg, tok, seed=0)
        kind = f"untrained base, hidden {hidden}, MLP {4 * hidden}, {cfg.num_layers} blocks"
    else:
        try:
            if untrained:
                raise ImportError
            from evolve.basemodel import default_base

            model, tok = load_base(default_base())
            kind = "embedded default base (evolve.basemodel.default_base)"
        except ImportError:
            tok = build_char_tokenizer()
            model = build_base(BaseConfig(), tok, seed=0)
            kind = "untrained base of the default BaseConfig"
    save_base(model, tok, out)
    return kind


def add_base_args(ap: Any) -> None:
    """--base / --untrained for both benchmarks."""
    ap.add_argument("--base", default=None, help="a saved base directory (default: the embedded "
                    "default base, built on first use)")
    ap.add_argument("--untrained", action="store_true",
                    help="an untrained base of the default BaseConfig instead (no build wait)")
    ap.add_argument("--hidden", type=int, default=None, metavar="H",
                    help="an untrained base of width H (MLP 4H, 4 blocks): the figures by base size")


def load(path: str, threads: int, device: str = "cpu") -> tuple[Any, Any]:
    """The saved base in float32, eager attention, with `threads` torch threads."""
    torch.set_num_threads(threads)
    from learners.base import load_base

    model, tok = load_base(path)
    return model.float().to(device).eval(), tok


def train_pairs(n: int, seed: int, prompt_len: int = 24) -> list[Pair]:
    """n pairs of about 32 tokens (bos + 24-char prompt + '=' + 5-digit answer + eos)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        digits = "".join(rng.choice("0123456789+") for _ in range(prompt_len))
        out.append((digits + "=", str(rng.randrange(10_000, 100_000))))
    return out


def addition_pairs(n: int, seed: int) -> list[Pair]:
    """n distinct 2-digit additions "a+b=" -> "c" (what the embedded base was pretrained on)."""
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    while len(seen) < n:
        seen.add((rng.randrange(100), rng.randrange(100)))
    return [(f"{a}+{b}=", str(a + b)) for a, b in sorted(seen, key=lambda _: rng.random())]


def gemm_peak(threads: int, n: int = 1024, reps: int = 5) -> float:
    """Median dense float32 matmul GFLOP/s (n x n) with `threads` threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    torch.set_num_threads(old)
    return 2 * n**3 / statistics.median(times) / 1e9


def peft_twin(model: Any, pop: Any, i: int) -> Any:
    """A PEFT LoraModel on a copy of `model` holding learner i of `pop`."""
    from peft import LoraConfig, get_peft_model

    spec = pop.specs[i]
    cfg = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0,
                     target_modules=list(spec.target_modules or pop.default_targets))
    pm = get_peft_model(copy.deepcopy(model), cfg)
    state = pop.get_state(i)
    for name, mod in pm.base_model.model.named_modules():
        if name in state.lora and hasattr(mod, "lora_A"):
            mod.lora_A["default"].weight.data.copy_(state.lora[name][0])
            mod.lora_B["default"].weight.data.copy_(state.lora[name][1])
    return pm


def max_rss_mib() -> float:
    """Peak resident memory of this process in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_parallel(fn: Callable[..., dict], args: Sequence[tuple]) -> list[dict]:
    """Run fn(barrier, *a) for each a in its own spawned process at once; their results in order.

    Workers build their models, wait on the barrier, then time their work, so the timed parts
    overlap.
    """
    ctx = mp.get_context("spawn")
    with ctx.Manager() as mgr:
        barrier = mgr.Barrier(len(args))
        with ctx.Pool(len(args)) as pool:
            jobs = [pool.apply_async(fn, (barrier, *a)) for a in args]
            return [j.get() for j in jobs]


def tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="evolve-bench-")


def emit(result: dict, as_json: bool) -> None:
    """Print the result as JSON, or as `key: value` lines."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
