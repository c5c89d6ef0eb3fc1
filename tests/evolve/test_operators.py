"""Selection and variation operators: behaviour, failed learners, determinism, decision replay."""

from __future__ import annotations

import math
import random
from collections import Counter
from typing import Any

import pytest

from common.errors import EvolveError
from common.ranges import ParamRange, round_sig
from common.registry import Entry, UnknownNameError
from curricula.registry import STRATEGIES
from evolve.genome import GeneSpace, Genome, sample_genome
from evolve.operators import SELECTION, VARIATION, adapter_plan, apply_decisions
from evolve.operators.selection import Individual, elitism, select
from evolve.operators.variation import Parent, vary


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch) -> GeneSpace:
    """A space over three test strategies (every ParamRange kind), registered for this test only."""
    specs = {"t_plain": {}, "t_power": {"exponent": ParamRange(0.5, 3.0, "float")},
             "t_mixed": {"ratio": ParamRange(0.1, 0.9, "float"), "temp": ParamRange(1e-3, 1.0, "log"),
                         "window": ParamRange(1, 5, "int"), "mode": ParamRange(kind="choice", choices=("a", "b"))}}
    for name, mutable in specs.items():
        cls = type(name, (), {"name": name, "description": "test", "mutable": mutable})
        monkeypatch.setitem(STRATEGIES._entries, name, Entry(name, "test", cls))
    return GeneSpace(curricula=tuple(specs), rank=(2, 4, 8, 16),
                     target_modules=(("q_proj", "v_proj"), ("q_proj", "k_proj", "v_proj")))


def pop_of(fitness: list[float], **kw: Any) -> list[Individual]:
    return [Individual(f"l{i}", f, **{k: v[i] for k, v in kw.items()}) for i, f in enumerate(fitness)]


# ---------------------------------------------------------------- selection

def test_tournament_prefers_the_fitter() -> None:
    pop = pop_of([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    counts = Counter(p.id for p in select("tournament", pop, 3000, random.Random(0), size=3))
    freq = [counts[f"l{i}"] for i in range(6)]
    # drawn with replacement (DEAP): P(rank i of 6 wins) = ((i+1)^3 - i^3) / 216, strictly increasing
    assert all(a < b for a, b in zip(freq, freq[1:], strict=False)) and freq[5] > 3000 * 0.35
    assert {p.id for p in select("tournament", pop, 20, random.Random(1), size=50)} == {"l5"}


def test_truncation_replaces_the_bottom_quantile_with_copies_of_the_top() -> None:
    pop = pop_of([3.0, 7.0, 1.0, 5.0, 0.0, 6.0, 2.0, 4.0])
    out = select("truncation", pop, 8, random.Random(0), quantile=0.25)
    assert [p.fitness for p in out[:6]] == [7.0, 6.0, 5.0, 4.0, 3.0, 2.0]   # survivors, best first
    assert all(p.fitness in (7.0, 6.0) for p in out[6:])                   # bottom 2 = top copies
    assert all(any(p is q for q in pop) for p in out)                      # the same objects


def test_nsga2_returns_the_first_front_first() -> None:
    # maximise a, minimise b: front 0 = {l0, l1, l2}; l3 dominated by l1; l4 dominated by all
    sig = [{"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 2.0}, {"a": 3.0, "b": 3.0},
           {"a": 1.5, "b": 2.5}, {"a": 0.0, "b": 9.0}]
    pop = pop_of([0.0] * 5, signals=sig)
    out = select("nsga2", pop, 5, random.Random(0), objectives=["a", "b"], weights=[1, -1])
    assert {p.id for p in out[:3]} == {"l0", "l1", "l2"} and [p.id for p in out[3:]] == ["l3", "l4"]
    assert [p.front for p in pop] == [0, 0, 0, 1, 2]
    assert pop[0].crowding == math.inf and pop[1].crowding is not None and pop[1].crowding < math.inf
    top2 = select("nsga2", pop, 2, random.Random(0), objectives=["a", "b"], weights=[1, -1])
    assert {p.id for p in top2} == {"l0", "l2"}                 # the boundary points: most crowding


def test_nsga2_treats_a_missing_signal_as_worst() -> None:
    pop = pop_of([0.0] * 3, signals=[{"a": 1.0}, {"a": None}, {"a": 0.5}])
    out = select("nsga2", pop, 3, random.Random(0), objectives=["a"], weights=[1])
    assert [p.id for p in out] == ["l0", "l2", "l1"]


@pytest.mark.parametrize("weight", [1, -1])
def test_nsga2_survives_an_objective_nobody_has(weight: int) -> None:
    """A maximised or minimised signal missing (or NaN) for every learner, e.g. a half-life when
    nothing was forgotten, leaves the ranking to the other objectives."""
    pop = pop_of([0.0] * 3, signals=[{"a": 1.0, "b": None}, {"a": 3.0, "b": math.nan},
                                     {"a": 2.0, "b": None}])
    out = select("nsga2", pop, 3, random.Random(0), objectives=["a", "b"], weights=[1, weight])
    assert [p.id for p in out] == ["l1", "l2", "l0"]


def test_lexicase_picks_specialists_over_a_generalist() -> None:
    cases = [{"add": 1.0, "mod": 0.0, "rpn": 0.0}, {"add": 0.0, "mod": 1.0, "rpn": 0.0},
             {"add": 0.0, "mod": 0.0, "rpn": 1.0}, {"add": 0.6, "mod": 0.6, "rpn": 0.6}]
    pop = pop_of([0.33, 0.33, 0.33, 0.6], cases=cases)
    for eps in (0.0, None):
        counts = Counter(p.id for p in select("lexicase", pop, 300, random.Random(0), epsilon=eps))
        assert set(counts) == {"l0", "l1", "l2"} and min(counts.values()) > 60
    # per-signal cases with directions: a minimised signal picks its minimiser
    pop2 = pop_of([0.0, 0.0], signals=[{"forgetting": 0.1}, {"forgetting": 0.4}])
    out = select("lexicase", pop2, 20, random.Random(0), source="signals", weights=[-1], epsilon=0.0)
    assert {p.id for p in out} == {"l0"}
    # a tournament on the scalar picks the generalist instead
    assert Counter(p.id for p in select("tournament", pop, 50, random.Random(0), size=40)) == {"l3": 50}


def test_elitism_keeps_the_best_unchanged() -> None:
    pop = pop_of([1.0, 9.0, -math.inf, 5.0])
    out = elitism(pop, 2)
    assert [p.id for p in out] == ["l1", "l3"] and out[0] is pop[1]
    assert elitism(pop, 10) == [pop[1], pop[3], pop[0]]


def _pop_with_failed() -> list[Individual]:
    """Failed learners with the best signals and cases: a selector that ignored `failed` picks them."""
    fits = [1.0, -math.inf, 2.0, math.nan, 0.5, -math.inf]
    sig = [{"s": float(i)} for i in range(6)]
    sig[1], sig[3], sig[5] = {"s": 100.0}, {"s": 99.0}, {"s": 98.0}
    cases = [{"c": s["s"]} for s in sig]
    return pop_of(fits, signals=sig, cases=cases)


@pytest.mark.parametrize("name", SELECTION.names())
def test_failed_learners_are_never_selected(name: str) -> None:
    params = {"nsga2": {"objectives": ["s"], "weights": [1]}}.get(name, {})
    pop = _pop_with_failed()
    for seed in range(20):
        out = select(name, pop, 6, random.Random(seed), **params)
        assert not {p.id for p in out} & {"l1", "l3", "l5"}


@pytest.mark.parametrize("name", SELECTION.names())
def test_selection_is_a_function_of_its_rng(name: str) -> None:
    params = {"nsga2": {"objectives": ["s"], "weights": [1]}}.get(name, {})
    pop = pop_of([float(i % 4) for i in range(10)], signals=[{"s": float(i % 3)} for i in range(10)],
                 cases=[{"c": float(i % 5), "d": float(i % 2)} for i in range(10)])
    random.seed(1)
    a = [p.id for p in select(name, pop, 10, random.Random(42), **params)]
    random.seed(2)                                   # the global RNG's state must not matter
    b = [p.id for p in select(name, pop, 10, random.Random(42), **params)]
    assert a == b


def test_all_failed_is_one_clear_error() -> None:
    with pytest.raises(EvolveError, match="all 2 learners failed"):
        select("tournament", pop_of([-math.inf, math.nan]), 2, random.Random(0))


def test_unknown_operator_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match="valid: elitism, lexicase, nsga2, tournament"):
        select("roulette", pop_of([1.0]), 1, random.Random(0))
    with pytest.raises(UnknownNameError, match="valid: crossover, explore, merge, noise, reseed"):
        VARIATION.get("mutate")


# ---------------------------------------------------------------- variation

def test_explore_multiplies_by_exactly_1_2_or_0_8_and_stays_in_range(space: GeneSpace) -> None:
    explore = VARIATION.get("explore")
    seen = set()
    for s in range(100):
        g = sample_genome(space, random.Random(s))
        child = explore([Parent("p", g)], space, random.Random(s), resample_p=0.0)
        assert space.contains(child.genome) and child.genome.seed == g.seed
        for name in ("lr", "alpha", "weight_decay", "dropout", "rehearsal_ratio"):
            old, new = getattr(g, name), getattr(child.genome, name)
            lo, hi = getattr(space, name)
            options = {min(max(round_sig(old * f), lo), hi) for f in (1.2, 0.8)}
            assert new in options, (name, old, new)
            seen.add(round(new / old, 6) if old and lo < new < hi else None)
        for name, choices in (("rank", space.rank), ("curriculum", space.curricula)):
            i, j = (list(choices).index(x) for x in (getattr(g, name), getattr(child.genome, name)))
            assert abs(i - j) == 1                                       # a neighbour
    assert {1.2, 0.8} <= seen


def test_explore_resample_draws_from_the_space(space: GeneSpace) -> None:
    g = sample_genome(space, random.Random(0))
    child = VARIATION.get("explore")([Parent("p", g)], space, random.Random(3), resample_p=1.0)
    assert space.contains(child.genome)
    assert all("(resample)" in ln for ln in child.decisions)


def test_crossover_takes_every_gene_from_one_parent(space: GeneSpace) -> None:
    a, b = sample_genome(space, random.Random(1)), sample_genome(space, random.Random(2))
    from_b = Counter()
    for s in range(50):
        c = VARIATION.get("crossover")([Parent("A", a), Parent("B", b)], space, random.Random(s))
        assert c.decisions[0] == "parents: A x B (uniform crossover)" and c.operator == "crossover"
        for name in ("lr", "rank", "alpha", "seed", "curriculum", "steps_per_item"):
            v = getattr(c.genome, name)
            assert v in (getattr(a, name), getattr(b, name))
            from_b[name] += v == getattr(b, name) != getattr(a, name)
        src = a if c.genome.curriculum == a.curriculum else b     # params travel with the strategy
        assert c.genome.curriculum_params == src.curriculum_params
    assert all(0 < from_b[n] < 50 for n in from_b if getattr(a, n) != getattr(b, n))


def test_reseed_changes_only_the_seed(space: GeneSpace) -> None:
    g = sample_genome(space, random.Random(0))
    c = VARIATION.get("reseed")([Parent("p", g)], space, random.Random(5))
    assert c.genome.seed != g.seed and c.genome.to_params() | {"seed": g.seed} == g.to_params()
    assert c.decisions == [f"seed : {g.seed} --- (reseed) --> {c.genome.seed}"]


def test_merge_and_noise_plan_the_adapter(space: GeneSpace) -> None:
    a, b = sample_genome(space, random.Random(1)), sample_genome(space, random.Random(2))
    c = VARIATION.get("merge")([Parent("g2-l3", a), Parent("g2-l5", b)], space, random.Random(0))
    assert c.decisions == ["parents: g2-l3 x g2-l5 (svd merge)"] and c.genome == a
    assert c.merge is not None and c.merge.weights == (0.5, 0.5)
    n = VARIATION.get("noise")([Parent("g2-l3", a)], space, random.Random(0), std=0.01)
    assert n.noise is not None and n.decisions == [f"adapter: gaussian noise std=0.01 seed={n.noise[1]}"]


PIPELINES = [
    [("explore", {"resample_p": 0.3})],
    [("crossover", {}), ("explore", {"p": 0.5}), ("reseed", {})],
    [("crossover", {}), ("merge", {"method": "ties", "weights": [0.7, 0.3]}), ("reseed", {}),
     ("noise", {"std": 0.02})],
    [("explore", {"resample_p": 1.0}), ("explore", {"resample_p": 0.0}), ("reseed", {})],
]


@pytest.mark.parametrize("steps", PIPELINES)
def test_decisions_replay_to_the_same_child(space: GeneSpace, steps: list[Any]) -> None:
    for s in range(40):
        rng = random.Random(s)
        a, b = sample_genome(space, rng), sample_genome(space, rng)
        child = vary(steps, [Parent("g1-l0", a), Parent("g1-l1", b)], space, rng)
        assert apply_decisions(a, child.decisions) == child.genome
        assert Genome.from_params(child.genome.to_params()) == child.genome
        assert adapter_plan(child.decisions) == (child.merge, child.noise)
        assert space.contains(child.genome)


def test_replay_refuses_another_genome(space: GeneSpace) -> None:
    g = Genome(lr=3e-4, curriculum="t_plain")
    assert apply_decisions(g, ["lr : 3e-4 --- (* 0.8) --> 2.4e-4"]).lr == 2.4e-4
    with pytest.raises(EvolveError, match="does not apply: lr is 3e-4"):
        apply_decisions(g, ["lr : 1e-3 --- (* 0.8) --> 8e-4"])
    with pytest.raises(EvolveError, match="cannot parse decision line"):
        apply_decisions(g, ["lr goes up"])
    assert apply_decisions(g, ["elite: g2-l3 kept unchanged"]) == g


def test_vary_is_deterministic_and_reports_the_operator(space: GeneSpace) -> None:
    a, b = sample_genome(space, random.Random(1)), sample_genome(space, random.Random(2))
    parents = [Parent("A", a), Parent("B", b)]
    one = vary(PIPELINES[2], parents, space, random.Random(9))
    assert one == vary(PIPELINES[2], parents, space, random.Random(9))
    assert one.operator == "crossover" and one.parents == ("A", "B")
    assert vary([("explore", {})], parents, space, random.Random(0)).operator == "mutate"
    assert vary([("reseed", {})], parents, space, random.Random(0)).operator == "clone"


def test_a_misspelt_param_is_an_error_not_ignored(space: GeneSpace) -> None:
    with pytest.raises(EvolveError, match="unknown param 'sise' for selection operator tournament; "
                                          "valid: size"):
        select("tournament", pop_of([1.0, 2.0]), 2, random.Random(0), sise=5)
    g = Genome(curriculum="t_plain")
    with pytest.raises(EvolveError, match="unknown param 'resample' for variation operator explore"):
        vary([("explore", {"resample": 0.5})], [Parent("a", g)], space, random.Random(0))


def test_real_strategies_sample_explore_and_replay() -> None:
    """The default space over every registered curriculum strategy, with their own ranges."""
    space = GeneSpace()
    assert {"random", "rehearsal", "interleaved"} <= set(space.curricula)
    for s in range(30):
        rng = random.Random(s)
        a, b = sample_genome(space, rng), sample_genome(space, rng)
        for g in (a, b):
            STRATEGIES.get(g.curriculum)(**g.curriculum_params)     # the strategy accepts them
        child = vary(PIPELINES[1], [Parent("a", a), Parent("b", b)], space, rng)
        STRATEGIES.get(child.genome.curriculum)(**child.genome.curriculum_params)
        assert space.contains(child.genome) and apply_decisions(a, child.decisions) == child.genome
        explored = vary([("explore", {})], [Parent("a", a)], space, rng)
        assert not any(ln.startswith("target_modules") for ln in explored.decisions)  # 1 choice
