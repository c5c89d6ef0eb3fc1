"""Determinism in a fresh process, and `kill -9` mid-run + `evolve run --resume` = uninterrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest


def _cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVOLVE_DEBUG": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen([sys.executable, "-m", "evolve.cli", "run", "--quiet", *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _fitness_by_learner(tracker: Any, run_id: str) -> dict[str, float]:
    return {r.learner_id: r.fitness for r in tracker.load_records(run_id, curves=False)}


@pytest.mark.slow
def test_kill9_then_resume_in_fresh_processes_ends_as_the_uninterrupted_run(
        sets_for: Any, tmp_path: Path, run_evo: Any) -> None:
    """Also the fresh-process determinism check: the killed run's generation 0 and the resumed
    generation 1 each ran in a new process and must equal the in-process run value for value."""
    from evolve.config import load_config
    from evolve.tracking import Tracker

    repo = Path(__file__).resolve().parents[2]
    # A: uninterrupted, in this process
    a_dir = tmp_path / "a"
    a_dir.mkdir()
    summary_a, tracker_a = run_evo(load_config(None, sets_for(a_dir)))
    a = summary_a.to_json()
    # B: a fresh process killed with SIGKILL once generation 0 is saved, then resumed in another
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    sets_b = [x for s in sets_for(b_dir) for x in ("--set", s)]
    proc = _cli(sets_b, repo)
    deadline = time.time() + 240
    while not list((b_dir / "state").glob("*/state.pt")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline
        time.sleep(0.02)
    time.sleep(0.2)                       # somewhere in logging gen 0 or training gen 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = _cli([*sets_b, "--resume", "--summary-json", str(b_dir / "s.json")], repo)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    b = json.loads((b_dir / "s.json").read_text())
    assert b["champion"] == a["champion"] and b["generations"] == a["generations"]
    assert b["champion_fitness"] == a["champion_fitness"]
    cfg_b = load_config(None, sets_for(b_dir))
    tracker_b = Tracker(cfg_b.tracking.uri, cfg_b.tracking.experiment)
    assert _fitness_by_learner(tracker_b, b["mlflow"]["run_id"]) == \
        _fitness_by_learner(tracker_a, summary_a.run_id)
    # one FINISHED learner run per learner per generation, and the evolution itself FINISHED
    runs = tracker_b.client.search_runs([b["mlflow"]["experiment_id"]],
                                        "tags.`evolve.kind` = 'learner'")
    finished = Counter(r.data.tags["evolve.learner_id"] for r in runs
                       if r.info.status == "FINISHED")
    assert set(finished.values()) == {1} and len(finished) == 4 * 2
    assert tracker_b.client.get_run(b["mlflow"]["run_id"]).info.status == "FINISHED"
