"""`--backend ray` on a real local Ray runtime: same results as local, a killed worker is retried,
the CLI starts and stops its own runtime, and Ray missing is one line."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _tiny_sets() -> Any:
    """The engine tests' tiny evolution (`tests/evolve/conftest.py`), loaded by path: module-scoped
    fixtures cannot use its function-scoped `sets_for`, and `conftest` is an ambiguous name."""
    spec = importlib.util.spec_from_file_location("_evolve_conftest", REPO / "tests/evolve/conftest.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.tiny_sets


def _run(sets: list[str], backend: Any) -> tuple[Any, Any]:
    from evolve.config import load_config
    from evolve.engine import evolve
    from evolve.tracking import Tracker

    cfg = load_config(None, sets)
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    return evolve(cfg, tracker, backend, progress=False), tracker


def _view(tracker: Any, run_id: str) -> dict[str, Any]:
    """What a user reads back from MLflow, per learner: lineage, fitness, signals and curves."""
    return {r.learner_id: (r.parents, r.operator, r.decisions, r.genome, r.fitness, r.failed,
                           r.signals, r.curves) for r in tracker.load_records(run_id)}


def _finished_learner_runs(tracker: Any) -> Counter[str]:
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.`evolve.kind` = 'learner'")
    return Counter(r.data.tags["evolve.learner_id"] for r in runs if r.info.status == "FINISHED")


@pytest.fixture(scope="module")
def sets(tiny_base: Path) -> Any:
    """`sets(dir)`: the tiny evolution split into 2 groups (2 learners each) with its store in dir."""
    tiny_sets = _tiny_sets()
    return lambda d: tiny_sets(tiny_base, d, groups=2)


@pytest.fixture(scope="module")
def reference(sets: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same evolution on the local backend: summary and per-learner records."""
    from evolve.backends.local import LocalBackend

    summary, tracker = _run(sets(tmp_path_factory.mktemp("local")), LocalBackend())
    return {"summary": summary.to_json(), "records": _view(tracker, summary.run_id)}


def _descendants_alive(pids: list[int]) -> list[int]:
    import psutil

    return [p for p in pids if psutil.pid_exists(p) and
            psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[Path]:
    """A real local Ray with 2 CPUs in a private temp dir; shut down with no process left behind."""
    import psutil
    import ray

    # short path: Ray's Unix sockets live under it and must stay under 108 bytes
    tmp = Path(tempfile.mkdtemp(prefix="evray-"))
    # children that were there before Ray (e.g. the session's mlflow server) are not Ray's to reap
    before = {c.pid for c in psutil.Process().children(recursive=True)}
    ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=str(tmp),
             logging_level=logging.WARNING)
    yield tmp
    pids = [c.pid for c in psutil.Process().children(recursive=True) if c.pid not in before]
    ray.shutdown()
    deadline = time.time() + 30
    while _descendants_alive(pids) and time.time() < deadline:
        time.sleep(0.2)
    assert not _descendants_alive(pids), "ray.shutdown() left processes behind"
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.ray
def test_ray_backend_records_what_the_local_backend_records(
        ray_runtime: Path, sets: Any, reference: dict[str, Any], tmp_path: Path) -> None:
    from evolve.backends import make_backend

    backend = make_backend("ray")
    try:
        summary, tracker = _run(sets(tmp_path), backend)
    finally:
        backend.close()
    import ray

    assert ray.is_initialized()   # a runtime the backend found is left to its owner
    assert summary.to_json()["generations"] == reference["summary"]["generations"]
    assert summary.champion == reference["summary"]["champion"]
    got = _view(tracker, summary.run_id)
    assert got == reference["records"]   # lineage, fitness, every signal and curve, value for value
    # the learners really differ, so equal values mean each group came back to its own learners
    losses = {tuple(v for _, v in rec[7]["loss"]) for rec in got.values()}
    assert len(losses) == len(got)


@pytest.mark.ray
def test_worker_killed_mid_generation_is_retried_and_mlflow_has_one_run_each(
        ray_runtime: Path, sets: Any, reference: dict[str, Any], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from evolve.backends import make_backend

    marker = tmp_path / "crashed"
    # group 0 of generation 1 (inherited adapters + AdamW state) kills its worker after training,
    # before returning: its work is lost, Ray retries it, and it finishes after group 1
    monkeypatch.setenv("EVOLVE_RAY_CRASH_ONCE", f"1,0,{marker}")
    backend = make_backend("ray")
    try:
        summary, tracker = _run(sets(tmp_path), backend)
    finally:
        backend.close()
    assert marker.exists()   # the worker did die once
    assert summary.to_json()["generations"] == reference["summary"]["generations"]
    assert _view(tracker, summary.run_id) == reference["records"]
    finished = _finished_learner_runs(tracker)
    assert set(finished.values()) == {1} and len(finished) == 4 * 2
    assert tracker.client.get_run(summary.run_id).info.status == "FINISHED"


def _job(sets: Any, tmp_path: Path, *more: str) -> Any:
    """Group 0 of generation 0 of the tiny evolution (all 4 learners); `more` = extra --set."""
    from evolve.config import load_config
    from evolve.generation import build_streams, draw_items, init_population, make_job

    cfg = load_config(None, [*sets(tmp_path), *more])
    plans = build_streams(cfg, init_population(cfg, cfg.gene_space()), 0)
    return make_job(cfg, str(cfg.base), plans, draw_items(cfg), 0, 0)


@pytest.mark.ray
def test_an_error_inside_a_group_reaches_the_driver_as_itself(ray_runtime: Path, sets: Any,
                                                               tmp_path: Path) -> None:
    from common.errors import EvolveError
    from evolve.backends.ray import RayBackend

    job = _job(sets, tmp_path)
    (tmp_path / "empty").mkdir()
    job.base = str(tmp_path / "empty")   # not a model directory: load_base's one-line error
    with pytest.raises(EvolveError) as err:
        RayBackend().run_groups([job])
    assert type(err.value) is EvolveError and "config.json" in str(err.value)
    assert len(str(err.value).splitlines()) == 1


@pytest.mark.ray
def test_cuda_jobs_on_a_cluster_without_gpus_fail_in_one_line(ray_runtime: Path,
                                                               sets: Any, tmp_path: Path) -> None:
    from common.errors import EvolveError
    from evolve.backends.ray import RayBackend

    job = _job(sets, tmp_path)
    job.device = "cuda"
    with pytest.raises(EvolveError, match="has no GPU; set training.device=cpu"):
        RayBackend().run_groups([job])


@pytest.mark.ray
def test_device_auto_reaches_the_worker_unresolved_and_resolves_there(
        ray_runtime: Path, sets: Any, tmp_path: Path) -> None:
    """A CPU driver in front of GPU workers must not pick the device for them: the job leaves the
    driver with `auto`, and the worker resolves it: cuda iff Ray gave the task a GPU (on a
    machine without GPUs, as here: cpu)."""
    import ray
    import torch

    from evolve.backends.ray import RayBackend
    from evolve.train import train_group

    job = _job(sets, tmp_path, "training.device=auto")
    assert job.device == "auto"                        # make_job leaves it to whoever runs it
    (res,) = RayBackend().run_groups([job])
    assert job.device == "auto"                        # the driver's job was never resolved
    assert res.device == ("cuda" if ray.cluster_resources().get("GPU", 0) else "cpu")
    assert res.learner_ids == [p.learner_id for p in job.learners]
    local = train_group(job)                           # the local backend resolves it in-process
    assert local.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if local.device == res.device:
        assert (local.correct == res.correct).all()


@pytest.mark.ray
def test_cli_backend_ray_starts_and_stops_its_own_runtime(
        sets: Any, reference: dict[str, Any], tmp_path: Path) -> None:
    import psutil

    raydir = Path(tempfile.mkdtemp(prefix="evcli-"))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "EVOLVE_RAY_TMPDIR": str(raydir)}
    env.pop("MLFLOW_TRACKING_URI", None)
    args = [x for s in sets(tmp_path) for x in ("--set", s)]
    proc = subprocess.Popen([sys.executable, "-m", "evolve.cli", "run", "--quiet", "--backend",
                             "ray", *args, "--summary-json", str(tmp_path / "s.json")], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen: dict[int, str] = {}   # every process of the run's session (raylet, gcs, workers)
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        for p in psutil.process_iter(["name"]):
            if p.pid != proc.pid and _sid(p.pid) == proc.pid:
                # the latest name: a process caught between fork and exec still reads "python"
                seen[p.pid] = p.info["name"] or seen.get(p.pid, "")
        time.sleep(0.5)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out[-3000:]
    assert json.loads((tmp_path / "s.json").read_text())["generations"] == \
        reference["summary"]["generations"]
    assert "raylet" in seen.values() and (raydir / "session_latest").exists()
    deadline = time.time() + 30
    while _descendants_alive(list(seen)) and time.time() < deadline:
        time.sleep(0.2)
    assert not _descendants_alive(list(seen)), "evolve run --backend ray left processes behind"
    import shutil

    shutil.rmtree(raydir, ignore_errors=True)


def _sid(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None


def test_backend_ray_without_ray_is_one_line_and_nonzero(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        tiny_base: Path) -> None:
    from evolve.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)     # `import ray` now raises ImportError
    monkeypatch.delitem(sys.modules, "evolve.backends.ray", raising=False)
    code = main(["run", "--quiet", "--backend", "ray", "--base", str(tiny_base),
                 "--set", f"state_dir={tmp_path}/s",
                 "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("evolve run: error")]
    assert code == 2
    assert err == ["evolve run: error: --backend ray needs Ray: pip install -e '.[ray]'"]
    assert not (tmp_path / "mlflow.db").exists()   # failed before the store was touched


def test_shipped_base_is_rebuilt_on_a_node_without_it(tiny_base: Path, tmp_path: Path) -> None:
    from evolve.backends.ray import materialise, read_dir
    from learners.base import load_base

    files = read_dir(tiny_base)
    out = materialise(files, tmp_path)
    assert out.parent == tmp_path and read_dir(out) == files
    assert materialise(files, tmp_path) == out        # once per node, keyed by content
    assert len(list(tmp_path.iterdir())) == 1         # no half-written copy left beside it
    model, tok = load_base(out)
    ref, _ = load_base(tiny_base)
    assert all((a == b).all() for a, b in zip(model.state_dict().values(),
                                              ref.state_dict().values(), strict=True))


@pytest.mark.ray
def test_a_failed_generation_cancels_only_the_groups_still_running(
        ray_runtime: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling a finished task (the failed group itself) races its reply and makes Ray 2.60
    abort the driver, pytest included: only the groups still running are cancelled."""
    import ray

    from evolve.backends.ray import _cancel

    finished = ray.remote(lambda: 1).remote()
    running = ray.remote(lambda: time.sleep(60)).remote()
    assert ray.get(finished) == 1
    cancelled: list[Any] = []
    real_cancel = ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: (cancelled.append(ref),
                                                          real_cancel(ref, **kw)))
    _cancel([finished, running])
    assert cancelled == [running]
    with pytest.raises((ray.exceptions.TaskCancelledError, ray.exceptions.WorkerCrashedError)):
        ray.get(running, timeout=30)
