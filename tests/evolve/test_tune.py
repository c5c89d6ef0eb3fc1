"""`evolve tune`: offline replay on synthetic recorded evolutions (one signal predicts the children's
learning speed), resuming a study, the weights file in `evolve run`'s config, bad input, pruning,
and a tiny online study. Real SQLite MLflow store, real SQLite Optuna storage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from conftest_server import summary_of

from evolve.cli import main
from evolve.records import LearnerRecord

X, NOISE = "final_accuracy", ("oscillation", "holdout_gain")
SIGNALS = ",".join((X, *NOISE))


def synthetic(seed: int, generations: int = 5, population: int = 8) -> list[list[LearnerRecord]]:
    """Generations where a child's `assess_gain` is a monotone function of its parents' X plus noise,
    its `survival_at_end` one of its parents' `holdout_gain`, and the rest is uniform noise."""
    rng = np.random.default_rng(seed)
    gens: list[list[LearnerRecord]] = []
    for g in range(generations):
        recs = []
        for i in range(population):
            parents: list[LearnerRecord] = []
            if gens:
                k = 2 if rng.random() < 0.25 else 1
                parents = [gens[-1][j] for j in rng.choice(population, k, replace=False)]
            signals: dict[str, float | None] = {s: float(rng.uniform()) for s in (X, *NOISE)}
            speed = np.mean([np.sqrt(p.signals[X]) for p in parents]) if parents else 0.5  # type: ignore[arg-type]
            keep = np.mean([p.signals["holdout_gain"] for p in parents]) if parents else 0.5  # type: ignore[arg-type]
            signals["assess_gain"] = float(speed + rng.normal(0, 0.03))
            signals["survival_at_end"] = float(keep + rng.normal(0, 0.03))
            op = "init" if not parents else ("crossover" if len(parents) == 2 else "mutate")
            recs.append(LearnerRecord(f"g{g}-l{i}", g, {"lr": 1e-3}, [p.learner_id for p in parents],
                                      op, fitness=signals[X], signals=signals))
        gens.append(recs)
    return gens


@pytest.fixture(scope="module")
def no_plots() -> Iterator[None]:
    """The tracker redraws every plot per generation (about 5 s on a busy 2-core box); the plots
    are tested in test_plots.py, these tests are about what is recorded."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("evolve.plots.draw_all", lambda *a, **k: None)
        mp.setattr("evolve.lineage_html.write", lambda *a, **k: None)
        yield


def tracker_for(uri: str, art: Path, experiment: str = "test") -> Any:
    from evolve.tracking import Tracker

    return Tracker(uri, experiment, str(art))


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, no_plots: None) -> dict[str, Any]:
    """Two synthetic evolutions of 4 generations x 8 learners, logged through the real Tracker.
    Other tests use other experiments of the same store (a fresh MLflow SQLite store costs about
    12 s of schema migrations on a busy 2-core box)."""
    tmp = tmp_path_factory.mktemp("tune_store")
    uri, runs = f"sqlite:///{tmp}/mlflow.db", []
    for seed in (1, 2):
        tracker = tracker_for(uri, tmp / "artifacts")
        runs.append(tracker.start_evolution({"seed": seed}))
        for g, recs in enumerate(synthetic(seed, generations=4)):
            tracker.log_generation(g, recs, summary_of(recs))
        tracker.finish()
    return {"uri": uri, "runs": runs, "dir": tmp}


def tune(store: dict[str, Any], out: Path, *extra: str, storage: str | None = None,
         experiment: str = "test") -> int:
    return main(["tune", "--quiet", "--set", f"tracking.uri={store['uri']}",
                 "--set", f"tracking.experiment={experiment}",
                 "--storage", storage or f"sqlite:///{store['dir']}/optuna.db",
                 "--out", str(out), *extra])


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("evolve tune: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_replay_ranks_parents_by_the_predictive_signal(store: dict[str, Any]) -> None:
    from evolve import tuning

    tracker = tracker_for(store["uri"], store["dir"] / "artifacts")
    replay = tuning.load_replay(tracker, None, [X, *NOISE], ["assess_gain"])
    assert replay.runs == store["runs"] and len(replay.blocks) == 2 * 3   # g0..g2 have children
    assert replay.score({X: 1.0})[0] > 0.8
    for noise in NOISE:
        assert abs(replay.score({noise: 1.0})[0]) < 0.5
    # the vectorised path gives exactly the fitness fitness.combine gives
    w = {X: 0.3, NOISE[0]: 0.5, NOISE[1]: 0.2}
    b = replay.blocks[3]
    assert b.basis is not None
    fast = replay.parent_fitness(b, w)
    b.basis = None
    np.testing.assert_allclose(replay.parent_fitness(b, w), fast, atol=1e-12)


@pytest.fixture(scope="module")
def offline(store: dict[str, Any]) -> dict[str, Any]:
    out = store["dir"] / "weights.yaml"
    rc = tune(store, out, "--trials", "60", "--signals", SIGNALS, "--study", "find")
    return {"rc": rc, "out": out, "doc": yaml.safe_load(out.read_text())}


def test_offline_study_finds_the_predictive_weight_dominant(store: dict[str, Any],
                                                            offline: dict[str, Any]) -> None:
    assert offline["rc"] == 0
    weights = offline["doc"]["weights"]
    assert set(weights) == {X, *NOISE}
    assert weights[X] > 2 * sum(weights[n] for n in NOISE), weights
    assert offline["doc"]["tuned"]["objectives"]["assess_gain"] > 0.8
    study = optuna.load_study(study_name="find", storage=f"sqlite:///{store['dir']}/optuna.db")
    assert len(study.trials) == 60
    # the tune run sits beside the replayed runs: best weights as params, objective per trial
    tracker = tracker_for(store["uri"], store["dir"] / "artifacts")
    runs = tracker.client.search_runs([tracker.experiment_id], "tags.`evolve.kind` = 'tune'")
    assert len(runs) >= 1
    run = next(r for r in runs if r.data.params["study"] == "find")
    assert float(run.data.params[f"weight.{X}"]) == pytest.approx(weights[X])
    assert set(run.data.tags["evolve.tune_runs"].split(",")) == set(store["runs"])
    hist = tracker.client.get_metric_history(run.info.run_id, "objective.assess_gain")
    assert sorted(m.step for m in hist) == list(range(60))


def test_weights_file_round_trips_into_the_run_config(offline: dict[str, Any]) -> None:
    from evolve.config import load_config

    cfg = load_config(None, [f"fitness.weights_file={offline['out']}"])
    assert cfg.fitness.weights == offline["doc"]["weights"]


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_resumed_study_continues_its_trial_count(kind: str, store: dict[str, Any],
                                                 tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/optuna.db" if kind == "sqlite" else str(tmp_path / "j.log")
    for _ in range(2):
        assert tune(store, tmp_path / "w.yaml", "--trials", "12", "--signals", SIGNALS,
                    "--study", "again", storage=storage) == 0
    if kind == "journal":
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(storage))  # type: ignore[assignment]
    study = optuna.load_study(study_name="again", storage=storage)
    assert sorted(t.number for t in study.trials) == list(range(24))
    # the second session sampled new points, not the first session's again
    first = {tuple(sorted(t.params.items())) for t in study.trials[:12]}
    assert not first & {tuple(sorted(t.params.items())) for t in study.trials[12:]}


def test_two_objectives_print_the_pareto_front(store: dict[str, Any], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w.yaml"
    assert tune(store, out, "--trials", "25", "--signals", SIGNALS, "--objectives",
                "speed,forgetting", "--study", "pareto",
                storage=f"sqlite:///{tmp_path}/optuna.db") == 0
    text = capsys.readouterr().out
    assert "Pareto front" in text
    front = [ln for ln in text.splitlines() if ln.strip().startswith("trial ")]
    assert front
    doc = yaml.safe_load(out.read_text())
    assert set(doc["tuned"]["objectives"]) == {"assess_gain", "survival_at_end"}


@pytest.mark.parametrize("case", ["no_experiment", "no_evolution", "unknown_signal",
                                  "unknown_objective", "bad_storage", "changed_study"])
def test_bad_input_is_one_line_and_nonzero(case: str, store: dict[str, Any], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    if case == "no_experiment":
        assert tune(store, tmp_path / "w.yaml", experiment="nothing-here") == 2
        assert "evolve run" in one_error(capsys)
    elif case == "no_evolution":
        tracker_for(store["uri"], tmp_path / "art", experiment="empty")
        capsys.readouterr()
        assert tune(store, tmp_path / "w.yaml", experiment="empty") == 2
        assert "no recorded evolution" in one_error(capsys)
    elif case == "unknown_signal":
        assert tune(store, tmp_path / "w.yaml", "--signals", f"{X},bogus") == 2
        line = one_error(capsys)
        assert "'bogus'" in line and "valid:" in line and X in line
    elif case == "unknown_objective":
        assert tune(store, tmp_path / "w.yaml", "--objectives", "speed,bogus") == 2
        line = one_error(capsys)
        assert "'bogus'" in line and "speed" in line
    elif case == "bad_storage":
        assert tune(store, tmp_path / "w.yaml", "--signals", SIGNALS,
                    storage=f"sqlite:///{tmp_path}/no/such/dir/optuna.db") == 2
        assert "cannot open the Optuna storage" in one_error(capsys)
    else:
        storage = f"sqlite:///{tmp_path}/optuna.db"
        assert tune(store, tmp_path / "w.yaml", "--trials", "3", "--signals", SIGNALS,
                    "--study", "s", storage=storage) == 0
        capsys.readouterr()
        assert tune(store, tmp_path / "w.yaml", "--trials", "3", "--signals", X,
                    "--study", "s", storage=storage) == 2
        assert "--study" in one_error(capsys)
    assert not (tmp_path / "w.yaml").exists() or case == "changed_study"


def test_online_reports_every_generation_and_prunes(store: dict[str, Any], tmp_path: Path) -> None:
    """The reporter the engine logs through: one report per generation, relative to generation 0,
    and a pruner's verdict stops the evolution."""
    from evolve.tuning import _Reporter

    tracker = tracker_for(store["uri"], tmp_path / "art", experiment="prune")
    run = tracker.start_evolution({"seed": 0})
    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.ThresholdPruner(lower=-0.1))
    trial = study.ask()
    rep = _Reporter(tracker, trial, ["assess_gain"], {"evolve.tune_trial": "0"}, prune=True)
    gens = synthetic(3, generations=3, population=4)
    for g, auc in ((0, 0.5), (1, 0.6)):
        for r in gens[g]:
            r.signals["assess_gain"] = auc
        rep.log_generation(g, gens[g], summary_of(gens[g]))
    assert rep.values == [pytest.approx(0.1)]
    for r in gens[2]:
        r.signals["assess_gain"] = 0.3
    with pytest.raises(optuna.TrialPruned):
        rep.log_generation(2, gens[2], summary_of(gens[2]))
    frozen = study._storage.get_trial(trial._trial_id)
    assert frozen.intermediate_values == pytest.approx({0: 0.0, 1: 0.1, 2: -0.2})
    assert tracker.client.get_run(run).data.tags["evolve.tune_trial"] == "0"


def test_online_study_runs_short_evolutions(sets_for: Callable[..., list[str]], tmp_path: Path,
                                            store: dict[str, Any]) -> None:
    over = {"tracking.uri": store["uri"], "tracking.experiment": "online"}
    sets = [a for s in sets_for(tmp_path, **over) for a in ("--set", s)]
    storage, out = f"sqlite:///{tmp_path}/optuna.db", tmp_path / "w.yaml"
    assert main(["tune", "--mode", "online", "--trials", "2", "--quiet", "--storage", storage,
                 "--out", str(out), *sets]) == 0
    study = optuna.load_study(study_name="evolve-online", storage=storage)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for t in study.trials:   # one report per generation (2 generations)
        assert sorted(t.intermediate_values) == [0, 1] and t.intermediate_values[0] == 0.0
    tracker = tracker_for(store["uri"], tmp_path / "artifacts", experiment="online")
    evolutions = tracker.evolution_runs()
    assert len(evolutions) == 2
    trials = {tracker.client.get_run(r).data.tags["evolve.tune_trial"] for r in evolutions}
    assert trials == {"0", "1"}
    tune_run = tracker.client.search_runs([tracker.experiment_id], "tags.`evolve.kind` = 'tune'")[0]
    assert set(tune_run.data.tags["evolve.tune_runs"].split(",")) == set(evolutions)
    weights = yaml.safe_load(out.read_text())["weights"]
    from evolve.config import load_config

    assert load_config(None, [f"fitness.weights_file={out}"]).fitness.weights == weights
