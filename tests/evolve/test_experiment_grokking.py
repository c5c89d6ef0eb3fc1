"""`evolve experiment grokking`: the report is produced with the issue's keys, its numbers are the
runs', the warning rules read only the past, the sweep is warm-started, and the run is logged to a
real SQLite MLflow store. The studies are shrunk (fewer seeds, shorter budgets) through their own
plan functions (the command then takes about a minute on a quiet core; marked slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from evolve.cli import main as cli
from evolve.experiments.grokking import hysteresis, meta, warning
from evolve.experiments.grokking.setting import SMALL, GrokConfig, Trainer
from evolve.experiments.grokking.stats import bootstrap_median, spearman, trailing_median


def _run(out: Path, *flags: str) -> dict[str, Any]:
    assert cli(["experiment", "grokking", "--quick", "--out", str(out), *flags]) == 0
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def small_plans() -> Any:
    mp = pytest.MonkeyPatch()
    mp.setattr(warning, "grid", lambda quick: ([0, 1], [(0.7, 1.0)], [(0.3, 1.0)], 350))
    mp.setattr(hysteresis, "plan", lambda quick: {"levels": [0.3, 3.0], "segment": 50,
                                                  "seeds": [0, 1], "train_fraction": 0.7})
    mp.setattr(meta, "plan", lambda quick: {"seeds": [0, 1], "budget": 200, "grid": [1.0],
                                            "train_fraction": 0.7})
    yield
    mp.undo()


@pytest.fixture(scope="module")
def quick(small_plans: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, dict[str, Any], Path]:
    """The watched run (300 steps) and every study, shrunk, logged to a fresh SQLite store."""
    tmp = tmp_path_factory.mktemp("grok")
    doc = _run(tmp / "out", "--seed", "0", "--steps", "300",
               "--set", f"tracking.uri=sqlite:///{tmp}/mlflow.db",
               "--set", "tracking.experiment=grok-test",
               "--set", f"tracking.artifact_location={tmp}/artifacts")
    return tmp / "out", doc, tmp


@pytest.mark.slow
@pytest.mark.timeout(1800)   # the module fixture runs the whole command (minutes on a busy box)
def test_report_has_the_issue_keys_and_every_plot(quick: tuple[Path, dict[str, Any], Path]) -> None:
    out, doc, _ = quick
    for name in ("accuracy.png", "confidence_knowledge.png", "alpha.png", "dunning_kruger.png",
                 "early_warning.png", "hysteresis.png", "meta_optimizer.png"):
        assert (out / name).stat().st_size > 1000, name
    for rule in warning.RULES:
        r = doc["early_warning"][rule]
        assert {"lead_time_median", "lead_time_ci", "spearman", "false_alarm_rate", "split"} <= set(r)
        assert set(r["split"]["fit"]).isdisjoint(r["split"]["test"])
    assert {"loop_area", "ci", "seeds"} <= set(doc["hysteresis"])
    for arm in ("adamw_wd1", "adamw_best", "adam", "sgd", "controller"):
        assert {"time_to_generalise_median", "ci", "runs"} <= set(doc["meta_optimizer"][arm])
    assert all({"peak_gap_step", "onset_step"} <= set(d) for d in doc["dunning_kruger"])
    md = (out / "report.md").read_text()
    assert f"`evolve experiment grokking --quick --seed 0 --out {out} --steps 300`" in md


@pytest.mark.slow
@pytest.mark.timeout(1800)   # the module fixture runs the whole command (minutes on a busy box)
def test_numbers_are_read_from_the_runs(quick: tuple[Path, dict[str, Any], Path]) -> None:
    _, doc, _ = quick
    hist, s = doc["history"], doc["summary"]
    assert hist["confidence_gap"] == pytest.approx(
        [c - a for c, a in zip(hist["val_self"], hist["val_acc"], strict=True)], abs=1e-6)
    # self-confidence (own answer) is never below P(true answer)
    assert all(o >= t - 1e-6 for o, t in zip(hist["val_self"], hist["val_conf"], strict=True))
    mem = next(i for i, a in enumerate(hist["train_acc"]) if a >= 0.99)
    assert s["memorised_step"] == hist["step"][mem]
    k = max(range(len(hist["step"])), key=lambda i: hist["confidence_gap"][i])
    assert s["peak_gap_step"] == hist["step"][k]
    for run in doc["warning_runs"]:
        h = run["history"]
        onset = next((st for st, v in zip(h["step"], h["val_acc"], strict=True) if v >= 0.5), None)
        assert run["onset"] == onset
    # tf 0.7 groks within 350 steps, tf 0.3 does not: both kinds are in the test half
    ew = doc["early_warning"]["val_acc_twice_chance"]
    assert ew["test_grokking"] == 1 and ew["test_never"] == 1
    hy = doc["hysteresis"]
    assert hy["loop_area"] == pytest.approx(sum(r["area"] for r in hy["per_seed"]) / 2)
    ctl = doc["meta_optimizer"]["controller"]
    assert ctl["runs"] == 2 and len(ctl["times"]) == 2


@pytest.mark.slow
@pytest.mark.timeout(1800)   # the module fixture runs the whole command (minutes on a busy box)
def test_run_is_logged_to_mlflow(quick: tuple[Path, dict[str, Any], Path]) -> None:
    from evolve.tracking import Tracker

    _, doc, tmp = quick
    tracker = Tracker(f"sqlite:///{tmp}/mlflow.db", "grok-test", create=False)
    runs = tracker.client.search_runs([tracker.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["evolve.kind"] == "experiment.grokking"
    pts = tracker.client.get_metric_history(runs[0].info.run_id, "val_self")
    assert [p.value for p in sorted(pts, key=lambda p: p.step)] == \
        pytest.approx(doc["history"]["val_self"])
    assert "hysteresis.loop_area" in runs[0].data.metrics


def test_warning_statistics_use_only_the_past() -> None:
    tr = Trainer(GrokConfig(**dict(SMALL, train_fraction=0.7, probe_every=25, alpha_every=2)))
    tr.advance(400)
    full = tr.hist
    n = len(full["step"])
    for rule, (_, stat, _) in warning.RULES.items():
        whole = stat(full)
        for cut in (3, n // 2, n - 1):
            part = {k: v[:cut] for k, v in full.items()}
            assert stat(part) == whole[:cut], rule


def test_thresholds_are_fitted_on_one_half_and_tested_on_the_other() -> None:
    def fake(seed: int, onset: int | None, drop_at: int) -> dict[str, Any]:
        steps = list(range(0, 2000, 50))
        acc = [0.0 if onset is None or s < onset else 1.0 for s in steps]
        return {"id": f"s{seed}-{onset}", "seed": seed, "p": 31, "onset": onset,
                "history": {"step": steps, "val_acc": acc, "val_self": [0.5] * len(steps),
                            "val_loss": [3.0] * len(steps), "alpha": [3.0] * len(steps),
                            "weight_norm": [10.0 if s < drop_at else 5.0 for s in steps]}}
    # the weight norm halves 300 steps before the onset, and never in the runs that never grok
    runs = [fake(seed, onset, onset - 300) for seed in (0, 1) for onset in (600, 900, 1200)]
    runs += [fake(seed, None, 10 ** 6) for seed in (0, 1)]
    res = warning.evaluate(runs)["weight_norm_fall"]
    assert res["split"]["fit"] == [r["id"] for r in runs if r["seed"] == 0]
    assert res["lead_time_median"] == pytest.approx(300 - 50)   # trailing median: 1 probe late
    assert res["false_alarm_rate"] == 0.0 and res["spearman"] == pytest.approx(1.0)


def test_sweep_is_warm_started_and_area_is_between_the_branches() -> None:
    res = hysteresis.sweep([0.3, 3.0], 50, seed=0, train_fraction=0.7)
    assert res["steps"] == 150                 # up: 2 levels, down: 1 more, one model throughout
    assert res["history"]["weight_decay"][-1] == pytest.approx(0.3)
    from fitness.signals import branch_area

    assert res["area"] == pytest.approx(branch_area([math.log10(0.3), 0.0 + math.log10(3.0)],
                                                    res["up"], res["down"]))
    assert res["down"][-1] == res["up"][-1]    # the top level is shared


def test_controller_follows_the_confidence_gap() -> None:
    wrong_but_sure = {"val_self": [0.6] * 3, "val_acc": [0.0] * 3}
    right = {"val_self": [0.99] * 3, "val_acc": [0.99] * 3}
    assert meta.gap_controller(wrong_but_sure)["weight_decay"] == pytest.approx(meta.W_HI)
    assert meta.gap_controller(right)["weight_decay"] == pytest.approx(meta.W_LO)


def test_statistics_helpers() -> None:
    from scipy import stats

    x, y = [3.0, 1.0, 2.0, 5.0, 4.0], [30.0, 12.0, 11.0, 50.0, 45.0]
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic)
    med, (lo, hi) = bootstrap_median([1.0, 2.0, 3.0, 4.0, math.inf])
    assert med == 3.0 and lo <= med <= hi
    assert trailing_median([1.0, 5.0, 2.0, None, 9.0]) == [1.0, 3.0, 2.0, 3.5, 5.5]


@pytest.mark.parametrize("flags, fragment", [
    (["--train-fraction", "1.5"], "--train-fraction 1.5"),
    (["--probe-every", "0"], "--probe-every 0"),
])
def test_bad_flags_are_one_line_errors(flags: list[str], fragment: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["experiment", "grokking", "--out", str(tmp_path), "--no-mlflow", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("evolve experiment: error:") and fragment in err[0]
    assert not (tmp_path / "report.json").exists()


def test_experiment_without_a_name_says_which_exist(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["experiment"]) == 2
    assert "grokking" in capsys.readouterr().err.splitlines()[0]


def test_watched_run_alone_says_there_are_no_study_runs(tmp_path: Path) -> None:
    """With every study skipped (what the canonical rerun does) section 2 says so instead of
    "0 of 0 grokking runs"."""
    _run(tmp_path, "--seed", "0", "--steps", "80", "--no-mlflow",
         "--skip", "warning", "--skip", "hysteresis", "--skip", "meta")
    md = (tmp_path / "report.md").read_text()
    assert "No study runs here (--skip warning)" in md and "0 of 0" not in md


def test_an_out_holding_the_artifact_location_is_refused_before_any_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """--out holding tracking.artifact_location could not be logged (it would copy into itself):
    the one-line error comes at the start, not after the experiment's compute."""
    from evolve.experiments.grokking import single

    def never(*a: Any, **k: Any) -> Any:
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(single, "train", never)
    out = tmp_path / "out"
    assert cli(["experiment", "grokking", "--out", str(out), "--steps", "80",
                "--set", f"tracking.uri=sqlite:///{tmp_path}/mlflow.db",
                "--set", f"tracking.artifact_location={out}/artifacts"]) == 2
    err = [x for x in capsys.readouterr().err.splitlines() if "error:" in x]
    assert len(err) == 1 and err[0].startswith("evolve experiment: error: the artifact location")
    assert "is inside" in err[0] and err[0].endswith("outside it")
    assert not (out / "report.json").exists()
