"""Key-term (JSONL) items in the engine: judged on every learner's greedy generation, not by exact
match, while exact items keep the teacher-forced probe. Real tiny base, real SQLite MLflow store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ANSWER = "frozen H2O"          # the reference answer: never what the base says
SAYS = "it is water"           # what the base is pretrained to answer to every question
KEY_TERM = "ＷＡＴＥＲ"         # fullwidth capitals: NFKC + casefold make it "water"
QUESTIONS = [f"What is ice {i}? " for i in range(12)]


def _write_jsonl(path: Path) -> Path:
    rows = [{"id": f"ice_{i:02d}", "question": q, "answer": ANSWER, "key_terms": [KEY_TERM]}
            for i, q in enumerate(QUESTIONS)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def water_base(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny base pretrained to answer every question of the file with SAYS (~3 s)."""
    from learners.base import load_base, pretrain, save_base

    model, tok = load_base(tiny_base)
    pretrain(model, tok, [(q, SAYS) for q in QUESTIONS], steps=300, batch_size=16, lr=1e-2,
             seed=0, progress=False)
    out = tmp_path_factory.mktemp("water_base")
    save_base(model, tok, out)
    return out


def _population(base: Path, specs: list[Any]) -> Any:
    """A population on `base` adapting every module some spec targets (as `train_group` builds)."""
    from learners.base import load_base
    from learners.population import Population

    model, tok = load_base(base)
    targets = [t for s in specs for t in (s.target_modules or ())]
    return Population(model, tok, specs,
                      target_modules=tuple(dict.fromkeys(targets)) or ("q_proj", "v_proj"))


def _spec(seed: int) -> Any:
    from learners.population import LearnerSpec

    return LearnerSpec(lr=1e-3, weight_decay=0.0, rank=4, alpha=8.0, dropout=0.0, seed=seed)


def test_probe_items_judges_key_term_items_on_generated_text(water_base: Path,
                                                             tmp_path: Path) -> None:
    import curricula
    from evolve.steps import pairs, probe_items
    from learners.probe import generate_greedy

    pop = _population(water_base, [_spec(1), _spec(2)])
    keyed = curricula.FAMILIES.get("jsonl")(path=_write_jsonl(tmp_path / "q.jsonl")).generate(4, 0)
    exact = curricula.FAMILIES.get("modular")().generate(4, 0)
    items = [keyed[0], exact[0], keyed[1], exact[1], *keyed[2:], *exact[2:]]   # mixed order
    correct, prob, _ = probe_items(pop, items)
    tf = pop.probe(pairs(items))
    texts = generate_greedy(pop.model, pop.tokenizer, pop.P, [it.prompt for it in items], 32,
                            pop.probe_chunk, pop.device)
    assert correct.shape == prob.shape == (2, len(items))
    for j, it in enumerate(items):
        if it.exact:     # the teacher-forced verdict, unchanged
            np.testing.assert_array_equal(correct[:, j], tf.correct[:, j])
        else:            # said "it is water", not "frozen H2O": right by key term, wrong exactly
            assert [texts[p][j] for p in range(2)] == [SAYS, SAYS]
            assert correct[:, j].all() and not tf.correct[:, j].any()
    # prob is the teacher-forced probability of the reference answer for both kinds
    np.testing.assert_allclose(prob, tf.prob, rtol=1e-6)


def test_generation_in_chunks_gives_the_same_texts(water_base: Path) -> None:
    from learners.probe import generate_greedy

    pop = _population(water_base, [_spec(1), _spec(2), _spec(3)])
    prompts = QUESTIONS[:5] + ["Zzz", "1+1="]
    whole = generate_greedy(pop.model, pop.tokenizer, pop.P, prompts, 16, pop.probe_chunk,
                            pop.device)
    one = generate_greedy(pop.model, pop.tokenizer, pop.P, prompts, 16, 1, pop.device)
    assert whole == one and len(whole) == 3 and all(len(t) == len(prompts) for t in whole)
    assert all(len(pop.tokenizer.encode(t)) <= 16 for row in whole for t in row)


def test_evolution_with_a_jsonl_task_judges_it_by_key_terms(water_base: Path, tmp_path: Path,
                                                             sets_for: Any, run_evo: Any) -> None:
    """A tiny evolution on a JSONL task (key-term judge) plus a modular one (exact): before
    training every learner says SAYS, which the recorded baseline counts as correct for every JSONL
    item although it is not the reference answer; at the last checkpoint the recorded verdicts are
    the key-term judge of what the final adapters really generate."""
    from curricula.items import key_terms_match
    from evolve.config import load_config
    from evolve.generation import draw_items
    from evolve.resume import load_state
    from evolve.steps import pairs
    from fitness.formats import load_evolve
    from learners.probe import generate_greedy

    path = _write_jsonl(tmp_path / "ice.jsonl")
    tasks = (f"[{{family: jsonl, path: '{path}', n: 4, holdout: 2, probe: 2}}, "
             "{family: modular, n: 8, holdout: 2, probe: 2}]")
    sets = [s for s in sets_for(tmp_path, tasks=tasks) if not s.startswith("base=")]
    cfg = load_config(None, [*sets, f"base={water_base}"])
    summary, tracker = run_evo(cfg)
    assert len(tracker.load_records(summary.run_id)) == cfg.population * cfg.generations
    items = draw_items(cfg)
    keyed = {it.id for it in items.holdout + [x for g in items.per_generation for x in g]
             if not it.exact}
    assert len(keyed) == 2 + 4 * 2
    state = Path(cfg.state_dir) / summary.run_id
    gen0 = load_evolve(state / "trajectories_g0.json")
    base = _population(water_base, [_spec(0)])
    exact_items = [it for it in items.per_generation[0] + items.holdout if it.exact]
    exact_base = dict(zip([it.id for it in exact_items],
                          base.probe(pairs(exact_items)).correct[0], strict=True))
    assert not base.probe([(q, ANSWER) for q in QUESTIONS]).correct.any()   # exact match: wrong
    for traj in gen0:   # fresh adapters (LoRA B = 0): the base's own answers
        for iid, right in [*traj.baseline.items(), *zip(traj.holdout_ids, traj.holdout_baseline,
                                                        strict=True)]:
            assert right == (True if iid in keyed else bool(exact_base[iid])), iid
    # the last generation: recorded holdout verdicts at the last checkpoint = the key-term judge
    # of the final adapters' own greedy generations
    saved = load_state(cfg, summary.run_id)
    assert saved is not None
    last = load_evolve(state / f"trajectories_g{cfg.generations - 1}.json")
    pop = _population(water_base, [s.spec for s in saved.states])
    for i, s in enumerate(saved.states):
        pop.set_state(i, s)
    hold = [it for it in items.holdout if not it.exact]
    texts = generate_greedy(pop.model, pop.tokenizer, pop.P, [it.prompt for it in hold],
                            cfg.training.max_new_tokens, pop.probe_chunk, pop.device)
    for p, traj in enumerate(last):
        recorded = dict(zip(traj.holdout_ids, traj.holdout_correct[-1], strict=True))
        for j, it in enumerate(hold):
            assert recorded[it.id] == key_terms_match(it.key_terms, texts[p][j])
