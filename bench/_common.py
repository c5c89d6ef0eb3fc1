"""Shared pieces of the benchmarks: the base model, workloads, a GEMM peak, PEFT twins, workers.

Import this before torch: it sets `OMP_WAIT_POLICY=PASSIVE` (spin-waiting OpenMP threads run 65x
slower when another process is busy on the machine, see docs/measurements.md).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import queue
import random
import resource
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


def resolve_bench_base(base: str) -> str:
    """A --base value as a directory: an existing path as it is (a real model is not re-saved), or
    a name the learners' resolver knows (`smollm2`, a .gguf file), where that resolver exists."""
    p = Path(base).expanduser()
    if p.is_dir():
        return str(p)
    try:  # "real"'s resolver: smollm2 or a .gguf file -> a cached standard directory
        from learners.resolve import resolve  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise SystemExit(f"bench: --base {base}: no such directory; pass a saved causal-LM "
                         "directory") from None
    return str(resolve(base))


def bench_base(tmp: Path, base: str | None = None, untrained: bool = False,
               hidden: int | None = None) -> tuple[str, str]:
    """(directory, description) of the benchmark's base: --base as it is, else `save_bench_base`
    into `tmp`."""
    if base is not None:
        path = resolve_bench_base(base)
        return path, f"saved base {path}"
    return str(tmp), save_bench_base(tmp, None, untrained, hidden)


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


def lora_config(spec: Any, targets: Sequence[str]) -> Any:
    """PEFT's LoraConfig for a LearnerSpec on modules `targets` (their own names)."""
    from peft import LoraConfig

    return LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0,
                      target_modules=list(targets))


def peft_adapters(model: Any, pop: Any) -> Any:
    """ONE PEFT model on `model` (modified in place; never copied) holding every learner of
    `pop` as an adapter named `l<i>`, as a user holds several adapters: `set_adapter("l3")`."""
    from peft import get_peft_model

    from learners.arch import leaf

    pm = None
    for i, spec in enumerate(pop.specs):
        state = pop.get_state(i)
        cfg = lora_config(spec, sorted({leaf(n) for n in state.lora}))
        if pm is None:
            pm = get_peft_model(model, cfg, adapter_name=f"l{i}")
        else:
            pm.add_adapter(f"l{i}", cfg)
        inner = pm.base_model.model
        for name, mod in inner.named_modules():
            if name in state.lora and hasattr(mod, "lora_A") and f"l{i}" in mod.lora_A:
                mod.lora_A[f"l{i}"].weight.data.copy_(state.lora[name][0])
                mod.lora_B[f"l{i}"].weight.data.copy_(state.lora[name][1])
    return pm


def max_rss_mib() -> float:
    """Peak resident memory of this process in MiB: VmHWM where /proc has it (getrusage's
    ru_maxrss survives exec, so a spawned worker would report its parent's peak), else ru_maxrss
    (Linux reports KiB)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _serve(setup: Callable[..., tuple[Callable[[], float], float]], args: tuple, cmd: Any,
           res: Any, barrier: Any) -> None:
    """A worker process: build with setup(*args), then time one repetition per "go"."""
    rep, work = setup(*args)
    res.put(("ready", work))
    while cmd.get() == "go":
        barrier.wait()
        c0 = time.process_time()   # this process's CPU seconds, all its threads
        wall = rep()
        res.put(("time", (wall, time.process_time() - c0)))
    res.put(("rss", max_rss_mib()))


class Way:
    """One way of doing the work: a process per element of `args`, each built by setup(*a) (which
    returns a function timing one repetition, and the work that repetition does), timed together.

    All ways of a comparison stay alive at once, so `interleave` can time them in alternating
    rounds: on a shared machine whose speed drifts by 20% from minute to minute, ways compared
    within one round see the same machine.
    """

    def __init__(self, setup: Callable[..., tuple[Callable[[], float], float]],
                 args: Sequence[tuple]) -> None:
        ctx = mp.get_context("spawn")
        self.res = ctx.Queue()
        self.cmds = [ctx.Queue() for _ in args]
        self.barrier = ctx.Barrier(len(args))  # kept: the children unpickle it after start()
        self.procs = [ctx.Process(target=_serve, args=(setup, a, q, self.res, self.barrier), daemon=True)
                      for a, q in zip(args, self.cmds, strict=True)]
        for proc in self.procs:
            proc.start()
        self.work = 0.0

    def _take(self, kind: str, n: int) -> list[Any]:
        out = []
        for _ in range(n):
            while True:
                try:
                    got, value = self.res.get(timeout=5)
                    break
                except queue.Empty:
                    dead = [p.exitcode for p in self.procs if p.exitcode not in (None, 0)]
                    if dead:
                        raise RuntimeError(f"a bench worker died (exit code {dead[0]}); "
                                           "its traceback is above") from None
            if got != kind:
                raise RuntimeError(f"bench worker sent {got!r}, expected {kind!r}")
            out.append(value)
        return out

    def ready(self) -> None:
        """Wait until every process has built its part (and warmed up)."""
        self.work = sum(self._take("ready", len(self.cmds)))

    def rate(self) -> tuple[float, float]:
        """One repetition of every process at once: (work per second, the slowest bounding it;
        work per CPU-second, summed over the processes and their threads). On a machine shared
        with other jobs the second counts only the cycles this way got."""
        for q in self.cmds:
            q.put("go")
        times = self._take("time", len(self.cmds))
        return (self.work / max(w for w, _ in times),
                self.work / max(1e-9, sum(c for _, c in times)))

    def close(self) -> float:
        """Stop the processes; their summed peak resident memory in MiB."""
        for q in self.cmds:
            q.put("stop")
        rss = sum(self._take("rss", len(self.cmds)))
        for proc in self.procs:
            proc.join()
        return rss


def interleave(ways: dict[str, Way], reps: int
               ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Rates of each way over `reps` rounds, per wall second and per CPU-second (`Way.rate`); each
    round times every way once, in an order rotated from round to round. Ways are built in
    parallel, then timed one at a time."""
    for way in ways.values():
        way.ready()
    names = list(ways)
    rates: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in names[r % len(names):] + names[:r % len(names)]:
            wall_rate, cpu_rate = ways[n].rate()
            rates[n].append(wall_rate)
            cpu[n].append(cpu_rate)
    return rates, cpu


def timer(step: Callable[[int], Any], steps: int) -> Callable[[], float]:
    """A function timing one repetition: `steps` calls of step(t), t = 0..steps-1."""
    def rep() -> float:
        t0 = time.perf_counter()
        for t in range(steps):
            step(t)
        return time.perf_counter() - t0
    return rep


def gemm_setup(n: int = 1024, reps: int = 60) -> tuple[Callable[[], float], float]:
    """A worker timing `reps` dense float32 n x n matmuls on one thread: the GEMM peak per core.
    60 of 1024^3 take about 1.5 s, as long as a training way's repetition, so that a moment's dip
    of this shared machine moves the peak no more than the rates it is compared with."""
    torch.set_num_threads(1)
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = a @ b
    rep = timer(lambda _: torch.mm(a, b, out=out), reps)
    rep()
    return rep, 2 * n**3 * reps / 1e9


def tmpdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="evolve-bench-")


def emit(result: dict, as_json: bool) -> None:
    """Print the result as JSON, or as `key: value` lines."""
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
