"""An MLflow experiment opened and read back: `Store` finds evolutions and reads their learners
(`LearnerRecord`s), lineage and adapters. `evolve.tracking.Tracker` extends it with the writes of
one evolution; the read-only commands (`report`, `compare`, `lineage`, `replay`, `ui`, `tune`
offline) only read. What goes where in MLflow is documented in `docs/tracking.md`.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

# per-file download progress bars would interleave with `evolve run`'s own bars
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
from mlflow.entities import Run, ViewType
from mlflow.tracking import MlflowClient

from common.errors import EvolveError
from evolve import tracking_view as view
from evolve.lineage import ancestry, edge_of
from evolve.records import LearnerRecord, LineageEdge, learner_key
from evolve.store_format import check_server, now_ms, one_line, resolve_artifact_location, unclamp

KIND, PARENT = "evolve.kind", "mlflow.parentRunId"
COMPLETED = "evolve.completed_generations"
SUPERSEDED = "evolve.superseded"   # learner runs of an interrupted generation, redone on resume
_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class Store:
    """One experiment of an MLflow store (`uri`: any MLflow tracking URI), read back."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None,
                 create: bool = True) -> None:
        """Open (and with `create`, create and write-check) the store and the experiment."""
        self.uri, self.experiment = uri, experiment
        self._run_id: str | None = None           # the evolution a Tracker writes; None: reads only
        remote = uri.startswith(("http://", "https://"))
        if remote:
            check_server(uri)
        fix = ("; set tracking.uri (--set tracking.uri=..., $MLFLOW_TRACKING_URI or mlflow.yaml) "
               "to a writable store")
        try:
            self._client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp = self._client.get_experiment_by_name(experiment)
            if exp is None and not create:
                raise EvolveError(f"no experiment {experiment!r} in the MLflow store {uri}; "
                                  "run `evolve run` first or set tracking.experiment")
            if exp is not None and exp.lifecycle_stage == "deleted":
                raise EvolveError(f"experiment {experiment!r} in {uri} is deleted; restore it "
                                  "(`mlflow experiments restore`) or set tracking.experiment")
            if exp is None:
                self._experiment_id = self._client.create_experiment(
                    experiment, artifact_location=resolve_artifact_location(artifact_location, remote),
                    tags=view.experiment_tags())
            else:
                self._experiment_id = exp.experiment_id
                if create:  # prove the store takes writes now, not after a generation of training
                    self._client.set_experiment_tag(self._experiment_id, "evolve.opened_ms",
                                                    str(now_ms()))
                    self._label_experiment(exp.tags)
        except EvolveError:
            raise
        except Exception as exc:  # MlflowException, OSError, sqlalchemy errors: all one line
            raise EvolveError(f"cannot open the MLflow store {uri}: {one_line(exc)}{fix}") from None

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def run_id(self) -> str | None:
        return self._run_id

    @property
    def client(self) -> MlflowClient:
        return self._client

    def load_records(self, run_id: str | None = None, curves: bool = True) -> list[LearnerRecord]:
        """The learners of an evolution (default: this one, else the latest), oldest first.
        Superseded runs (an interrupted generation) are left out; `adapter_dir` is None (use
        `download_adapter`)."""
        run_id = run_id or self._run_id or self.latest_evolution()
        out = [self._record_of(r, curves) for r in self._learner_runs(run_id)
               if r.data.tags.get(SUPERSEDED) != "true"]
        return sorted(out, key=lambda r: learner_key(r.learner_id))

    def lineage(self, learner_or_run: str, evolution: str | None = None) -> list[LineageEdge]:
        """Ancestry of a learner (a learner id such as `g2-l3`, or its run id), oldest first; the
        whole tree for an evolution run id. Learner ids are looked up in `evolution` (default: this
        evolution, else the latest)."""
        evolution = self.evolution_of(learner_or_run, evolution)
        edges = {r.learner_id: edge_of(r) for r in self.load_records(evolution, curves=False)}
        if learner_or_run == evolution:
            return list(edges.values())
        learner = learner_or_run
        if _RUN_ID.match(learner_or_run):
            learner = self._get_run(learner_or_run).data.tags.get("evolve.learner_id", "")
        if learner not in edges:
            known = ", ".join(sorted(edges, key=learner_key)[-3:])
            raise EvolveError(f"no learner {learner_or_run!r} in evolution {evolution}; pass a "
                              f"learner id such as {known or 'g0-l0'} or a run id")
        return ancestry(edges, learner)

    def evolution_of(self, learner_or_run: str, evolution: str | None = None) -> str:
        """The evolution run a target belongs to: itself for an evolution run id, the parent for
        a learner run id, else `evolution`, this evolution, or the latest of the experiment."""
        if _RUN_ID.match(learner_or_run):
            run = self._get_run(learner_or_run)
            if run.data.tags.get(KIND) == "evolution":
                return learner_or_run
            if PARENT in run.data.tags:
                return str(run.data.tags[PARENT])
            raise EvolveError(f"run {learner_or_run} was not made by `evolve run`; pass an "
                              "evolution or learner run id")
        return evolution or self._run_id or self.latest_evolution()

    def run_and_history(self, run_id: str) -> tuple[Run, dict[str, dict[int, float]]]:
        """A run (e.g. an evolution) and its metric histories: metric -> {step: value}."""
        run = self._client.get_run(run_id)
        return run, {k: {int(m.step): float(m.value)
                         for m in self._client.get_metric_history(run_id, k)}
                     for k in run.data.metrics}

    def lineage_artifact(self, run_id: str) -> list[LineageEdge]:
        """The edge list from the evolution run's `lineage.json` (the second copy of the lineage)."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self._client.download_artifacts(run_id, "lineage.json", tmp)
            doc = json.loads(Path(path).read_text())
        return [LineageEdge(e["child"], tuple(e["parents"]), e["operator"], e["generation"])
                for e in doc["edges"]]

    def latest_evolution(self) -> str:
        """The run id of the most recently started evolution of the experiment."""
        runs = self._client.search_runs([self._experiment_id],
                                        filter_string=f"tags.`{KIND}` = 'evolution'",
                                        order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise EvolveError(f"no evolution in experiment {self.experiment!r} of {self.uri}; run "
                              "`evolve run` first or pass a run id")
        return runs[0].info.run_id

    def evolution_runs(self) -> list[str]:
        """Run ids of every evolution of the experiment, oldest first (what `evolve tune` replays)."""
        out: list[str] = []
        token = None
        while True:
            page = self._client.search_runs(
                [self._experiment_id], f"tags.`{KIND}` = 'evolution'", ViewType.ACTIVE_ONLY, 1000,
                order_by=["attributes.start_time ASC"], page_token=token)
            out.extend(r.info.run_id for r in page)
            token = page.token
            if not token:
                return out

    def download_adapter(self, run_id: str, dst: str | Path) -> Path:
        """Download a learner run's `adapter/` into `dst`; returns the directory PEFT loads."""
        Path(dst).mkdir(parents=True, exist_ok=True)
        return Path(self._client.download_artifacts(run_id, "adapter", str(dst)))

    def _label_experiment(self, tags: Mapping[str, str]) -> None:
        """An experiment made before these tags existed gets them; a kind or description
        someone set by hand is kept. The shared view state (columns) is always evolve's."""
        for k, v in view.experiment_tags().items():
            if k == view.SHARE_TAG or k not in tags:
                self._client.set_experiment_tag(self._experiment_id, k, v)

    def _get_run(self, run_id: str) -> Run:
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_run(run_id)
        except MlflowException:
            raise EvolveError(f"no run {run_id} in the MLflow store {self.uri}; pass a run id "
                              "from `evolve run`'s summary or the MLflow UI") from None

    def _learner_runs(self, evolution: str) -> list[Run]:
        exp = self._get_run(evolution).info.experiment_id
        out: list[Run] = []
        token = None
        while True:
            page = self._client.search_runs([exp], f"tags.`{PARENT}` = '{evolution}'",
                                            ViewType.ACTIVE_ONLY, 1000, page_token=token)
            out.extend(page)
            token = page.token
            if not token:
                return out

    def _record_of(self, run: Run, curves: bool) -> LearnerRecord:
        tags, metrics = run.data.tags, run.data.metrics
        split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
        genome = json.loads(tags["evolve.genome"]) if "evolve.genome" in tags else \
            dict(run.data.params)
        decisions = tags.get("evolve.decisions", "")
        if tags.get("evolve.decisions_truncated") == "true":
            with tempfile.TemporaryDirectory() as tmp:
                p = self._client.download_artifacts(run.info.run_id, "decisions.txt", tmp)
                decisions = Path(p).read_text().rstrip("\n")
        metrics = {k: unclamp(v) for k, v in metrics.items()}
        signals: dict[str, float | None] = {k[7:]: v for k, v in metrics.items()
                                            if k.startswith("signal.")}
        signals.update({k: None for k in split(tags.get("evolve.undefined_signals", ""))})
        hist: dict[str, list[tuple[int, float]]] = {}
        if curves:
            for key in (k for k in metrics if k.startswith("curve.")):
                pts = self._client.get_metric_history(run.info.run_id, key)
                hist[key[6:]] = [(m.step, unclamp(m.value)) for m in sorted(pts, key=lambda m: m.step)]
        return LearnerRecord(
            learner_id=tags["evolve.learner_id"], generation=int(tags["evolve.generation"]),
            genome=genome, parents=split(tags.get("evolve.parents", "")),
            operator=tags.get("evolve.operator", "init"),
            decisions=decisions.split("\n") if decisions else [], fitness=metrics.get("fitness"),
            failed=tags.get("evolve.failed") == "true", failure=tags.get("evolve.failure", ""),
            signals=signals, curves=hist, adapter_dir=None, run_id=run.info.run_id,
            parent_run_ids=split(tags.get("evolve.parent_run_ids", "")))
