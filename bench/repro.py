"""Where do results diverge across x86-64 instruction sets? One generation under each variant.

Runs generation 0 of a config (default: the smoke config: 4 learners, 12 items) in a fresh process
per variant, each with one torch thread, and prints every learner's fitness and a SHA-256 of the
final adapter + AdamW tensors. A variant whose hash equals the default's reproduced it bit for bit
on this machine; one that differs shows a source of cross-CPU divergence.

Variants (environment): torch's vectorised kernels (ATEN_CPU_CAPABILITY), MKL's code path
(MKL_ENABLE_INSTRUCTIONS, MKL_CBWR), oneDNN's ISA (ONEDNN_MAX_CPU_ISA), the fused C kernels
(EVOLVE_KERNELS=0, EVOLVE_KERNELS_MARCH). Usage: `python bench/repro.py [--config smoke] [--json]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any

VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "mkl-avx2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "mkl-cbwr-compatible": {"MKL_CBWR": "COMPATIBLE"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "kernels-off": {"EVOLVE_KERNELS": "0"},
    "kernels-x86-64-v3": {"EVOLVE_KERNELS_MARCH": "x86-64-v3"},
    "portable": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "COMPATIBLE",
                 "ONEDNN_MAX_CPU_ISA": "AVX2", "EVOLVE_KERNELS_MARCH": "x86-64-v3"},
}


def one(config: str) -> dict[str, Any]:
    """Generation 0 of `config` here (called in the child process)."""
    import torch

    torch.set_num_threads(1)
    from evolve.backends.local import LocalBackend
    from evolve.basemodel import resolve_base
    from evolve.config import load_config
    from evolve.generation import draw_items, init_population, run_generation

    cfg = load_config(config)
    t0 = time.perf_counter()
    gen = run_generation(cfg, LocalBackend(workers=1), str(resolve_base(cfg.base)),
                         init_population(cfg, cfg.gene_space()), draw_items(cfg), 0)
    h = hashlib.sha256()
    for st in gen.states:
        for name in sorted(st.lora):
            for t in st.lora[name]:
                h.update(t.detach().contiguous().numpy().tobytes())
        for moments in (st.exp_avg, st.exp_avg_sq):
            for _, pair in sorted((moments or {}).items()):
                for t in pair:
                    h.update(t.detach().contiguous().numpy().tobytes())
    return {"fitness": [r.fitness for r in gen.records], "champion": gen.row["champion"],
            "states_sha256": h.hexdigest()[:16], "seconds": round(time.perf_counter() - t0, 1),
            "capability": torch.backends.cpu.get_cpu_capability()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="smoke", help="run config of the generation (default smoke)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(one(args.config)))
        return 0
    out: dict[str, dict[str, Any]] = {}
    for name in args.variants.split(","):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OMP_WAIT_POLICY": "PASSIVE", **VARIANTS[name]}
        proc = subprocess.run([sys.executable, __file__, "--child", "--config", args.config],
                              env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            out[name] = {"error": proc.stderr.strip().splitlines()[-1][:300]}
        else:
            out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        ref = out.get("default", {})
        r = out[name]
        same = r.get("states_sha256") == ref.get("states_sha256")
        r["same_as_default"] = same
        if not args.json:
            print(f"{name:22s} {r.get('capability', '-'):7s} states {r.get('states_sha256', r.get('error'))}"
                  f" {'==' if same else '!='} default; fitness "
                  f"{[round(f, 4) for f in r.get('fitness', [])]}; {r.get('seconds')} s", flush=True)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
