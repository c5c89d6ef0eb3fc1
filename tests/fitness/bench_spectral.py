"""Time `fitness.spectral.spectral` with and without its one-thread limit (not a test).

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 .venv/bin/python tests/fitness/bench_spectral.py

8 layers of 128x128 (the docs/measurements.md tiny base's q/v) plus 5 delta snapshots, median of 5 calls.
"""

from __future__ import annotations

import contextlib
import statistics
import time

import numpy as np
import torch

import fitness.spectral as S


def main() -> None:
    rng = np.random.default_rng(0)
    merged = {f"model.layers.{i}.self_attn.{m}":
              torch.from_numpy(rng.standard_normal((128, 128))).float() * 0.05
              for i in range(4) for m in ("q_proj", "v_proj")}
    deltas = [{n: torch.from_numpy(rng.standard_normal((128, 128))).float() * 1e-3 * k
               for n in merged} for k in range(5)]
    S.spectral(merged)   # the first call imports weightwatcher (seconds)

    def run(label: str) -> None:
        ts = []
        for _ in range(5):
            t = time.perf_counter()
            S.spectral(merged, deltas)
            ts.append(time.perf_counter() - t)
        print(f"{label}: median {statistics.median(ts):.3f} s, max {max(ts):.3f} s", flush=True)

    run("threadpool_limits(1)")
    S._one_thread = lambda: contextlib.nullcontext()   # type: ignore[assignment]
    run("no thread limit     ")


if __name__ == "__main__":
    main()
