"""The ray backend's overhead: the same small evolution on `local` and `ray`, side by side.

    python bench/ray_overhead.py [--quick] [--json] [--population 4] [--groups 2] [--generations 3]

One run, one base, one config (learners split into `groups` groups, `OMP_NUM_THREADS=1` per
process). (1) `local`: every group trained in this process, one after another, one torch thread.
(2) `ray`: a local Ray runtime with one CPU per group, each group a Ray task. Prints wall times
(`ray_startup_s` = `ray.init` + `close`, `evolve_s` = the whole `evolve()` call with its MLflow
logging, `groups_s` = the backend's `run_groups` per generation), `ratio` (ray evolve_s over local
evolve_s: > 1 is overhead, < 1 is the parallel speed-up), the per-generation overhead (ray minus
local `run_groups` seconds; generation 0 includes starting the workers) and `same_results` (the
same champion, fitness values and signals on both backends). Under load the figures are noisy:
`loadavg` is the machine's 1-minute load average before and after.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")   # one thread per process on both backends

from _common import CORES, emit, save_bench_base, tmpdir  # noqa: E402


class Timed:
    """Wraps a backend and records the wall seconds of each `run_groups` call (one per generation)."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.seconds: list[float] = []

    def run_groups(self, jobs: list[Any]) -> list[Any]:
        t = time.perf_counter()
        out = self.backend.run_groups(jobs)
        self.seconds.append(time.perf_counter() - t)
        return out

    def close(self) -> None:
        self.backend.close()


def make_base(out: Path, quick: bool) -> str:
    """quick: the test suite's few-thousand-parameter base. Else: the embedded base when it is
    cached, or an untrained base of the same shape (the same compute per step; pretraining it would
    take minutes and does not change what is timed here)."""
    from learners.base import BaseConfig, build_base, save_base
    from learners.tokenizer import build_char_tokenizer

    if not quick:
        try:
            from common.cache import cache_root
            from evolve.basemodel import CorpusSpec, cache_key

            if (cache_root() / f"base-{cache_key(BaseConfig(), CorpusSpec())}").is_dir():
                return save_bench_base(out)
        except (ImportError, TypeError):
            pass
    tok = build_char_tokenizer()
    cfg = BaseConfig(hidden_size=16, num_layers=2, num_heads=2, intermediate_size=32, max_len=64) \
        if quick else BaseConfig()
    model = build_base(cfg, tok, seed=0)
    save_base(model, tok, out)
    n = sum(p.numel() for p in model.parameters())
    return f"{'tiny test' if quick else 'untrained default-shape'} base ({n:,} parameters)"


def config(base: Path, tmp: Path, a: argparse.Namespace) -> Any:
    from evolve.config import load_config

    sets = {"base": str(base), "seed": 11, "population": a.population, "groups": a.groups,
            "generations": a.generations, "tasks": f"[{{family: modular, n: {a.items}, "
            "holdout: 8, probe: 8}]", "training.batch_size": 4, "training.checkpoint_every": 4,
            "training.spectral": False, "training.device": "cpu", "selection.elitism": 1,
            "assess.steps": 8, "assess.checkpoints": 2, "tracking.uri": f"sqlite:///{tmp}/mlflow.db",
            "tracking.experiment": "bench", "tracking.artifact_location": str(tmp / "artifacts"),
            "state_dir": str(tmp / "state")}
    return load_config(None, [f"{k}={v}" for k, v in sets.items()])


def run(name: str, base: Path, tmp: Path, a: argparse.Namespace) -> dict[str, Any]:
    """One evolution on backend `name`: timings and what it recorded."""
    import torch

    from evolve.backends import make_backend
    from evolve.engine import evolve
    from evolve.tracking import Tracker

    torch.set_num_threads(1)
    cfg = config(base, tmp, a)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    t0 = time.perf_counter()
    backend = Timed(make_backend(name))
    t1 = time.perf_counter()
    summary = evolve(cfg, tracker, backend, progress=False)
    t2 = time.perf_counter()
    backend.close()
    t3 = time.perf_counter()
    records = {r.learner_id: (r.fitness, r.signals) for r in tracker.load_records(summary.run_id,
                                                                               curves=False)}
    return {"startup_s": t1 - t0 + t3 - t2, "evolve_s": t2 - t1, "groups_s": backend.seconds,
            "champion": summary.champion, "champion_fitness": summary.champion_fitness,
            "records": records}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="the tiny test base, 2 generations, 12 items (about 2 min on 2 busy cores)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--population", type=int, default=4, help="learners (default 4)")
    ap.add_argument("--groups", type=int, default=None,
                    help=f"learner groups = Ray tasks per generation (default: cores, {CORES})")
    ap.add_argument("--generations", type=int, default=None, help="generations (default 3; quick 2)")
    ap.add_argument("--items", type=int, default=None,
                    help="fresh training items per generation (default 32; quick 12)")
    a = ap.parse_args()
    a.groups = a.groups or min(CORES, a.population)
    a.generations = a.generations or (2 if a.quick else 3)
    a.items = a.items or (12 if a.quick else 32)
    load0 = os.getloadavg()[0]
    with tmpdir() as d:
        tmp = Path(d)
        kind = make_base(tmp / "base", a.quick)
        (tmp / "local").mkdir()
        (tmp / "ray").mkdir()
        local = run("local", tmp / "base", tmp / "local", a)
        ray = run("ray", tmp / "base", tmp / "ray", a)
    per_gen = [r - s for r, s in zip(ray["groups_s"], local["groups_s"], strict=True)]
    out = {
        "base": kind, "cores": CORES, "population": a.population, "groups": a.groups,
        "generations": a.generations, "items_per_generation": a.items,
        "local_evolve_s": round(local["evolve_s"], 2), "ray_evolve_s": round(ray["evolve_s"], 2),
        "ray_startup_s": round(ray["startup_s"], 2),
        "ratio": round(ray["evolve_s"] / local["evolve_s"], 3),
        "ratio_with_startup": round((ray["evolve_s"] + ray["startup_s"]) / local["evolve_s"], 3),
        "local_groups_s": [round(s, 2) for s in local["groups_s"]],
        "ray_groups_s": [round(s, 2) for s in ray["groups_s"]],
        "overhead_per_generation_s": [round(s, 2) for s in per_gen],
        "overhead_per_generation_after_first_s": (round(statistics.median(per_gen[1:]), 2)
                                                  if len(per_gen) > 1 else None),
        "same_results": (local["champion"], local["champion_fitness"], local["records"])
        == (ray["champion"], ray["champion_fitness"], ray["records"]),
        "loadavg": [round(load0, 2), round(os.getloadavg()[0], 2)],
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    emit(out, a.json)


if __name__ == "__main__":
    main()
