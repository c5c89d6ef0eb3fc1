"""The generation loop on a real tiny base and a real SQLite MLflow store."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from evolve import generation
from evolve.backends.local import LocalBackend
from evolve.genome import Genome


def _tensors(obj: Any, path: str = "") -> dict[str, torch.Tensor]:
    """Every tensor inside a (nested) state object, keyed by its path."""
    if isinstance(obj, torch.Tensor):
        return {path: obj}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in _tensors(val, f"{path}.{key}").items()}
    if isinstance(obj, (list, tuple)):
        return {k: v for i, val in enumerate(obj) for k, v in _tensors(val, f"{path}[{i}]").items()}
    return {}


def _train_generation(cfg: Any, members: list[generation.Member], g: int = 0) -> Any:
    gen = generation.run_generation(cfg, LocalBackend(), str(cfg.base), members,
                                    generation.draw_items(cfg), g)
    return gen.records, gen.states, gen.cases, gen.ranks


def test_small_evolution_records_every_learner(make_cfg: Any, run_evo: Any) -> None:
    tiny_cfg = make_cfg(**{"training.spectral": True})
    summary, tracker = run_evo(tiny_cfg)
    records = tracker.load_records(summary.run_id)
    P, G = tiny_cfg.population, tiny_cfg.generations
    assert len(records) == P * G
    by_gen = {g: [r for r in records if r.generation == g] for g in range(G)}
    gen0 = {r.learner_id for r in by_gen[0]}
    for r in by_gen[1]:
        assert r.parents and set(r.parents) <= gen0 and r.decisions
        assert r.operator in ("clone", "mutate", "crossover")
    for r in records:
        assert math.isfinite(r.fitness) and not r.failed
        assert set(r.curves) >= {"train_acc", "holdout_acc", "holdout_confidence", "loss",
                                 "holdout_self_confidence"}
        assert len(r.curves["holdout_acc"]) >= 3           # >= 3 checkpoints per learner
        # self-confidence (own answer) >= P(true answer); the confidence gap is a signal
        own, true = r.curves["holdout_self_confidence"], r.curves["holdout_confidence"]
        assert all(a[1] >= b[1] - 1e-9 for a, b in zip(own, true, strict=True))
        gap = r.signals["confidence_gap"]
        assert gap is not None and -1.0 <= gap <= 1.0
        assert 0.0 <= r.signals["assess_auc"] <= 1.0 and r.signals["assess_learned_per_100"] >= 0
    # the summary is what the records say: champion = best fitness of the last generation
    best = max(by_gen[G - 1], key=lambda r: r.fitness)
    assert summary.champion == best.learner_id
    assert summary.champion_fitness == pytest.approx(best.fitness)
    assert [g["generation"] for g in summary.generations] == list(range(G))
    for g in summary.generations:
        fits = [r.fitness for r in by_gen[g["generation"]]]
        assert g["mean_fitness"] == pytest.approx(float(np.mean(fits)))
    assert summary.model_version == "1"
    assert (Path(summary.champion_adapter) / "adapter_config.json").is_file()
    # spectral signals at the last checkpoint, and their time as a parent metric
    assert any(k.startswith("spectral") and v is not None for k, v in records[0].signals.items())
    metrics = tracker.client.get_run(summary.run_id).data.metrics
    assert 0.0 <= metrics["spectral_s"] < 60.0
    js = summary.to_json()
    assert set(js) == {"champion", "champion_fitness", "generations", "mlflow"}
    assert js["mlflow"] == {"experiment_id": tracker.experiment_id, "run_id": summary.run_id}


def test_items_fresh_per_generation_with_fixed_holdout_and_probe(make_cfg: Any) -> None:
    cfg = make_cfg(generations=3)
    items = generation.draw_items(cfg)
    fixed = {it.id for it in items.holdout} | {it.id for it in items.probe}
    seen: set[str] = set()
    for gen in items.per_generation:
        ids = {it.id for it in gen}
        assert len(ids) == cfg.tasks[0].n and not ids & fixed and not ids & seen
        seen |= ids
    again = generation.draw_items(cfg)
    assert [it.id for it in again.holdout] == [it.id for it in items.holdout]
    other = generation.draw_items(make_cfg(seed=8))
    assert [it.id for it in other.per_generation[0]] != [it.id for it in items.per_generation[0]]


def test_clone_inherits_adapter_and_adamw_state_and_mutated_lr_is_used(tiny_cfg: Any) -> None:
    from evolve.train import child_state

    space = tiny_cfg.gene_space()
    members = generation.init_population(tiny_cfg, space)
    records, states, cases, ranks = _train_generation(tiny_cfg, members)
    parent = states[0]
    genome = Genome.from_params(records[0].genome)
    clone = child_state(genome, [records[0].learner_id], None, None, {records[0].learner_id: parent})
    pt, ct = _tensors(parent), _tensors(clone)
    assert set(pt) == set(ct) and any("exp_avg" in k for k in pt)   # AdamW moments are carried
    for k in pt:
        assert torch.equal(pt[k], ct[k]), k
    # the elite of the next generation starts from exactly its parent's final state
    nxt = generation.select_and_vary(tiny_cfg, space, records, states, cases, 0, ranks)
    elite = nxt[0]
    assert elite.operator == "clone"
    src = states[[r.learner_id for r in records].index(elite.parents[0])]
    assert all(torch.equal(a, b) for a, b in zip(_tensors(src).values(),
                                                 _tensors(elite.state).values(), strict=True))
    # a mutated lr travels with the child and is the one training uses
    fast = dataclasses.replace(genome, lr=genome.lr * 4)
    runs = {}
    for name, g in (("kept", genome), ("mutated", fast)):
        st = child_state(g, ["p"], None, None, {"p": parent})
        assert st.spec.lr == g.lr
        m = generation.Member("g1-l0", g, st, ["p"], "mutate")
        _, s2, *_ = _train_generation(tiny_cfg, [m, generation.Member("g1-l1", genome, None)], 1)
        runs[name] = s2[0]
    kept, mutated = _tensors(runs["kept"]), _tensors(runs["mutated"])
    moved = {k: float((kept[k] - mutated[k]).abs().max()) for k in kept
             if kept[k].is_floating_point()}
    assert max(moved.values()) > 0      # lr x4 changed the training
    assert runs["mutated"].spec.lr == pytest.approx(fast.lr)


def test_nan_learner_is_failed_with_a_reason_and_never_selected(tiny_cfg: Any) -> None:
    space = tiny_cfg.gene_space()
    members = generation.init_population(tiny_cfg, space)
    members[1].genome.lr = 1e30             # overflows AdamW's update: loss becomes nan / inf
    records, states, cases, ranks = _train_generation(tiny_cfg, members)
    bad = records[1]
    assert bad.failed and "non-finite" in bad.failure
    assert bad.fitness == min(r.fitness for r in records) and bad.fitness < min(
        r.fitness for r in records if not r.failed)
    assert not any(r.failed for i, r in enumerate(records) if i != 1)   # the others went on
    for seed in range(5):
        nxt = generation.select_and_vary(tiny_cfg, space, records, states, cases, seed, ranks)
        assert all(bad.learner_id not in m.parents for m in nxt)


def test_results_do_not_depend_on_group_scheduling(make_cfg: Any) -> None:
    from evolve.train import train_group

    cfg = make_cfg(groups=2)
    members = generation.init_population(cfg, cfg.gene_space())
    items = generation.draw_items(cfg)
    plans = generation.build_streams(cfg, members, 0)
    jobs = [generation.make_job(cfg, str(cfg.base), plans[:2], items, 0, 0),
            generation.make_job(cfg, str(cfg.base), plans[2:], items, 0, 1)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)   # what the threaded local backend and Ray give every group
    try:
        forward = [train_group(j) for j in jobs]
        backward = [train_group(j) for j in reversed(jobs)][::-1]
    finally:
        torch.set_num_threads(before)
    threaded = LocalBackend(workers=2).run_groups(jobs)   # both groups at once, one thread each
    for a, b, c in zip(forward, backward, threaded, strict=True):
        assert np.array_equal(a.correct, b.correct) and np.array_equal(a.prob, b.prob)
        assert np.array_equal(a.correct, c.correct) and np.array_equal(a.prob, c.prob)
        assert np.array_equal(a.losses, c.losses, equal_nan=True)
        assert a.assess == b.assess == c.assess


def test_more_groups_than_learners_means_one_learner_per_group(make_cfg: Any) -> None:
    cfg = make_cfg(groups=99)
    members = generation.init_population(cfg, cfg.gene_space())
    plans = generation.build_streams(cfg, members, 0)
    class Recording(LocalBackend):
        def run_groups(self, jobs: list[Any]) -> list[Any]:
            self.jobs = jobs
            return super().run_groups(jobs)

    backend = Recording()
    learners, _ = generation.train_and_probe(cfg, backend, str(cfg.base), plans,
                                             generation.draw_items(cfg), 0)
    assert [[p.learner_id for p in j.learners] for j in backend.jobs] == \
        [[m.learner_id] for m in members]
    assert [r.learner_id for r in learners] == [m.learner_id for m in members]
    # replay finds each learner's group (its job seed) by the same split
    assert [generation.group_of(i, cfg.population, 99) for i in range(cfg.population)] == \
        [j.group for j in backend.jobs]


BAD_INPUT = [
    (["--set", "tasks.0.family=nosuch"], "unknown task family 'nosuch'; valid: "),
    (["--set", "genome.curricula=[nosuch]"], "unknown curriculum strategy nosuch; valid: "),
    (["--set", "fitness.weights.nosuch=1"], "unknown signal 'nosuch' in fitness.weights; valid: "),
    (["--set", "selection.operator=nosuch"], "unknown selection operator 'nosuch'; valid: "),
    (["--set", "population=1"], "population 1 is below 2"),
    (["--set", "groups=0"], "groups must be at least 1"),
    (["--base", "{tmp}"], "config.json"),
    (["--base", "{tmp}/missing.gguf"], "no such GGUF file"),
    (["--base", "{tmp}/junk.gguf"], "not a readable GGUF model"),
    (["--set", "genome.target_modules=[nosuch]"], "['nosuch'] match no linear module"),
    (["--set", "training.modules_to_save=[nosuch]"], "modules_to_save 'nosuch' matches no module"),
    (["--set", "training.modules_to_save=embed"], "training.modules_to_save = 'embed'; give a list"),
    (["--config", "{tmp}/bad.yaml"], "invalid YAML"),
    (["--set", "tracking.uri=sqlite:///{tmp}/afile/x.db"], "cannot open the MLflow store"),
]


def test_bad_input_is_one_line_nonzero_and_loses_nothing(
        sets_for: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from evolve.cli import main
    from evolve.config import load_config
    from evolve.tracking import Tracker

    (tmp_path / "bad.yaml").write_text("population: 4\ntasks: [\n")
    (tmp_path / "afile").write_text("a file, not a directory")
    (tmp_path / "junk.gguf").write_bytes(b"not a GGUF file")
    sets = sets_for(tmp_path)
    cfg = load_config(None, sets)
    before = Tracker(cfg.tracking.uri, cfg.tracking.experiment)
    kept = before.start_evolution({"note": "an earlier evolution"})
    before.finish()
    args = ["run", "--quiet"] + [x for s in sets for x in ("--set", s)]
    capsys.readouterr()
    for extra, needle in BAD_INPUT:   # one store for all cases: creating one costs seconds
        code = main(args + [a.format(tmp=tmp_path) for a in extra])
        err = capsys.readouterr().err.splitlines()   # (other lines: mlflow/transformers logs)
        errors = [ln for ln in err if ln.startswith("evolve run: error: ")]
        assert code == 2, extra
        assert len(errors) == 1 and needle in errors[0], (extra, errors)
        assert err[err.index(errors[0]) + 1].startswith("usage: evolve run")
        runs = before.client.search_runs([before.experiment_id])
        assert [r.info.run_id for r in runs] == [kept], extra   # nothing lost or half-written


@pytest.mark.parametrize("population, groups", [(8, 2), (8, 3), (5, 2), (4, 99), (7, 7)])
def test_one_group_split_for_training_and_replay(population: int, groups: int) -> None:
    bounds = generation.group_bounds(population, groups)
    assert bounds[0] == 0 and bounds[-1] == population and len(bounds) == min(groups, population) + 1
    for i in range(population):
        g = generation.group_of(i, population, groups)
        assert bounds[g] <= i < bounds[g + 1]
