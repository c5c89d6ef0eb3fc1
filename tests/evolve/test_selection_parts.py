"""The parts the selection experiment is built from, each on its own: what selection ranks
(`selection.basis`), heritability and response (`evolve.response`), Holm and power, the learning
outcome of the assessment, categorical genes that move only sometimes, and a rank change that
pads or truncates the inherited adapter and keeps its optimiser state."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import numpy as np
import pytest
import torch

from common.errors import EvolveError
from evolve.arms import basis
from evolve.config import load_config
from evolve.experiments.selection_stats import holm, power, seeds_needed
from evolve.genome import GeneSpace, sample_genome
from evolve.operators.selection import Individual, elitism, select
from evolve.operators.variation import CATEGORICAL_GENES, Parent, explore
from evolve.response import generation_metrics, row
from learners.rank_change import change_rank


def _pop() -> list[Individual]:
    fits = [3.0, 1.0, -math.inf, 2.0, 0.5]
    return [Individual(f"l{i}", f, signals={"assess_gain": 0.1 * (5 - i) if i != 1 else None})
            for i, f in enumerate(fits)]


def test_shuffled_permutes_fitness_among_the_living_only() -> None:
    pop = _pop()
    seen = set()
    for seed in range(30):
        out = basis("shuffled", pop, random.Random(seed))
        assert [p.id for p in out] == [p.id for p in pop]
        assert out[2].fitness == -math.inf
        assert sorted(p.fitness for p in out if not p.failed) == [0.5, 1.0, 2.0, 3.0]
        seen.add(tuple(p.fitness for p in out))
    assert len(seen) > 5                      # it really permutes
    assert [p.fitness for p in pop] == [3.0, 1.0, -math.inf, 2.0, 0.5]   # records untouched
    a = basis("shuffled", pop, random.Random(4))
    assert [p.fitness for p in a] == [p.fitness for p in basis("shuffled", pop, random.Random(4))]


def test_outcome_and_random_bases() -> None:
    pop = _pop()
    oracle = basis("outcome", pop, random.Random(0))
    assert [p.fitness for p in oracle] == pytest.approx([0.5, -math.inf, -math.inf, 0.2, 0.1])
    assert elitism(oracle, 1)[0].id == "l0" and elitism(basis("fitness", pop, random.Random(0)), 1)[0].id == "l0"
    elites = Counter(elitism(basis("random", pop, random.Random(s)), 1)[0].id for s in range(400))
    assert set(elites) == {"l0", "l1", "l3", "l4"}       # the random arm's elite: any living one
    assert all(60 < c < 140 for c in elites.values())
    chosen = Counter(p.id for p in select("tournament", basis("shuffled", pop, random.Random(1)),
                                          2000, random.Random(2), size=3))
    assert "l2" not in chosen


@pytest.mark.parametrize("sets, fragment", [
    (["selection.basis=lucky"], "unknown selection.basis 'lucky'"),
    (["selection.basis=outcome", "assess.every=2"], "assess.every=1"),
    (["selection.basis=random", "selection.operator=lexicase", "selection.params={}"], "lexicase"),
    (["variation.categorical_p=1.5"], "categorical_p"),
])
def test_bad_selection_settings_are_one_line(sets: list[str], fragment: str) -> None:
    with pytest.raises(EvolveError, match=fragment.replace(".", r"\.")) as err:
        load_config(None, sets)
    assert "\n" not in str(err.value)


def test_response_metrics_satisfy_price_and_regression() -> None:
    # parents z = 0..5; children: parent 5 has 3 children, parent 4 two, parent 0 one;
    # a child's z = 0.5 * parent z + 1 (so slope 0.5)
    parents = [row(f"p{i}", [], float(i) / 10, float(i)) for i in range(6)]
    kids = [row(f"c{j}", [f"p{i}"], 0.0, 0.5 * i + 1) for j, i in enumerate([5, 5, 5, 4, 4, 0])]
    m = generation_metrics(parents, kids)
    assert m["heritability/parent_offspring_slope"] == pytest.approx(0.5)
    assert m["heritability/parent_offspring_r"] == pytest.approx(1.0)
    chosen = np.mean([5, 5, 5, 4, 4, 0])
    assert m["selection_differential/outcome"] == pytest.approx(chosen - 2.5)
    assert m["selection_differential/fitness"] == pytest.approx((chosen - 2.5) / 10)
    observed = np.mean([0.5 * i + 1 for i in [5, 5, 5, 4, 4, 0]]) - 2.5
    assert m["response/observed"] == pytest.approx(observed)
    assert m["price/selection"] + m["price/transmission"] == pytest.approx(observed)
    assert m["response/predicted"] == pytest.approx(0.5 * (chosen - 2.5))
    # an undefined outcome (failed learner) is left out, never read as 0
    m2 = generation_metrics(parents + [row("px", [], None, None, failed=True)],
                            kids + [row("cx", ["px"], 1.0, 9.0)])
    assert m2["heritability/pairs"] == 6.0 and m2["response/observed"] != m["response/observed"]


def test_holm_and_power() -> None:
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None], nan_ok=True)
    assert holm([0.5, 0.01]) == [0.5, 0.02]
    # the numbers: d_z 0.78 -> ~27% power at 5 seeds, about 16 seeds for 80%
    assert power(0.78, 5) == pytest.approx(0.27, abs=0.03)
    n = seeds_needed(0.78)
    assert n is not None and 14 <= n <= 17 and (power(0.78, n) or 0) >= 0.8 > (power(0.78, n - 1) or 0)
    assert seeds_needed(0.0) is None


def test_assessment_outcome_is_learning_not_knowing() -> None:
    from evolve.assess import summarise

    # 4 items: items 0, 1 known before; 2 learned by the end; 3 never
    correct = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]], dtype=bool)
    s = summarise(correct, [0, 2, 4], 1, ["a", "b", "c", "d"])
    assert s["assess_initial_accuracy"] == 0.5
    assert s["assess_learned_share"] == 0.5
    # accuracy 0.5, 0.5, 0.75 over steps 0, 2, 4: area 0.5625; gain = area - 0.5
    assert s["assess_auc"] == pytest.approx(0.5625) and s["assess_gain"] == pytest.approx(0.0625)
    known = np.ones((3, 4), dtype=bool)         # knows everything, learns nothing
    s = summarise(known, [0, 2, 4], 1, ["a", "b", "c", "d"])
    assert s["assess_gain"] == 0.0 and s["assess_learned_share"] is None


def test_categorical_genes_move_only_with_their_probability() -> None:
    space = GeneSpace(rank=(2, 4, 8), steps_per_item=(1, 3))
    g = sample_genome(space, random.Random(0))
    for seed in range(20):
        child = explore([Parent("p", g)], space, random.Random(seed), resample_p=0.0,
                        categorical_p=0.0).genome
        assert all(getattr(child, n) == getattr(g, n) for n in CATEGORICAL_GENES)
        assert child.lr != g.lr                       # floats still move
    moved = [explore([Parent("p", g)], space, random.Random(s), resample_p=0.0).genome.rank
             != g.rank for s in range(20)]
    assert all(moved)                                 # the PBT rule (categorical_p = 1): always
    some = [explore([Parent("p", g)], space, random.Random(s), resample_p=0.0,
                    categorical_p=0.3).genome.rank != g.rank for s in range(300)]
    assert 0.2 < sum(some) / 300 < 0.4


def _factors(r: int, seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return {"layers.0.q_proj": (torch.randn(r, 6, generator=gen), torch.randn(5, r, generator=gen))}


def test_growing_the_rank_keeps_the_update_and_the_moments() -> None:
    lora, m, v = _factors(2), _factors(2, 1), _factors(2, 2)
    new, (m2, v2) = change_rank(lora, 4, old_scale=8 / 2, new_scale=8 / 4, seed=0, moments=(m, v))
    a, b = new["layers.0.q_proj"]
    assert a.shape == (4, 6) and b.shape == (5, 4)
    torch.testing.assert_close(2.0 * b @ a, 4.0 * lora["layers.0.q_proj"][1] @ lora["layers.0.q_proj"][0])
    assert a[2:].abs().sum() > 0 and b[:, 2:].abs().sum() == 0   # new slots can learn
    assert m2 is not None and v2 is not None
    torch.testing.assert_close(m2["layers.0.q_proj"][0][:2], m["layers.0.q_proj"][0])
    assert m2["layers.0.q_proj"][0][2:].abs().sum() == 0 and v2["layers.0.q_proj"][1][:, 2:].abs().sum() == 0


def test_shrinking_the_rank_keeps_the_largest_components() -> None:
    a = torch.zeros(3, 4)
    b = torch.zeros(2, 3)
    a[0, 0], a[1, 1], a[2, 2] = 1.0, 5.0, 2.0
    b[0, 0], b[0, 1], b[1, 2] = 1.0, 1.0, 1.0
    m = {"x": (torch.arange(12.0).view(3, 4), torch.arange(6.0).view(2, 3))}
    new, (m2,) = change_rank({"x": (a, b)}, 2, old_scale=1.0, new_scale=1.0, seed=0, moments=(m,))
    assert new["x"][0].tolist() == a[[1, 2]].tolist()           # components 1 and 2 kept
    assert m2 is not None and m2["x"][1].tolist() == m["x"][1][:, [1, 2]].tolist()


def test_a_child_whose_rank_changed_keeps_its_optimiser_state() -> None:
    from evolve.genome import Genome
    from evolve.train import child_state
    from learners.population import LearnerState

    space = GeneSpace(rank=(2, 4))
    g = sample_genome(space, random.Random(1))
    g.rank, g.target_modules = 2, ("q_proj",)
    parent = LearnerState(spec=g.to_spec(), step=17, lora=_factors(2), exp_avg=_factors(2, 1),
                          exp_avg_sq={k: (x.abs(), y.abs()) for k, (x, y) in _factors(2, 2).items()})
    child = Genome.from_params(g.to_params())
    child.rank = 4
    st = child_state(child, ["p"], None, None, {"p": parent})
    assert st.step == 17 and st.exp_avg is not None and st.lora["layers.0.q_proj"][0].shape == (4, 6)
    torch.testing.assert_close(st.exp_avg["layers.0.q_proj"][0][:2], parent.exp_avg["layers.0.q_proj"][0])  # type: ignore[index]
    old = child_state(child, ["p"], None, None, {"p": parent}, refactorise=True)   # the old rule
    assert old.step == 0 and not old.exp_avg and old.lora["layers.0.q_proj"][0].shape == (4, 6)


def test_signal_table_finds_the_signal_that_predicts_the_offspring_gain() -> None:
    from evolve.experiments.signal_table import signal_table

    def learner(i: str, parent: str | None, x: float, noise: float, gain: float) -> dict:
        return {"id": i, "parents": [parent] if parent else [], "failed": False, "fitness": noise,
                "assess_gain": gain, "signals": {"x": x, "noise": noise}}

    runs = []
    for seed in range(3):
        rng = random.Random(seed)
        g0 = [learner(f"a{j}", None, float(j), rng.random(), rng.random()) for j in range(6)]
        # each parent has one child whose gain rises with the parent's x
        g1 = [learner(f"b{j}", f"a{j}", rng.random(), rng.random(), j + 0.1 * rng.random())
              for j in range(6)]
        runs.append({"seed": seed, "generations": [{"learners": g0}, {"learners": g1}]})
    table = signal_table({"random": runs})
    rows = {r["signal"]: r for r in table["rows"]}
    assert rows["x"]["offspring"]["mean"] == pytest.approx(1.0)
    assert rows["x"]["offspring"]["populations"] == 3
    assert abs(rows["noise"]["offspring"]["mean"]) < 0.8
    assert "x" in table["suggested_weights"] and "noise" not in table["suggested_weights"]


def test_the_planted_control_has_its_own_size_and_genes() -> None:
    """Its genes come before --set, its size after --set (not with --quick), --planted-set last;
    the main arms never see any of them."""
    import argparse

    from evolve.experiments.selection import arm_config, first_seed, run_seeds

    def cfg(quick: bool, sets: list[str], planted_sets: list[str], planted: bool = True) -> Any:
        args = argparse.Namespace(config=None, quick=quick, sets=sets, planted_sets=planted_sets)
        return arm_config(args, "random", 0, None, planted=planted)

    c = cfg(False, ["population=6", "generations=3"], [])
    assert (c.population, c.generations, c.genome["lr"]) == (10, 4, [1e-4, 1e-2])
    assert c.genome["rank"] == [4] and c.variation.resample_p == 0 == c.variation.crossover_p
    c = cfg(False, ["population=6"], ["population=12", "genome.lr=[1e-3, 1e-2]"])
    assert (c.population, c.genome["lr"]) == (12, [1e-3, 1e-2])
    fresh = argparse.Namespace(config=None, quick=False, sets=["seed=3"], planted_sets=["seed=12"])
    assert (first_seed(fresh, True), first_seed(fresh, False)) == (12, 3)   # a new design's seeds
    assert (run_seeds(fresh, 2, True), run_seeds(fresh, 3, False)) == ([12, 13], [3, 4, 5])
    assert cfg(True, [], []).population == 4            # --quick keeps its tiny size
    main = cfg(False, ["population=6"], ["population=12"], planted=False)
    assert main.population == 6 and main.genome["lr"] != [1e-4, 1e-2]


def test_the_random_arm_is_the_fitness_arms_operator_on_random_values() -> None:
    """The null of every contrast: the fitness arm's operator, its parameters and elitism, only
    the values selected on are fresh random ones; the old uniform-parents arm is `random-uniform`."""
    import argparse

    from evolve.experiments.selection import arm_config

    args = argparse.Namespace(config=None, quick=False, sets=["selection.elitism=2"],
                              planted_sets=[])
    fit, rnd, uni = (arm_config(args, a, 0, None).selection
                     for a in ("fitness", "random", "random-uniform"))
    assert (rnd.operator, rnd.params, rnd.elitism) == (fit.operator, fit.params, fit.elitism)
    assert fit.operator == "tournament" and (fit.basis, rnd.basis) == ("fitness", "random")
    assert (uni.operator, uni.basis, uni.elitism) == ("uniform", "random", 2)


def test_the_verdict_follows_the_preregistered_rule() -> None:
    """Shown only when fitness beats random after Holm and the negative control does not."""
    from evolve.experiments.selection_analysis import main_verdict
    from evolve.experiments.selection_arms import PRIMARY_CONTRASTS
    from evolve.experiments.selection_stats import contrasts

    base = [0.01 * i for i in range(10)]
    up = [x + 0.05 + 0.001 * (i % 3) for i, x in enumerate(base)]
    noise = [x + (0.002 if i % 2 else -0.002) for i, x in enumerate(base)]

    def verdict(fitness: list[float], shuffled: list[float]) -> dict[str, Any]:
        per_seed: dict[str, dict[str, list[float | None]]] = {
            a: {"assess_gain": list(v)} for a, v in
            (("fitness", fitness), ("random", base), ("shuffled", shuffled), ("oracle", up))}
        return main_verdict(contrasts(per_seed, PRIMARY_CONTRASTS, "assess_gain"))

    assert verdict(up, noise)["shown"] is True
    broken = verdict(up, up)        # shuffled beats random too: the null is broken
    assert broken["shown"] is False and "negative control" in broken["text"]
    assert verdict(noise, noise)["shown"] is False
