"""The Tracker on a real SQLite MLflow store: a synthetic three-generation evolution with two-parent
crossovers, a failed learner and a champion with a real PEFT adapter."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest_server import summary_of, synthetic_generations, tiny_adapter

from common.errors import EvolveError
from evolve.cli import main as cli_main
from evolve.records import LearnerRecord, LineageEdge
from evolve.tracking import Tracker

CONFIG = {"seed": 7, "population": 4, "generations": 3, "tasks": [{"family": "rpn", "n": 8}],
          "fitness": {"weights": {"acceleration": 1.0}}}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One evolution of three generations logged into a fresh SQLite store."""
    root = tmp_path_factory.mktemp("tracking")
    base, adapter, ids, logits = tiny_adapter(root)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = Tracker(uri, "evo", str(root / "artifacts"))
    run_id = tracker.start_evolution(CONFIG, run_name="synthetic")
    gens = synthetic_generations(adapter)
    for g, recs in enumerate(gens):
        tracker.log_generation(g, recs, summary_of(recs))
    return {"root": root, "uri": uri, "tracker": tracker, "run_id": run_id, "gens": gens,
            "base": base, "ids": ids, "logits": logits}


def _by_id(store: dict[str, Any]) -> dict[str, LearnerRecord]:
    return {r.learner_id: r for g in store["gens"] for r in g}


def test_learner_runs_are_nested_with_genome_tags_metrics_and_histories(store: dict) -> None:
    client, recs = store["tracker"].client, _by_id(store)
    for rec in recs.values():
        run = client.get_run(rec.run_id)
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        assert run.info.status == "FINISHED" and run.info.run_name == rec.learner_id
        assert tags["mlflow.parentRunId"] == store["run_id"]
        assert tags["evolve.generation"] == str(rec.generation)
        assert tags["evolve.learner_id"] == rec.learner_id
        assert tags["evolve.parents"] == ",".join(rec.parents)
        assert tags["evolve.operator"] == rec.operator
        assert tags["evolve.failed"] == str(rec.failed).lower()
        assert tags["evolve.decisions"] == "\n".join(rec.decisions)
        assert float(params["lr"]) == rec.genome["lr"] and params["rank"] == str(rec.genome["rank"])
        assert json.loads(params["target_modules"]) == ["q_proj", "v_proj"]
        assert metrics["fitness"] == rec.fitness or (rec.failed and metrics["fitness"] < -1e300)
        for name, value in rec.signals.items():
            assert (f"signal.{name}" in metrics) == (value is not None)
            if value is not None:
                assert metrics[f"signal.{name}"] == value
        for name, pts in rec.curves.items():
            hist = client.get_metric_history(rec.run_id, f"curve.{name}")
            assert sorted((m.step, m.value) for m in hist) == pts
    g12 = recs["g1-l2"]   # a crossover: both parents' run ids, in order
    assert client.get_run(g12.run_id).data.tags["evolve.parent_run_ids"] == \
        f"{recs['g0-l2'].run_id},{recs['g0-l1'].run_id}"
    assert recs["g1-l3"].failure in client.get_run(recs["g1-l3"].run_id).data.tags["evolve.failure"]


def test_decisions_are_a_text_artifact(store: dict, tmp_path: Path) -> None:
    rec = _by_id(store)["g2-l1"]
    path = store["tracker"].client.download_artifacts(rec.run_id, "decisions.txt", str(tmp_path))
    assert Path(path).read_text().splitlines() == rec.decisions


def test_evolution_run_has_config_metrics_lineage_and_plots(store: dict, tmp_path: Path) -> None:
    client, run_id = store["tracker"].client, store["run_id"]
    run = client.get_run(run_id)
    assert run.data.tags["evolve.kind"] == "evolution"
    assert run.data.tags["evolve.completed_generations"] == "2"
    assert run.data.params["seed"] == "7" and run.data.params["tasks.0.family"] == "rpn"
    assert run.data.params["fitness.weights.acceleration"] == "1.0"
    champ = client.get_metric_history(run_id, "champion_fitness")
    assert [(m.step, m.value) for m in sorted(champ, key=lambda m: m.step)] == \
        [(0, 0.9), (1, 1.1), (2, 1.4)]
    mean = {m.step: m.value for m in client.get_metric_history(run_id, "mean_fitness")}
    assert mean[1] == pytest.approx((0.95 + 0.7 + 1.1) / 3)   # the failed learner left out
    names = {a.path for a in client.list_artifacts(run_id)} | \
        {a.path for a in client.list_artifacts(run_id, "plots")}
    assert {"config.yaml", "lineage.json", "plots/fitness.png", "plots/champion_signals.png",
            "plots/family_tree.png", "plots/lineage.html"} <= names
    cfg = client.download_artifacts(run_id, "config.yaml", str(tmp_path))
    import yaml

    assert yaml.safe_load(Path(cfg).read_text()) == CONFIG
    # the experiment was created with the configured artifact location
    exp = client.get_experiment(store["tracker"].experiment_id)
    assert Path(exp.artifact_location) == (store["root"] / "artifacts").resolve()
    assert (store["root"] / "artifacts" / run_id / "artifacts" / "plots" / "lineage.html").is_file()


def test_lineage_round_trip_from_tags_and_from_lineage_json(store: dict) -> None:
    tracker, recs = store["tracker"], _by_id(store)
    tree = tracker.lineage(store["run_id"])
    assert tree == [LineageEdge(r.learner_id, tuple(r.parents), r.operator, r.generation)
                    for g in store["gens"] for r in g]
    assert tracker.lineage_artifact(store["run_id"]) == tree
    anc = tracker.lineage("g2-l1")
    assert [e.child for e in anc] == ["g0-l1", "g0-l2", "g1-l0", "g1-l2", "g2-l1"]
    assert anc[-1] == LineageEdge("g2-l1", ("g1-l2", "g1-l0"), "crossover", 2)
    assert tracker.lineage(recs["g2-l1"].run_id) == anc   # a learner's run id works the same
    with pytest.raises(EvolveError, match="no learner 'g9-l9'"):
        tracker.lineage("g9-l9")


def test_load_records_round_trip_in_a_fresh_tracker(store: dict) -> None:
    reader = Tracker(store["uri"], "evo", create=False)
    loaded = reader.load_records(store["run_id"])
    want = [r for g in store["gens"] for r in g]
    assert [r.learner_id for r in loaded] == [r.learner_id for r in want]
    for got, rec in zip(loaded, want, strict=True):
        expect = rec.to_dict() | {"adapter_dir": None}
        assert got.to_dict() == expect, rec.learner_id
    assert math.isinf(loaded[7].fitness) and loaded[7].failed   # g1-l3: -inf survives


def test_champion_adapter_downloads_and_loads_with_peft(store: dict, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    rec = _by_id(store)["g2-l1"]
    client = store["tracker"].client
    assert {a.path for a in client.list_artifacts(rec.run_id, "adapter")} >= \
        {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"}
    local = store["tracker"].download_adapter(rec.run_id, tmp_path)
    base = AutoModelForCausalLM.from_pretrained(store["base"]).eval()
    with torch.no_grad():
        plain = base(input_ids=store["ids"]).logits
        model = PeftModel.from_pretrained(base, str(local)).eval()
        adapted = model(input_ids=store["ids"]).logits
    torch.testing.assert_close(adapted, store["logits"])
    assert (adapted - plain).abs().max() > 1e-3   # the adapter is really applied


def test_register_champion_makes_a_model_version(store: dict) -> None:
    tracker, rec = store["tracker"], _by_id(store)["g2-l1"]
    v1 = tracker.register_champion(rec, "evolve-champion")
    v2 = tracker.register_champion(rec, "evolve-champion")
    assert (v1, v2) == ("1", "2")
    mv = tracker.client.get_model_version("evolve-champion", v1)
    assert mv.run_id == rec.run_id and mv.source.endswith("/adapter")
    assert tracker.client.get_run(store["run_id"]).data.tags["evolve.champion"] == "g2-l1"
    # a copy of the record without its run id (as the engine's saved state holds it) still works
    copy = LearnerRecord.from_dict(rec.to_dict() | {"run_id": None})
    assert tracker.register_champion(copy, "evolve-champion") == "3"
    assert tracker.client.get_model_version("evolve-champion", "3").run_id == rec.run_id
    empty = LearnerRecord("g2-l9", 2, {}, adapter_dir=str(store["root"]))
    with pytest.raises(EvolveError, match="adapter_config.json"):   # nothing half-recorded
        tracker.log_generation(2, [empty], {})
    assert empty.run_id is None
    with pytest.raises(EvolveError, match="without an adapter"):
        tracker.register_champion(_by_id(store)["g2-l0"], "evolve-champion")


def test_resume_marks_the_interrupted_generation_failed(store: dict) -> None:
    uri = store["uri"]
    first = Tracker(uri, "resume")
    run_id = first.start_evolution(CONFIG)
    gens = synthetic_generations()
    for g in (0, 1):
        first.log_generation(g, gens[g], summary_of(gens[g]))
    # a crash in the middle of recording generation 2: the third learner's adapter file is a
    # dangling link, so copying it fails after two learner runs were written
    bad = store["root"] / "bad_adapter"
    bad.mkdir()
    (bad / "adapter_config.json").write_text("{}")
    (bad / "adapter_model.safetensors").symlink_to(bad / "gone.safetensors")
    broken = synthetic_generations()[2]
    broken[2].adapter_dir = str(bad)
    with pytest.raises(OSError):
        first.log_generation(2, broken, summary_of(broken))
    assert first.client.get_run(run_id).data.tags["evolve.completed_generations"] == "1"
    # a fresh process finds the unfinished evolution by itself
    second = Tracker(uri, "resume")
    assert second.resume_evolution() == (run_id, 1)
    assert {r.learner_id for r in second.load_records()} == \
        {r.learner_id for g in gens[:2] for r in g}
    second.log_generation(2, gens[2], summary_of(gens[2]))
    second.finish()
    runs = second.client.search_runs([second.experiment_id],
                                     f"tags.`mlflow.parentRunId` = '{run_id}'")
    finished: dict[str, int] = {}
    for r in runs:
        key = r.data.tags["evolve.learner_id"]
        finished[key] = finished.get(key, 0) + (r.info.status == "FINISHED")
    assert finished == {r.learner_id: 1 for g in gens for r in g}   # no duplicates
    superseded = [r for r in runs if r.data.tags.get("evolve.superseded") == "true"]
    # the two recorded learners and the one being recorded when it crashed
    assert len(superseded) == 3 and all(r.info.status == "FAILED" for r in superseded)
    assert second.lineage("g2-l1")[0].child == "g0-l1"
    assert second.client.get_run(run_id).info.status == "FINISHED"
    with pytest.raises(EvolveError, match="no unfinished evolution"):
        Tracker(uri, "resume").resume_evolution()


def test_unwritable_store_is_one_line_naming_the_uri(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the store's directory should be")
    uri = f"sqlite:///{blocker / 'mlflow.db'}"
    with pytest.raises(EvolveError) as err:
        Tracker(uri, "evo")
    msg = str(err.value)
    assert "\n" not in msg and uri in msg and "tracking.uri" in msg
    from conftest_server import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EvolveError, match="no MLflow server answers at"):
        Tracker(dead, "evo")


def test_evolve_lineage_command(store: dict, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store["uri"])
    # the store comes from $MLFLOW_TRACKING_URI, the experiment from --set, as for `evolve run`
    assert cli_main(["lineage", "g2-l1", "--run", store["run_id"],
                     "--set", "tracking.experiment=evo"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out[3:]]
    assert [r[1] for r in rows] == ["g0-l1", "g0-l2", "g1-l0", "g1-l2", "g2-l1"]
    last = out[-1]
    assert "crossover" in last and "g1-l2 x g1-l0" in last and "1.4" in last
    assert "parents: g1-l2 x g1-l0 (ties merge)" in last
    assert cli_main(["lineage", store["run_id"], "--json", "--set", "tracking.experiment=evo"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["evolution"] == store["run_id"] and len(doc["learners"]) == 12
    failed = [r for r in doc["learners"] if r["failed"]]
    assert [r["learner"] for r in failed] == ["g1-l3"] and failed[0]["fitness"] is None
    assert cli_main(["lineage", "g7-l0", "--run", store["run_id"],
                     "--set", "tracking.experiment=evo"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("evolve lineage: error: no learner 'g7-l0'")
