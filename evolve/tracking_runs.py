"""Runs that are not evolutions (experiments, tuning studies), recorded in an evolution store's
experiment: `log_experiment_run(store, ...)`."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param

from common.errors import EvolveError
from evolve.store_format import BATCH_METRICS, BATCH_TAGS, PARAM_MAX, TAG_MAX, now_ms, param_value
from evolve.tracking_store import KIND, Store


def log_experiment_run(store: Store, name: str, kind: str, params: Mapping[str, Any] | None = None,
                       metrics: Mapping[str, float | None] | None = None,
                       histories: Mapping[str, Iterable[tuple[int, float | None]]] | None = None,
                       artifacts: Iterable[str | Path] = (), tags: Mapping[str, Any] | None = None,
                       artifact_path: str | None = None) -> str:
    """Record finished work that is not an evolution as one FINISHED run of this experiment,
    named `name` and tagged `evolve.kind=kind` (e.g. `experiment.grokking`); returns its id.

    params: name -> value (non-strings JSON-encoded, cut at 500 characters); metrics: summary
    values at step 0; histories: name -> [(step, value)]; None and non-finite values are left
    out of both. tags: name -> value (as strings). artifacts: files and directories (a
    directory's contents), under `artifact_path` (default: the run's root). A missing
    artifact fails before the run is created; an error while logging marks the run FAILED.
    """
    paths = [Path(a) for a in artifacts]
    missing = [str(a) for a in paths if not a.exists()]
    if missing:
        raise EvolveError(f"artifact {missing[0]} does not exist; write it before logging "
                          f"the {kind} run {name!r}")
    check_not_inside(store, paths)
    run_tags = {k: str(v)[:TAG_MAX] for k, v in (tags or {}).items()}
    run = store.client.create_run(store.experiment_id, run_name=name,
                                  tags={**run_tags, KIND: kind})
    run_id = run.info.run_id
    try:
        now = now_ms()
        points = [(k, 0, v) for k, v in (metrics or {}).items()]
        points += [(k, step, v) for k, pts in (histories or {}).items() for step, v in pts]
        mlist = [Metric(k, float(v), now, int(step)) for k, step, v in points
                 if v is not None and math.isfinite(float(v))]
        plist = [Param(k, param_value(v)[:PARAM_MAX]) for k, v in (params or {}).items()]
        # one call when it fits (6-10x faster than per-metric calls), chunks past the limits
        for i in range(max(1, math.ceil(len(mlist) / BATCH_METRICS),
                           math.ceil(len(plist) / BATCH_TAGS))):
            store.client.log_batch(run_id, mlist[i * BATCH_METRICS:(i + 1) * BATCH_METRICS],
                                   plist[i * BATCH_TAGS:(i + 1) * BATCH_TAGS])
        for a in paths:
            if a.is_dir():
                store.client.log_artifacts(run_id, str(a), artifact_path)
            else:
                store.client.log_artifact(run_id, str(a), artifact_path)
    except BaseException:
        store.client.set_terminated(run_id, "FAILED")
        raise
    store.client.set_terminated(run_id, "FINISHED")
    return str(run_id)


def check_not_inside(store: Store, paths: list[Path]) -> None:
    """A directory that holds the store's own artifact root would be copied into itself until
    the file names get too long: refuse it before the run is created (experiments call this
    before their compute, too)."""
    from urllib.parse import unquote, urlparse

    loc = urlparse(str(store.client.get_experiment(store.experiment_id).artifact_location))
    if loc.scheme not in ("", "file"):
        return
    root = Path(unquote(loc.path)).resolve()
    for a in paths:
        if a.is_dir() and root.is_relative_to(a.resolve()):
            raise EvolveError(f"the artifact location {root} is inside {a}, which this run logs "
                              "as its artifacts; set tracking.artifact_location outside it")
