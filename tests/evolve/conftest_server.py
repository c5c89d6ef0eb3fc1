"""Reusable pieces for the tracking tests: a real `mlflow server` fixture, a synthetic three-generation
evolution (crossovers with two parents, a failed learner) and a real tiny PEFT adapter.

Import what you need: `from conftest_server import mlflow_server  # noqa: F401` (a session fixture
yielding the server's `http://127.0.0.1:PORT` URI).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evolve.records import LearnerRecord


def rest(base: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One MLflow REST call: GET without a body, POST with one."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    """Poll `url` until it answers 200; fail with the server's output if it died or timed out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{out[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def stop_group(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """Stop the server and its children: killing only the PID leaves its workers running, and
    they take a few seconds to exit after SIGTERM; SIGKILL whatever is left after `grace`."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if not group_alive(proc.pid):
            break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=15)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on 127.0.0.1 with its own SQLite store and artifact folder."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
           f"sqlite:///{root / 'server.db'}", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # no GenAI job runner: it adds 8 processes (~400 MB) and doubles the start-up time (33 -> 15 s)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)   # ~6-10 s on 2 busy cores
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)


def _curves(base: float, slope: float) -> dict[str, list[tuple[int, float]]]:
    return {"improvement": [(s, round(base + slope * i, 4)) for i, s in enumerate((10, 20, 30))],
            "holdout_accuracy": [(s, round(base / 2 + slope * i / 2, 4))
                                 for i, s in enumerate((10, 20, 30))]}


def _genome(lr: float, rank: int, seed: int) -> dict[str, Any]:
    return {"lr": lr, "rank": rank, "alpha": 2.0 * rank, "target_modules": ["q_proj", "v_proj"],
            "curriculum": "random", "seed": seed}


def synthetic_generations(adapter_dir: Path | None = None) -> list[list[LearnerRecord]]:
    """Three generations of four learners: clones, mutations, two-parent crossovers, one failed
    learner (g1-l3, fitness -inf), one signal undefined; the last champion (g2-l1) has
    `adapter_dir`."""
    R = LearnerRecord
    g0 = [R(f"g0-l{i}", 0, _genome(1e-3 * (i + 1), 4, i), fitness=f, curves=_curves(0.1 * i, 0.1),
            signals={"acceleration": f / 2, "half_life": None if i == 0 else 10.0 * i})
          for i, f in enumerate((0.2, 0.5, 0.9, 0.1))]
    g1 = [
        R("g1-l0", 1, _genome(3e-3, 4, 10), ["g0-l2"], "clone", ["clone g0-l2"], 0.95,
          signals={"acceleration": 0.4}, curves=_curves(0.3, 0.15)),
        R("g1-l1", 1, _genome(2.4e-3, 4, 11), ["g0-l2"], "mutate",
          ["lr : 3e-3 --- (* 0.8) --> 2.4e-3"], 0.7, signals={"acceleration": 0.3}),
        R("g1-l2", 1, _genome(2e-3, 8, 12), ["g0-l2", "g0-l1"], "crossover",
          ["parents: g0-l2 x g0-l1 (svd merge)"], 1.1, signals={"acceleration": 0.6},
          curves=_curves(0.35, 0.2)),
        R("g1-l3", 1, _genome(9.9, 4, 13), ["g0-l1"], "mutate", ["lr : 2e-3 --- (resample) --> 9.9"],
          float("-inf"), failed=True, failure="loss became nan at step 37"),
    ]
    g2 = [
        R("g2-l0", 2, _genome(2e-3, 8, 20), ["g1-l2"], "clone", ["clone g1-l2"], 1.0),
        R("g2-l1", 2, _genome(2.5e-3, 8, 21), ["g1-l2", "g1-l0"], "crossover",
          ["parents: g1-l2 x g1-l0 (ties merge)", "rank : 8 --- (keep) --> 8"], 1.4,
          signals={"acceleration": 0.8, "half_life": 30.0}, curves=_curves(0.5, 0.2),
          adapter_dir=str(adapter_dir) if adapter_dir else None),
        R("g2-l2", 2, _genome(1.9e-3, 4, 22), ["g1-l1"], "mutate",
          ["lr : 2.4e-3 --- (* 0.8) --> 1.92e-3"], 0.6),
        R("g2-l3", 2, _genome(2.7e-3, 4, 23), ["g1-l0", "g1-l1"], "crossover",
          ["parents: g1-l0 x g1-l1 (linear merge)"], 0.8),
    ]
    return [g0, g1, g2]


def summary_of(records: list[LearnerRecord]) -> dict[str, float]:
    """A generation's evolution-run metrics, as the engine computes them (champion and mean
    fitness, failed learners, assessment means)."""
    from evolve.generation import fitness_metrics

    return fitness_metrics(records[0].generation, records)[1]


def tiny_adapter(root: Path) -> tuple[Path, Path, Any, Any]:
    """A saved tiny LlamaForCausalLM, a PEFT LoRA adapter on it with non-zero B (so the adapter
    changes the logits), and (input ids [1, 6], the adapted model's logits [1, 6, vocab])."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    base = LlamaForCausalLM(cfg).eval()
    base.save_pretrained(root / "base")
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.save_pretrained(root / "adapter")
    ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return root / "base", root / "adapter", ids, logits
