"""What the store holds for the MLflow UI: the experiment's kind and saved view, the evolution's
name and description, the champion version's ancestry (real SQLite store)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest_server import summary_of, synthetic_generations, tiny_adapter
from mlflow.tracking import MlflowClient

from evolve import tracking_view as view
from evolve.tracking import Tracker


def test_a_new_experiment_is_a_training_one_with_evolves_saved_view(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri, "fresh", str(tmp_path / "art"))
    tags = MlflowClient(uri).get_experiment(tracker.experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    envelope = json.loads(tags["mlflow.sharedViewState.evolve"])
    assert envelope["name"] == view.VIEW_NAME and isinstance(envelope["createdAt"], int)
    state = json.loads(envelope["state"])
    assert {"tags.`evolve.generation`", "metrics.`fitness`", "tags.`evolve.operator`"} <= \
        set(state["selectedColumns"])


def test_an_older_experiment_gets_the_tags_but_keeps_a_kind_set_by_hand(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("old", artifact_location=str(tmp_path / "art"))
    client.set_experiment_tag(exp, "mlflow.experimentKind", "finetuning")
    Tracker(uri, "old")
    tags = client.get_experiment(exp).tags
    assert tags["mlflow.experimentKind"] == "finetuning"
    assert "mlflow.sharedViewState.evolve" in tags and view.NOTE in tags
    Tracker(uri, "old", create=False)  # read-only use writes nothing
    assert client.get_experiment(exp).tags["mlflow.experimentKind"] == "finetuning"


def test_the_evolution_is_named_for_what_it_is_and_its_page_links_tree_and_champion(
        tmp_path: Path) -> None:
    _, adapter, _, _ = tiny_adapter(tmp_path)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    tracker = Tracker(uri, "named", str(tmp_path / "art"))
    run_id = tracker.start_evolution({"seed": 7})
    client = MlflowClient(uri)
    assert client.get_run(run_id).info.run_name == "named · seed 7 · default"
    gens = synthetic_generations(adapter)
    for g, recs in enumerate(gens):
        tracker.log_generation(g, recs, summary_of(recs))
    version = tracker.register_champion(gens[2][1], "champ")
    exp = tracker.experiment_id
    note = client.get_run(run_id).data.tags[view.NOTE]
    assert f"[Family tree]({view.run_route(exp, run_id, 'plots/lineage.html')})" in note
    assert f"[its run]({view.run_route(exp, str(gens[2][1].run_id))})" in note
    assert f"(#/models/champ/versions/{version})" in note
    mv = client.get_model_version("champ", version)
    assert mv.run_id == gens[2][1].run_id
    assert mv.tags["evolve.evolution_run_id"] == run_id
    assert mv.tags["evolve.lineage"] == "g0-l1 > g0-l2 > g1-l0 > g1-l2 > g2-l1"
    assert "- **g2-l1**: crossover of g1-l2 × g1-l0" in mv.description
    # named by `evolve run` from its flags
    tracker.run_name = view.evolution_name("named", 3, "configs/smoke.yaml", ["population=4"])
    second = tracker.start_evolution({"seed": 3})
    assert client.get_run(second).info.run_name == "named · seed 3 · smoke · population=4"


def test_evolve_ui_links_the_saved_view_only_where_the_experiment_has_it(tmp_path: Path) -> None:
    from evolve.commands.ui import landing_url

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    base = "http://127.0.0.1:5000"
    assert landing_url({"uri": uri, "experiment": "none-yet"}, "127.0.0.1", 5000) == base
    old = MlflowClient(uri).create_experiment("old", artifact_location=str(tmp_path / "a"))
    assert landing_url({"uri": uri, "experiment": "old"}, "0.0.0.0", 5000) == \
        f"{base}/#/experiments/{old}/runs?workflowType=machine_learning"
    new = Tracker(uri, "new", str(tmp_path / "b")).experiment_id
    assert landing_url({"uri": uri, "experiment": "new"}, "127.0.0.1", 5000) == \
        view.experiment_url(base, new)
