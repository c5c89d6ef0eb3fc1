"""Grokking inside evolution: which learners grokked and when is recorded on their MLflow runs
(real SQLite store), from the probe results an evolution has; and `training.epochs` gives a
generation the repeated passes (and checkpoints) that grokking needs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from curricula import Item
from evolve.generation import Items, Member, compute_signals, record, summarise
from evolve.genome import GeneSpace, sample_genome
from evolve.train import LearnerPlan, LearnerResult, build_stream, checkpoint_steps

K, N, H = 24, 4, 6   # checkpoints, trained items, holdout items


def _result(lid: str, holdout_from: int | None) -> LearnerResult:
    """Probe results of a learner that has its trained items right from checkpoint 3 on (step 12)
    and its holdout right from checkpoint `holdout_from` on (None: never)."""
    correct = np.zeros((K + 1, N + H), dtype=bool)
    correct[3:, :N] = True            # row k + 1 = checkpoint k: memorised at checkpoint 2
    if holdout_from is not None:
        correct[holdout_from + 1:, N:] = True
    return LearnerResult(
        learner_id=lid, steps=checkpoint_steps(N, N, K), item_ids=[f"t{i}" for i in range(N)] +
        [f"h{i}" for i in range(H)], n_train=N, correct=correct, prob=correct * 0.9 + 0.05,
        self_prob=None, window={f"t{i}": 0 for i in range(N)}, losses=np.ones(K),
        final_state=None, failure="", spectral=None, assess={}, assess_curve=[])


def test_grokked_learner_is_tagged_with_its_onset_and_the_other_is_not(
        make_cfg: Any, tmp_path: Path) -> None:
    from evolve.tracking import Tracker

    cfg = make_cfg()
    learners = [_result("g0-l0", holdout_from=14), _result("g0-l1", holdout_from=None)]
    items = Items([], [], [[Item(f"t{i}", "1+1%7=", "2", "modular") for i in range(N)]])
    _, table, _ = compute_signals(learners, items)
    members = [Member(r.learner_id, sample_genome(GeneSpace(), random.Random(i)))
               for i, r in enumerate(learners)]
    recs = record(0, members, learners, table, {"g0-l0": 1.0, "g0-l1": 0.5})
    row = summarise(cfg, 0, recs, {})
    assert row["metrics"]["grokked_learners"] == 1.0
    tracker = Tracker(cfg.tracking.uri, cfg.tracking.experiment, cfg.tracking.artifact_location)
    tracker.start_evolution({}, run_name="grok")
    tracker.log_generation(0, recs, row["metrics"], plots=False)
    client = tracker.client
    grokked = client.search_runs([tracker.experiment_id], "tags.`evolve.grokked` = 'true'")
    assert [r.data.tags["evolve.learner_id"] for r in grokked] == ["g0-l0"]
    m = grokked[0].data.metrics
    # memorised at checkpoint 2 (step 12); holdout half-way up its jump at checkpoint 14 (step 60)
    assert (m["signal.grok_memorised_step"], m["signal.grok_onset_step"], m["signal.grok_delay"]) \
        == (12.0, 60.0, 48.0)
    other = client.search_runs([tracker.experiment_id], "tags.`evolve.grokked` = 'false'")
    assert [r.data.tags["evolve.learner_id"] for r in other] == ["g0-l1"]
    assert "signal.grok_onset_step" not in other[0].data.metrics
    assert "grok_onset_step" in other[0].data.tags["evolve.undefined_signals"].split(",")
    tracker.finish()
    # the report section reads the same runs back: one grokked learner, its onset, the plot
    from evolve.experiments.grokking import evolution

    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("# Grokking\n\n## 6. Grokking inside evolution\n\nSTALE SECTION\n")
    assert evolution.main(["--uri", cfg.tracking.uri, "--experiment", cfg.tracking.experiment,
                           "--out", str(out), "--command", "evolve run"]) == 0
    doc = json.loads((out / "evolution.json").read_text())
    assert doc["grokked"] == ["g0-l0"]
    assert [(r["memorised_step"], r["onset_step"], r["delay"]) for r in doc["learners"]] == \
        [(12, 60, 48), (12, None, None)]
    report = (out / "report.md").read_text()
    assert report.count("## 6. Grokking inside evolution") == 1 and "STALE SECTION" not in report
    assert "**1 of 2 learners grokked**" in report
    assert (out / "evolution_curves.png").stat().st_size > 0


def test_epochs_repeat_the_items_in_fresh_orders_with_a_checkpoint_per_window() -> None:
    items = [Item(f"i{k}", f"{k}+0%7=", str(k), "modular") for k in range(6)]
    plan = LearnerPlan("g0-l0", spec=None, stream_seed=3)
    one, win1 = build_stream(plan, items, [], batch_size=2, checkpoint_every=4, probe=None)
    three, win3 = build_stream(plan, items, [], batch_size=2, checkpoint_every=4, probe=None,
                               epochs=3)
    assert three[:2] == one and win3 == win1          # the first pass is the one-pass stream
    assert len(three) == 6                            # 2 windows (4 + 2 items) per pass
    passes = [sorted(p for w in three[2 * e:2 * e + 2] for b in w for p in b) for e in range(3)]
    assert passes[0] == passes[1] == passes[2]        # every pass trains every item once
    assert [b for w in three[2:4] for b in w] != [b for w in one for b in w]   # re-ordered
    assert checkpoint_steps(6, 4, 6) == [4, 6, 10, 12, 16, 18]


def test_probe_passes_merges_the_windows_of_several_passes_into_one_checkpoint(
        make_cfg: Any) -> None:
    from common.errors import EvolveError

    items = [Item(f"i{k}", f"{k}+0%7=", str(k), "modular") for k in range(6)]
    plan = LearnerPlan("g0-l0", spec=None, stream_seed=3)
    every, _ = build_stream(plan, items, [], batch_size=2, checkpoint_every=4, probe=None,
                            epochs=5)
    merged, win = build_stream(plan, items, [], batch_size=2, checkpoint_every=4, probe=None,
                               epochs=5, probe_passes=2)
    assert len(merged) == 3                           # passes 1-2, 3-4 and the last, 5
    assert [b for w in merged for b in w] == [b for w in every for b in w]   # same steps, in order
    assert [len(w) for w in merged] == [6, 6, 3]      # 3 batches of 2 per pass
    assert set(win.values()) == {0}
    assert checkpoint_steps(6, 4, 3, probe_passes=2, epochs=5) == [12, 24, 30]
    assert make_cfg(**{"training.probe_passes": 25}).training.probe_passes == 25
    with pytest.raises(EvolveError, match="training.probe_passes"):
        make_cfg(**{"training.probe_passes": 0})


def test_epochs_must_be_a_positive_integer(make_cfg: Any) -> None:
    from common.errors import EvolveError

    assert make_cfg(**{"training.epochs": 3}).training.epochs == 3
    with pytest.raises(EvolveError, match="training.epochs"):
        make_cfg(**{"training.epochs": 0})


def test_the_shipped_grokking_config_trains_a_never_pretrained_op_for_many_passes() -> None:
    from curricula.families.modular import FAMILIAR
    from evolve.config import load_config

    cfg = load_config("grokking")
    (task,) = cfg.tasks
    assert task.family == "modular" and not set(task.params["ops"]) & set(FAMILIAR)
    assert cfg.training.epochs >= 50 and cfg.training.checkpoint_every == task.n
    assert task.holdout > 0 and not cfg.training.spectral


def test_the_lora_grokking_config_trains_full_batch_unclipped_with_sparse_probes() -> None:
    from evolve.config import load_config

    cfg = load_config("grokking_lora")
    (task,) = cfg.tasks
    t = cfg.training
    assert t.batch_size == task.n and t.max_grad_norm is None and t.adam_beta2 == 0.98
    assert t.epochs // t.probe_passes >= 20           # enough checkpoints for 10-probe windows
    # what lets the never-pretrained base grok (docs/experiments.md, sessions 12-13)
    assert set(t.modules_to_save) == {"embed", "head", "norm"} and t.init_scale > 0


def test_task_params_may_be_nested_or_beside_family(make_cfg: Any) -> None:
    """`{family: modular, params: {p: 13}}` used to be dropped silently (the family got p = 97)."""
    for tasks in ("[{family: modular, n: 4, holdout: 2, probe: 0, params: {p: 13, ops: [sub]}}]",
                  "[{family: modular, n: 4, holdout: 2, probe: 0, p: 13, ops: [sub]}]"):
        fam = make_cfg(tasks=tasks).tasks[0].make()
        assert (fam.p, fam.ops) == (13, ("sub",))


def test_training_init_scale_reaches_fresh_learners_and_is_off_by_default(make_cfg: Any) -> None:
    """`training.init_scale` (the Omnigrok start, docs/experiments.md) travels from the config
    through the group's job to every fresh adapter; the default keeps PEFT's zero update."""
    from common.errors import EvolveError
    from evolve.generation import build_streams, draw_items, init_population, make_job
    from evolve.train import _population

    def deltas(cfg: Any) -> list[float]:
        members = init_population(cfg, cfg.gene_space())[:2]
        job = make_job(cfg, cfg.base, build_streams(cfg, members, 0), draw_items(cfg), 0, 0)
        pop = _population(job)
        return [sum(float(d.norm()) for d in pop.lora_delta(i).values()) for i in range(pop.P)]

    assert make_cfg().training.init_scale == 0
    assert deltas(make_cfg()) == [0.0, 0.0]
    assert all(d > 0 for d in deltas(make_cfg(**{"training.init_scale": 2})))
    with pytest.raises(EvolveError, match="training.init_scale"):
        make_cfg(**{"training.init_scale": -1})


def test_training_adam_beta2_reaches_the_optimiser(make_cfg: Any) -> None:
    """`training.adam_beta2` (0.98 in the grokking papers) travels from the config through the
    group's job to the population's AdamW; the default is 0.999, and a value outside (0, 1) is a
    config error naming the key."""
    from common.errors import EvolveError
    from evolve.generation import build_streams, draw_items, init_population, make_job
    from evolve.train import _population

    def beta2(cfg: Any) -> float:
        members = init_population(cfg, cfg.gene_space())[:2]
        job = make_job(cfg, cfg.base, build_streams(cfg, members, 0), draw_items(cfg), 0, 0)
        return float(_population(job).opt.beta2)

    assert beta2(make_cfg()) == 0.999
    assert beta2(make_cfg(**{"training.adam_beta2": 0.98})) == 0.98
    with pytest.raises(EvolveError, match="training.adam_beta2"):
        make_cfg(**{"training.adam_beta2": 1.0})


def test_trained_modules_travel_from_the_config_to_children_and_the_champion(
        make_cfg: Any, tmp_path: Any) -> None:
    """`training.modules_to_save` (what lets a never-pretrained base grok, docs/experiments.md):
    every learner trains its own embeddings, head and norms; a clone inherits them with their
    AdamW moments, a merge averages them with the merge weights, and the exported adapter
    carries them as PEFT's modules_to_save."""
    import torch

    from evolve.backends.local import LocalBackend
    from evolve.generation import draw_items, init_population, run_generation
    from evolve.genome import Genome
    from evolve.operators.decisions import MergePlan
    from evolve.train import child_state, export_adapter

    cfg = make_cfg(**{"training.modules_to_save": "[embed, norm]"})
    gen = run_generation(cfg, LocalBackend(), str(cfg.base), init_population(cfg, cfg.gene_space()),
                         draw_items(cfg), 0)
    ids = [r.learner_id for r in gen.records]
    a, b = gen.states[0], gen.states[1]
    assert a.parts and set(a.parts) == set(b.parts or {}) and "model.embed_tokens.weight" in a.parts
    assert not torch.equal(a.parts["model.embed_tokens.weight"], b.parts["model.embed_tokens.weight"])
    genome = Genome.from_params(gen.records[0].genome)
    clone = child_state(genome, [ids[0]], None, None, {ids[0]: a})
    assert clone is not None and clone.parts and a.parts_exp_avg
    assert all(torch.equal(clone.parts[k], v) for k, v in a.parts.items())
    assert clone.parts_exp_avg is a.parts_exp_avg
    plan = MergePlan("linear", (ids[0], ids[1]), (3.0, 1.0))
    child = child_state(genome, [ids[0], ids[1]], plan, None, {ids[0]: a, ids[1]: b})
    assert child is not None and child.parts and child.parts_exp_avg is None
    for k, v in a.parts.items():
        torch.testing.assert_close(child.parts[k], 0.75 * v + 0.25 * (b.parts or {})[k])
    out = export_adapter(str(cfg.base), a, tmp_path / "champion")
    saved = json.loads((out / "adapter_config.json").read_text())["modules_to_save"]
    assert "model.embed_tokens" in saved and "model.norm" in saved
