"""MLflow tracking of an evolution: one parent run per evolution, one nested run per learner per
generation, the lineage as our own edge list, the pictures, and the champion as a registered model
version.

`Tracker` is the store (`evolve.tracking_store.Store`: opening it, reading back) plus the writes of
one evolution; `evolve.tracking_runs.log_experiment_run` records work that is not an evolution.
These three are the only modules that import `mlflow`. It works the same on a SQLite URI and on a
tracking server (`http://127.0.0.1:PORT`). What goes where is documented in `docs/tracking.md`.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from mlflow.entities import Metric, Param

from common.errors import EvolveError
from evolve import tracking_view as view
from evolve.lineage import ancestry, edge_of, lineage_document
from evolve.records import LearnerRecord
from evolve.store_format import (
    BATCH_METRICS,
    BATCH_TAGS,
    PARAM_MAX,
    TAG_MAX,
    chunks,
    flatten,
    now_ms,
    one_line,
    param_value,
)
from evolve.tracking_store import COMPLETED, KIND, PARENT, SUPERSEDED, Store

log = logging.getLogger(__name__)


class Tracker(Store):
    """Records one evolution in MLflow (and reads it back, as a `Store`)."""

    def __init__(self, uri: str, experiment: str, artifact_location: str | None = None,
                 create: bool = True) -> None:
        """Open (and with `create`, create and write-check) the store and the experiment."""
        super().__init__(uri, experiment, artifact_location, create)
        self._records: list[LearnerRecord] = []
        self._run_ids: dict[str, str] = {}      # learner id -> run id, this evolution
        self.run_name: str | None = None         # the next evolution's name (`evolve run` sets it)

    def start_evolution(self, config: dict[str, Any], run_name: str | None = None) -> str:
        """Create the parent run; log the config as params (short values) and `config.yaml`."""
        run_name = run_name or self.run_name or view.evolution_name(
            self.experiment, int(config.get("seed", 0)))
        run = self._client.create_run(self._experiment_id, run_name=run_name,
                                      tags={KIND: "evolution", COMPLETED: "-1"})
        self._run_id, self._records, self._run_ids = run.info.run_id, [], {}
        self.describe_evolution()
        params = [Param(k, param_value(v)) for k, v in flatten(config).items()
                  if len(param_value(v)) <= PARAM_MAX]
        for chunk in chunks(params, BATCH_TAGS):
            self._client.log_batch(self._run_id, params=chunk)
        self._client.log_text(self._run_id, yaml.safe_dump(config, sort_keys=False), "config.yaml")
        return self._run_id

    def resume_evolution(self, run_id: str | None = None) -> tuple[str, int]:
        """Reopen an evolution (None: the latest unfinished one); mark the runs of its incomplete
        generation FAILED and superseded. Returns (run id, last completed generation or -1)."""
        if run_id is None:
            runs = self._client.search_runs(
                [self._experiment_id],
                filter_string=f"tags.`{KIND}` = 'evolution' and attributes.status != 'FINISHED'",
                order_by=["attributes.start_time DESC"], max_results=1)
            if not runs:
                raise EvolveError(f"no unfinished evolution in experiment {self.experiment!r} of "
                                  f"{self.uri} to resume; drop --resume to start a new one")
            run_id = runs[0].info.run_id
        run = self._get_run(run_id)
        if run.data.tags.get(KIND) != "evolution":
            raise EvolveError(f"run {run_id} is not an evolution run; pass the parent run's id")
        last = int(run.data.tags.get(COMPLETED, "-1"))
        for r in self._learner_runs(run_id):
            if int(r.data.tags.get("evolve.generation", "-1")) > last:
                self._client.set_tag(r.info.run_id, SUPERSEDED, "true")
                self._client.set_terminated(r.info.run_id, "FAILED")
        self._client.update_run(run_id, status="RUNNING")
        self._client.set_tag(run_id, "evolve.resumed_ms", str(now_ms()))
        self._run_id = run_id
        self._records = self.load_records(run_id)
        self._run_ids = {r.learner_id: r.run_id for r in self._records if r.run_id}
        return run_id, last

    def log_generation(self, generation: int, records: list[LearnerRecord],
                       summary: dict[str, float], plots: bool = True) -> None:
        """One nested FINISHED run per record (fills `record.run_id`), lineage, `summary` as the
        parent's metrics at step `generation` (`evolve.generation.summarise`'s `metrics`: champion
        and mean fitness are computed there, not here) and, with `plots`, the plots of the whole
        evolution so far redrawn (5-10 s under load; the engine draws them after the last
        generation unless `tracking.draw_plots: every`; the parent metric `plots_s` says when they
        were drawn). The parent tag
        `evolve.completed_generations` is written last (resume reads it)."""
        parent = self._require_run()
        for rec in records:   # bad input fails before anything of the generation is recorded
            if rec.adapter_dir is not None and \
                    not (Path(rec.adapter_dir) / "adapter_config.json").is_file():
                raise EvolveError(f"adapter_dir {rec.adapter_dir} of {rec.learner_id} has no "
                                  "adapter_config.json; export it with learners.peft_io.export_peft")
        for rec in records:
            if not rec.parent_run_ids:
                rec.parent_run_ids = [self._run_ids[p] for p in rec.parents if p in self._run_ids]
            self._log_learner(parent, generation, rec)
            self._run_ids[rec.learner_id] = rec.run_id  # type: ignore[assignment]
        self._records = [r for r in self._records if r.generation != generation] + list(records)
        edges = [edge_of(r) for r in self._records]
        self._client.log_text(parent, json.dumps(lineage_document(self._records, edges), indent=1),
                              "lineage.json")
        values = dict(summary)
        if plots:
            t0 = time.perf_counter()
            self._draw_plots(parent)
            values["plots_s"] = time.perf_counter() - t0
        now = now_ms()
        metrics = [Metric(k, float(v), now, generation) for k, v in values.items() if v is not None]
        self._client.log_batch(parent, metrics=metrics)
        self._client.set_tag(parent, COMPLETED, str(generation))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file or directory on the evolution run."""
        path = Path(path)
        if path.is_dir():
            self._client.log_artifacts(self._require_run(), str(path), artifact_path)
        else:
            self._client.log_artifact(self._require_run(), str(path), artifact_path)

    def register_champion(self, record: LearnerRecord, name: str) -> str:
        """Register the learner's `adapter/` artifact as a version of model `name`; returns it."""
        # a record read back from the engine's saved state may predate its run: find it by id
        run_id = record.run_id or self._run_ids.get(record.learner_id)
        if not run_id:
            raise EvolveError(f"learner {record.learner_id} has no run in this evolution; log its "
                              "generation before registering it")
        record.run_id = run_id
        run = self._get_run(record.run_id)
        if run.data.tags.get("evolve.has_adapter") != "true":
            raise EvolveError(f"learner {record.learner_id} was logged without an adapter; give "
                              "its LearnerRecord an adapter_dir")
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(name)
        except MlflowException:
            self._client.create_registered_model(
                name, description="Champion LoRA adapters of `evolve` (PEFT format).")
        evolution = self._run_id or str(run.data.tags.get(PARENT, ""))
        chain = [(e.child, e.operator, e.parents) for e in
                 ancestry({r.learner_id: edge_of(r) for r in self._records}, record.learner_id)]
        mv = self._client.create_model_version(
            name, source=f"runs:/{record.run_id}/adapter", run_id=record.run_id,
            tags={"evolve.learner_id": record.learner_id, "evolve.fitness": str(record.fitness),
                  "evolve.evolution_run_id": evolution,
                  "evolve.lineage": " > ".join(c for c, _, _ in chain)[:TAG_MAX]},
            description=view.champion_note(record.learner_id, record.fitness,
                                           self._experiment_id, evolution, chain))
        if self._run_id:
            self._client.set_tag(self._run_id, "evolve.champion", record.learner_id)
            self._client.set_tag(self._run_id, "evolve.champion_run_id", record.run_id)
            self._client.set_tag(self._run_id, "evolve.champion_model", f"{name}/{mv.version}")
            self.describe_evolution()
        return str(mv.version)

    def describe_evolution(self, run_id: str | None = None) -> None:
        """(Re)write the evolution run's Markdown description (`tracking_view.evolution_note`):
        links to the family tree, plots, report and champion, from the run's tags and artifacts."""
        run = self._get_run(run_id or self._require_run())
        tags, rid = run.data.tags, run.info.run_id
        champion = None
        if "evolve.champion_model" in tags:
            model, version = tags["evolve.champion_model"].rsplit("/", 1)
            champion = {"learner_id": tags["evolve.champion"], "model": model,
                        "version": version, "run_id": tags["evolve.champion_run_id"],
                        "fitness": float(run.data.metrics.get("champion_fitness", math.nan))}
        report = any(a.path == "report.html" for a in self._client.list_artifacts(rid))
        self._client.set_tag(rid, view.NOTE, view.evolution_note(
            run.info.experiment_id, rid, champion, report=report))

    def finish(self, status: str = "FINISHED") -> None:
        """End the evolution run with `status` (FINISHED, FAILED or KILLED)."""
        if self._run_id:
            self._client.set_terminated(self._run_id, status)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        """Set tags on any run of the store (e.g. `evolve.tune_trial` on a tuning trial's evolution)."""
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)[:TAG_MAX]) for k, v in tags.items()]
        for chunk in chunks(items, BATCH_TAGS):
            self._client.log_batch(run_id, tags=chunk)

    def _require_run(self) -> str:
        if not self._run_id:
            raise EvolveError("no evolution run; call start_evolution() or resume_evolution()")
        return self._run_id

    def _log_learner(self, parent: str, generation: int, rec: LearnerRecord) -> None:
        decisions = "\n".join(rec.decisions)
        genome = json.dumps(rec.genome)
        tags = {PARENT: parent, KIND: "learner", "evolve.generation": str(generation),
                "evolve.learner_id": rec.learner_id, "evolve.parents": ",".join(rec.parents),
                "evolve.parent_run_ids": ",".join(rec.parent_run_ids),
                "evolve.operator": rec.operator, "evolve.failed": str(rec.failed).lower(),
                "evolve.failure": rec.failure[:TAG_MAX], "evolve.decisions": decisions[:TAG_MAX],
                "evolve.decisions_truncated": str(len(decisions) > TAG_MAX).lower(),
                "evolve.undefined_signals": ",".join(k for k, v in rec.signals.items() if v is None),
                "evolve.has_adapter": str(rec.adapter_dir is not None).lower()}
        if len(genome) <= TAG_MAX:
            tags["evolve.genome"] = genome
        if rec.signals.get("grokking") is not None:   # the detector's verdict, searchable in the UI
            tags["evolve.grokked"] = str(rec.signals["grokking"] == 1.0).lower()
        run = self._client.create_run(self._experiment_id, run_name=rec.learner_id, tags=tags)
        rec.run_id = run.info.run_id
        now = now_ms()
        metrics = [Metric("fitness", float(rec.fitness), now, generation)] \
            if rec.fitness is not None else []
        metrics += [Metric(f"signal.{k}", float(v), now, 0) for k, v in rec.signals.items()
                    if v is not None]
        metrics += [Metric(f"curve.{k}", float(v), now, int(s)) for k, pts in rec.curves.items()
                    for s, v in pts]
        params = [Param(k, param_value(v)[:PARAM_MAX]) for k, v in flatten(rec.genome).items()]
        # one call when it fits (6-10x faster than per-metric calls), chunks past MLflow's limits
        for i in range(max(1, math.ceil(len(metrics) / BATCH_METRICS),
                           math.ceil(len(params) / BATCH_TAGS))):
            self._client.log_batch(rec.run_id, metrics[i * BATCH_METRICS:(i + 1) * BATCH_METRICS],
                                   params[i * BATCH_TAGS:(i + 1) * BATCH_TAGS])
        if decisions:
            self._client.log_text(rec.run_id, decisions + "\n", "decisions.txt")
        if rec.adapter_dir is not None:
            self._client.log_artifacts(rec.run_id, str(rec.adapter_dir), "adapter")
        self._client.set_terminated(rec.run_id, "FINISHED")

    def _draw_plots(self, parent: str) -> None:
        """Redraw the PNGs and the HTML family tree under `plots/`. A drawing bug must not lose
        the generation that was just recorded, so it is logged, not raised."""
        from evolve import lineage_html, plots

        try:
            with tempfile.TemporaryDirectory() as tmp:
                plots.draw_all(self._records, Path(tmp))
                lineage_html.write(self._records, Path(tmp) / "lineage.html",
                                   title=f"evolution {parent[:8]}")
                self._client.log_artifacts(parent, tmp, "plots")
        except Exception as exc:  # noqa: BLE001
            log.warning("evolve: drawing the plots failed: %s", one_line(exc))
            self._client.set_tag(parent, "evolve.plot_error", one_line(exc))
