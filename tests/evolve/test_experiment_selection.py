"""`evolve experiment selection --quick` on the tiny base: the report is produced, its numbers are
the runs' (as recorded in a real SQLite MLflow store), the arms differ exactly as designed; and the
statistics and the `uniform` control operator on their own."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from scipy import stats

from evolve.cli import main as cli
from evolve.experiments.paired import paired, sign_flip_p, t_interval
from evolve.experiments.report import fmt
from evolve.operators import select
from evolve.operators.selection import Individual

EXP = "selection-test"


ARMS = ["fitness", "random", "shuffled", "oracle"]


def _cli(tiny_base: Path, tmp: Path, *extra: str) -> int:
    uri = f"sqlite:///{tmp}/mlflow.db"
    return cli(["experiment", "selection", "--quick", "--out", str(tmp / "out"),
                "--set", f"base={tiny_base}", "--set", f"tracking.uri={uri}",
                "--set", f"tracking.experiment={EXP}", "--set", f"state_dir={tmp}/state",
                "--set", f"tracking.artifact_location={tmp}/artifacts", *extra])


@pytest.fixture(scope="module")
def quick(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Any]:
    """The quick setting (2 seeds x fitness / random / shuffled / oracle, and the planted control
    over 2 seeds) on the tiny base: (out, JSON, tracker)."""
    from evolve.experiments.selection_report import load_runs
    from evolve.tracking import Tracker

    tmp = tmp_path_factory.mktemp("selection")
    assert _cli(tiny_base, tmp) == 0
    doc = json.loads((tmp / "out" / "report.json").read_text())
    # report.json stays small: every learner goes to runs.json.gz beside it
    assert "runs" not in doc and "planted_runs" not in doc and doc["runs_file"] == "runs.json.gz"
    doc.update(load_runs(tmp / "out"))
    return tmp / "out", doc, Tracker(f"sqlite:///{tmp}/mlflow.db", EXP, create=False)


def _value(learner: dict[str, Any], metric: str) -> float | None:
    """The documented per-learner outcome: a half-life that never came counts as the budget."""
    if learner["failed"]:
        return None
    v = learner[metric]
    if v is None and metric == "assess_half_life":
        return float(learner["curve"][-1][0])
    return v


def test_quick_run_writes_the_promised_report(quick: tuple[Path, dict[str, Any], Any]) -> None:
    out, doc, _ = quick
    for name in ("report.md", "learning_curves.png", "generations.png", "paired_differences.png"):
        assert (out / name).stat().st_size > 1000, name
    assert list(doc["arms"]) == ARMS and doc["seeds"] == [0, 1]
    assert doc["primary_outcome"]["name"] == "assess_gain" and doc["base"]
    for key in ("heritability", "selection_response", "power"):
        assert doc[key], key
    assert {"parent_offspring_slope", "ci"} <= set(doc["heritability"])
    planted = doc["controls"]["planted"]
    assert planted["ran"] and planted["seeds"] == [0, 1] and planted["arms"] == ARMS
    fields = {"a", "b", "outcome", "mean_diff", "ci", "p_t", "p_signflip", "d_z"}
    for c in doc["contrasts"] + planted["contrasts"]:
        assert fields <= set(c) and c["outcome"] == "assess_gain"
    assert [(c["a"], c["b"]) for c in doc["contrasts"]] == [
        ("fitness", "random"), ("oracle", "random"), ("shuffled", "random")]   # the Holm family
    other = {(c["a"], c["b"]): c for c in doc["other_contrasts"]}
    assert set(other) == {("fitness", "shuffled")} and other["fitness", "shuffled"]["p_holm"] is None
    assert other["fitness", "shuffled"]["diffs"] == pytest.approx(
        [x - y for x, y in zip(doc["per_seed"]["fitness"]["assess_gain"],
                               doc["per_seed"]["shuffled"]["assess_gain"], strict=True)])
    for arm, runs in doc["runs"].items():
        assert [r["seed"] for r in runs] == [0, 1]
        for r in runs:
            assert [g["generation"] for g in r["generations"]] == [0, 1]
            assert all(len(g["learners"]) == 4 for g in r["generations"])
            assert all(x["curve"] and x["curve"][0][0] == 0 for g in r["generations"]
                       for x in g["learners"]), arm
    assert [r["run_id"] for r in doc["run_ids"]["random"]] == [r["run_id"] for r in doc["runs"]["random"]]
    # the planted control varies lr only, over its own range
    assert planted["log10_lr_by_generation"]["oracle"][0] == pytest.approx(
        planted["log10_lr_by_generation"]["random"][0])
    assert doc["planted_config"]["genome"]["lr"] == [1e-4, 1e-2]
    for runs in doc["planted_runs"].values():
        for r in runs:
            learners = r["generations"][0]["learners"]
            assert len({x["rank"] for x in learners}) == 1 and len({x["lr"] for x in learners}) == 4


def test_report_numbers_are_the_runs_numbers(quick: tuple[Path, dict[str, Any], Any]) -> None:
    out, doc, _ = quick
    md = (out / "report.md").read_text()
    arms = list(doc["arms"])
    for arm in arms:
        for metric in ("assess_gain", "assess_initial_accuracy", "assess_half_life"):
            raw = []
            for run in doc["runs"][arm]:
                vals = [v for v in (_value(x, metric) for x in run["generations"][-1]["learners"])
                        if v is not None]
                raw.append(sum(vals) / len(vals))
            assert doc["per_seed"][arm][metric] == pytest.approx(raw), (arm, metric)
            assert doc["summary"][arm][metric]["mean"] == pytest.approx(sum(raw) / len(raw))
        for run in doc["runs"][arm]:   # gain = area - accuracy before, per learner
            for x in run["generations"][-1]["learners"]:
                if not x["failed"]:
                    assert x["assess_gain"] == pytest.approx(
                        x["assess_auc"] - x["assess_initial_accuracy"])
    for c in doc["contrasts"]:
        a, b = doc["per_seed"][c["a"]][c["outcome"]], doc["per_seed"][c["b"]][c["outcome"]]
        assert c["diffs"] == pytest.approx([x - y for x, y in zip(a, b, strict=True)])
    for i, seed in enumerate(doc["seeds"]):   # the per-seed table shows the JSON's raw values
        cells = [fmt(doc["per_seed"][a]["assess_gain"][i]) for a in arms]
        cells.append(fmt(doc["generation0_per_seed"]["assess_gain"][i]))
        assert f"| {seed} | " + " | ".join(cells) + " |" in md
    for v in doc["verdicts"] + doc["controls"]["planted"]["verdicts"]:
        assert v["text"] in md
    assert doc["verdict"]["text"] in md and doc["verdict"]["shown"] in (True, False)
    assert f"`{doc['command']}`" in md and doc["command"].startswith(
        "evolve experiment selection --quick")


def test_json_matches_what_mlflow_recorded(quick: tuple[Path, dict[str, Any], Any]) -> None:
    _, doc, tracker = quick
    for arm, runs in doc["runs"].items():
        for run in runs:
            tags = tracker.client.get_run(run["run_id"]).data.tags
            assert (tags["evolve.arm"], tags["evolve.run_seed"]) == (arm, str(run["seed"]))
            recs = {r.learner_id: r for r in tracker.load_records(run["run_id"])}
            for g in run["generations"]:
                for x in g["learners"]:
                    rec = recs[x["id"]]
                    assert rec.fitness == pytest.approx(x["fitness"])
                    for m in ("assess_gain", "assess_auc", "assess_initial_accuracy"):
                        assert rec.signals[m] == pytest.approx(x[m]), (arm, x["id"], m)
            # the evolution itself carries its heritability and response per generation
            hist = tracker.client.get_metric_history(run["run_id"], "response/observed")
            assert [m.step for m in hist] == [1]
            assert hist[0].value == pytest.approx(
                run["generations"][1]["metrics"]["response/observed"])
    kinds = [r.data.tags.get("evolve.kind") for r in
             tracker.client.search_runs([tracker.experiment_id])]
    assert kinds.count("experiment.selection") == 1 and kinds.count("evolution") == 16


def test_arms_share_generation_zero_and_keep_the_same_elitism(
        quick: tuple[Path, dict[str, Any], Any]) -> None:
    _, doc, tracker = quick
    assert doc["generation0_max_gap"] == 0.0   # generation 0 is the same in every arm of a seed
    for i in range(len(doc["seeds"])):
        fits = [[x["fitness"] for x in doc["runs"][a][i]["generations"][0]["learners"]]
                for a in doc["arms"]]
        assert all(f == fits[0] for f in fits)
    for arm in doc["arms"]:   # every arm keeps one unmutated clone (random: a random learner)
        for run in doc["runs"][arm]:
            recs = [r for r in tracker.load_records(run["run_id"], curves=False)
                    if r.generation == 1]
            assert sum("elite clone" in line for r in recs for line in r.decisions) == 1, arm


def test_rerun_reuses_finished_runs(quick: tuple[Path, dict[str, Any], Any], tiny_base: Path,
                                    ) -> None:
    out, doc, tracker = quick
    tmp = out.parent
    before = len(tracker.client.search_runs([tracker.experiment_id], "tags.`evolve.kind` = 'evolution'"))
    assert _cli(tiny_base, tmp) == 0
    again = json.loads((out / "report.json").read_text())
    assert [r["run_id"] for r in again["run_ids"]["oracle"]] == [r["run_id"] for r in doc["runs"]["oracle"]]
    after = len(tracker.client.search_runs([tracker.experiment_id], "tags.`evolve.kind` = 'evolution'"))
    assert after == before


def test_power_from_an_earlier_runs_pilot(quick: tuple[Path, dict[str, Any], Any],
                                          tiny_base: Path) -> None:
    """--pilot-from DIR sizes the experiment from DIR's runs (here the same runs, read back)."""
    out, doc, _ = quick
    assert _cli(tiny_base, out.parent, "--pilot-from", str(out)) == 0
    again = json.loads((out / "report.json").read_text())
    power = again["power"]
    assert f"--pilot-from {out}" in again["command"]   # the recorded command reproduces it
    assert power["pilot_source"] == str(out) and power["pilot_seed_list"] == [0, 1]
    ps = doc["per_seed"]
    assert power["fitness_random_pilot_d_z"] == pytest.approx(
        paired(ps["fitness"]["assess_gain"], ps["random"]["assess_gain"])["d_z"])
    assert f"From the pilot `{out}`" in (out / "report.md").read_text()


def test_paired_statistics_against_scipy() -> None:
    a, b = [1.3, 2.0, 2.9, 4.4, 5.1], [1.0, 1.0, 1.0, 1.0, 1.0]
    out = paired(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    assert out["diffs"] == pytest.approx(d) and out["wins"] == 5 and out["losses"] == 0
    assert out["p_t"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert out["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert out["p_sign_flip"] == pytest.approx(2 / 32) == out["min_p_sign_flip"]   # all positive
    sd = stats.tstd(d)
    assert out["d_z"] == pytest.approx(sum(d) / 5 / sd)
    ci = t_interval(d)
    half = stats.t.ppf(0.975, 4) * sd / math.sqrt(5)
    assert (ci["lo"], ci["hi"]) == pytest.approx((sum(d) / 5 - half, sum(d) / 5 + half))
    assert sign_flip_p([1.0, -1.0, 1.0, -1.0]) == 1.0
    many = [1.0] * 40       # beyond the exact enumeration: sampled, and never p = 0
    assert sign_flip_p(many, n_sample=999) == pytest.approx(1 / 1000)
    assert paired([0.5, None, 0.2], [0.1, 0.3, None])["n"] == 1   # only seeds with both values


def test_uniform_selection_ignores_fitness_and_skips_failed() -> None:
    pop = [Individual(f"l{i}", f) for i, f in enumerate([10.0, 0.0, -5.0, -math.inf, 1.0])]
    counts = Counter(p.id for p in select("uniform", pop, 8000, random.Random(0)))
    assert "l3" not in counts and set(counts) == {"l0", "l1", "l2", "l4"}
    assert all(abs(c / 8000 - 0.25) < 0.03 for c in counts.values())   # 5 sd of a binomial


@pytest.mark.parametrize("flags, fragment", [
    (["--seeds", "1"], "--seeds 1"),
    (["--arms", "fitness,random,fitness-tuned", "--weights", "missing.yaml"],
     "--weights missing.yaml"),
    (["--arms", "fitness,lucky"], "'lucky'"),
    (["--arms", "fitness,oracle"], "include random"),
    (["--planted-seeds", "1"], "--planted-seeds 1"),
    (["--set", "population=1"], "population 1"),
    # a config whose assessment is off (configs/real.yaml) cannot give the outcome
    (["--config", "real", "--set", "base=smollm2"], "assess.every=0"),
    (["--set", "assess.steps=0"], "assess.steps=0"),
    (["--pilot-from", "no/such/dir"], "--pilot-from no/such/dir"),
])
def test_bad_flags_are_one_line_errors(flags: list[str], fragment: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["experiment", "selection", "--quick", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("evolve experiment: error:") and fragment in err[0]
    assert not (tmp_path / "report.json").exists()
