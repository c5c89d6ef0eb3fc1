"""The Ray backend: every learner group one Ray task, on a Ray cluster or a local Ray runtime.

Only the scheduling moves. Each group is `evolve.train.train_group(job)`, the same pure function the
local backend calls; selection, variation and tracking stay on the driver, so MLflow records what the
local backend would. Results come back in job order (`ray.get` on the refs in submission order),
never in completion order. A worker that dies mid-group (killed, OOM, lost node) has its task retried
by Ray (`max_retries`): the retry trains the same job from the same inputs, and nothing reaches the
tracker before every group of the generation is back. This is the only module importing ray.

Test hook: `EVOLVE_RAY_CRASH_ONCE=GEN,GROUP,MARKER` makes the worker that finished group GROUP of
generation GEN exit with `os._exit(1)` before returning, once: it creates MARKER first (O_EXCL), so
the retry finds it and returns normally.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.errors import EvolveError
from evolve.train import GroupJob, GroupResult, train_group

NEEDS_RAY = "--backend ray needs Ray: pip install -e '.[ray]'"
CRASH_ENV = "EVOLVE_RAY_CRASH_ONCE"
TMP_ENV = "EVOLVE_RAY_TMPDIR"
PACKAGES = ("curricula", "learners", "fitness", "evolve")

try:
    import ray
except ImportError:
    raise EvolveError(NEEDS_RAY) from None


class RayBackend:
    """Runs each group as a Ray task (`cpus_per_group` CPUs, one GPU when the job's device is cuda).

    address: a cluster (`HOST:6379`, `auto`, `ray://HOST:10001`); None starts a local runtime with
    `num_cpus` (default: every core) under a private temp dir, shut down by `close()`. A runtime
    already initialised in this process (a test fixture, a notebook) is used as it is and left up.
    """

    def __init__(self, address: str | None = None, progress: bool = False,
                 num_cpus: int | None = None, cpus_per_group: int = 1, max_retries: int = 3,
                 ship_base: bool | None = None, ship_code: bool | None = None) -> None:
        if cpus_per_group < 1 or max_retries < 0:
            raise EvolveError("RayBackend needs cpus_per_group >= 1 and max_retries >= 0")
        self.progress, self.cpus, self.max_retries = progress, cpus_per_group, max_retries
        self.owns, self.temp_dir, self._warned = False, None, False
        self._task = ray.remote(_run_group)
        # on a cluster the base directory may exist only on the driver: ship its bytes once
        self.ship_base = address is not None if ship_base is None else ship_base
        self._base_refs: dict[str, Any] = {}
        if ray.is_initialized():
            return
        in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ   # `ray job submit` chose the code
        ship_code = (address is not None and not in_job) if ship_code is None else ship_code
        runtime_env = {"py_modules": [_package_dir(p) for p in PACKAGES]} if ship_code else None
        if address is None:
            # Ray's default /tmp/ray is shared by everyone on the machine; sockets live under the
            # temp dir and a Unix socket path must stay under 108 bytes, hence a short mkdtemp
            self.temp_dir = os.environ.get(TMP_ENV) or tempfile.mkdtemp(prefix="evolve-ray-")
            ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
                     include_dashboard=False, _temp_dir=str(self.temp_dir),
                     logging_level=logging.WARNING, runtime_env=runtime_env)
        else:
            _token_auth()
            try:
                ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise EvolveError(f"cannot connect to the Ray cluster at {address!r} "
                                  f"({str(exc).splitlines()[0]}); start one with "
                                  "`ray start --head` or fix --ray-address") from None
        self.owns = True

    def run_groups(self, jobs: list[GroupJob]) -> list[GroupResult]:
        """Submit every group at once; wait for all; results in the order of `jobs`."""
        if not jobs:
            return []
        gpus = self._check_gpus(jobs)
        crash = os.environ.get(CRASH_ENV)
        refs = []
        for job in jobs:
            # "auto" is not resolved here (this driver may have no GPU): it asks for a GPU when
            # the cluster has one, and the worker uses cuda iff Ray gave it one (_run_group)
            gpu = 1 if job.device.startswith("cuda") or (job.device == "auto" and gpus) else 0
            opts = {"num_cpus": self.cpus, "num_gpus": gpu, "max_retries": self.max_retries,
                    "retry_exceptions": False, "name": f"evolve-g{job.generation}-group{job.group}"}
            refs.append(self._task.options(**opts).remote(job, self._base(job), crash))
        try:
            self._wait(refs, jobs[0].generation)
            results = ray.get(refs)   # in submission order = group index order
        except ray.exceptions.RayTaskError as exc:   # train_group itself raised: re-raise that
            _cancel(refs)
            if isinstance(exc.cause, (EvolveError, ValueError)):
                raise exc.cause from None
            raise
        except ray.exceptions.RayError as exc:       # the worker died more than max_retries times
            _cancel(refs)
            where = f" (logs: {self.temp_dir}/session_latest/logs)" if self.temp_dir else ""
            raise EvolveError(f"a learner group of generation {jobs[0].generation} failed after "
                              f"{self.max_retries} retries: {type(exc).__name__}{where}; "
                              "check worker memory or raise max_retries") from None
        for job, res in zip(jobs, results, strict=True):
            if res.group != job.group or res.learner_ids != [p.learner_id for p in job.learners]:
                raise EvolveError(f"ray returned group {res.group} for job {job.group}; "
                                  "this is a bug, please report it")
        return list(results)

    def close(self) -> None:
        """Shut down the runtime this backend started (not one it found) and remove its temp dir."""
        if self.owns and ray.is_initialized():
            ray.shutdown()
        self.owns, self._base_refs = False, {}
        if self.temp_dir and not os.environ.get(TMP_ENV):
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def _check_gpus(self, jobs: list[GroupJob]) -> float:
        """The cluster's GPU count; a cuda job without GPUs is one line, not a task that waits."""
        gpus = float(ray.cluster_resources().get("GPU", 0))
        on_cuda = [j for j in jobs if j.device.startswith("cuda")]
        if on_cuda and gpus < 1:
            raise EvolveError(f"training.device is {on_cuda[0].device} but the Ray cluster has no "
                              "GPU; set training.device=cpu or add GPU workers (ray start "
                              "--num-gpus=N)")
        if gpus >= 1 and all(j.device == "cpu" for j in jobs) and not self._warned:
            self._warned = True
            print(f"evolve: the Ray cluster has {gpus:g} GPUs but training.device is cpu; set "
                  "training.device=auto or cuda to train on them", file=sys.stderr)
        return gpus

    def _base(self, job: GroupJob) -> Any:
        if not self.ship_base:
            return None
        if job.base not in self._base_refs:
            self._base_refs[job.base] = ray.put(read_dir(job.base))
        return self._base_refs[job.base]

    def _wait(self, refs: list[Any], generation: int) -> None:
        """Block until every ref is ready; the first failed group raises at once."""
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(refs), desc=f"groups (gen {generation})", unit="group",
                       leave=False, dynamic_ncols=True)
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)   # a failed group raises now, not after the slowest one finished
                if bar is not None:
                    bar.update(len(done))
        finally:
            if bar is not None:
                bar.close()


def _run_group(job: GroupJob, base_files: dict[str, bytes] | None,
               crash: str | None) -> GroupResult:
    """The Ray task: use this node's copy of the base (or the shipped one), train the group."""
    import torch

    # one torch thread per assigned CPU: spin-waiting OpenMP threads collapse on a shared box
    assigned = ray.get_runtime_context().get_assigned_resources()
    torch.set_num_threads(max(1, int(assigned.get("CPU", 1))))
    if base_files is not None and not Path(job.base).is_dir():
        job = replace(job, base=str(materialise(base_files)))
    if job.device.startswith("cuda") or job.device == "auto":
        # resolved here, on the worker: cuda iff Ray assigned this task a GPU (a GPU on the node
        # held by another task does not count); Ray's CUDA_VISIBLE_DEVICES holds just the
        # task's GPU, which is cuda:0
        job = replace(job, device="cuda" if ray.get_gpu_ids() else "cpu")
    result = train_group(job)
    if crash:
        _crash_once(crash, job)
    return result


def _crash_once(spec: str, job: GroupJob) -> None:
    gen, group, marker = spec.split(",", 2)
    if (int(gen), int(group)) != (job.generation, job.group):
        return
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return
    os._exit(1)


def _token_auth() -> None:
    """Send this machine's Ray token when connecting to a cluster.

    Ray 2.60 clusters started with `ray start --head` enable token auth when a token exists, but a
    driver connecting with `ray.init(address=...)` does not send it unless RAY_AUTH_MODE=token, and
    fails after ~15 s of "InvalidAuthToken" retries. An explicit RAY_AUTH_MODE is left alone.
    """
    if "RAY_AUTH_MODE" in os.environ:
        return
    try:   # what `ray start` itself calls; it also refreshes Ray's cached config
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:   # a Ray without token auth
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _cancel(refs: list[Any]) -> None:
    """Force-cancel the groups still running after one failed; finished ones are left alone.

    Ray 2.60 aborts the driver process (exit 1, "Tried to complete task that was not pending",
    task_manager.cc) when a task is cancelled while its reply is in flight, which is the state of
    the failed task itself when its error reaches `ray.get`.
    """
    _, running = ray.wait(refs, num_returns=len(refs), timeout=0)
    for ref in running:
        try:
            ray.cancel(ref, force=True)
        except Exception:   # already finished or failed: nothing to cancel  # noqa: BLE001
            pass


def _package_dir(name: str) -> str:
    import importlib

    return str(Path(importlib.import_module(name).__file__ or "").parent)


def read_dir(path: str | Path) -> dict[str, bytes]:
    """Every file under `path` as relative POSIX name -> bytes (a base model is a few MB here)."""
    root = Path(path)
    return {f.relative_to(root).as_posix(): f.read_bytes()
            for f in sorted(root.rglob("*")) if f.is_file()}


def materialise(files: dict[str, bytes], root: str | Path | None = None) -> Path:
    """Write shipped files once per node under `root` (default: the temp dir), keyed by their
    hash; returns the directory."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    out = Path(root or tempfile.gettempdir()) / f"evolve-base-{h.hexdigest()[:16]}"
    if out.is_dir():
        return out
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    for name, data in files.items():
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp / name).write_bytes(data)
    try:
        tmp.rename(out)   # atomic: two workers on one node race to the same name, one wins
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
