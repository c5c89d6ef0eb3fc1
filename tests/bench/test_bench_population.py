"""bench/population.py's summary of timed ways: ratios where both sides ran, None where `--ways`
named only one kind (it used to crash on `max()` of nothing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def population_bench() -> Any:
    sys.path.insert(0, str(BENCH))   # the bench scripts import their `_common` module
    spec = importlib.util.spec_from_file_location("bench_population", BENCH / "population.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def timed(ways: dict[str, list[float]]) -> dict[str, list[float]]:
    """Per-round rates of `ways` plus a GEMM peak of 100 (all cores) and 60 (one thread)."""
    return {**ways, "gemm_proc_per_core": [100.0, 100.0, 100.0], "gemm_1thread": [60.0] * 3}


def test_only_batched_ways_give_no_speedup(population_bench: Any) -> None:
    rounds = timed({"batched_1proc": [1.0, 2.0, 3.0], "batched_proc_per_core": [2.0, 4.0, 6.0]})
    out = population_bench.summarise(rounds, rounds, {"batched_1proc": 10.0}, flop=10.0)
    assert out["best_batched"] == "batched_proc_per_core"
    assert out["strongest_baseline"] is None and out["speedup"] is None
    assert out["speedup_per_cpu_s"] is None and out["gflops_strongest_baseline"] is None
    assert out["fraction_of_gemm_peak"] == pytest.approx(0.4)   # 4 steps/s x 10 GFLOP / 100


def test_only_peft_ways_give_no_fraction(population_bench: Any) -> None:
    rounds = timed({"peft_proc_per_core": [1.0, 1.0, 1.0]})
    out = population_bench.summarise(rounds, rounds, {}, flop=10.0)
    assert out["best_batched"] is None and out["speedup"] is None
    assert "fraction_of_gemm_peak" not in out
    assert out["gflops_strongest_baseline"] == 10.0


def test_speedup_is_the_median_of_per_round_ratios(population_bench: Any) -> None:
    rounds = timed({"batched_proc_per_core": [2.0, 3.0, 8.0], "batched_unfused_proc_per_core": [9.0] * 3,
                    "peft_seq_2threads": [1.0, 1.0, 1.0], "peft_proc_per_core": [1.0, 2.0, 2.0]})
    out = population_bench.summarise(rounds, rounds, {}, flop=1.0)
    assert out["best_batched"] == "batched_proc_per_core"     # the unfused way is never the best
    assert out["strongest_baseline"] == "peft_proc_per_core"
    assert out["speedup_per_round"] == [2.0, 1.5, 4.0] and out["speedup"] == 2.0
