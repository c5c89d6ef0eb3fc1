"""Everything the selection report says, computed from the runs: per-seed outcomes, the primary
contrasts (Holm over their exact sign-flip p values) and the secondary ones, the planted control's
contrasts and whether it passed, heritability (random arm), the response to selection per
generation, power from the pilot, how well fitness predicts the outcome, curves and budgets."""

from __future__ import annotations

import math
from typing import Any

from evolve.experiments.paired import t_interval
from evolve.experiments.selection_arms import (
    ALPHA,
    METRICS,
    PRIMARY,
    PRIMARY_CONTRASTS,
    SECONDARY,
    SECONDARY_CONTRASTS,
)
from evolve.experiments.selection_stats import (
    contrast,
    contrasts,
    fitness_prediction,
    heritability,
    mean_of,
    per_seed_values,
    power_section,
    seed_value,
    selection_response,
)
from evolve.experiments.signal_table import signal_table

DEFINITION = ("assess_gain of the last generation's learners (mean over each seed's learners): "
              "area under probe accuracy(t) - accuracy(0) on the fixed never-trained probe items "
              "over the assessment budget, divided by the budget; the accuracy before training "
              "(assess_initial_accuracy) is reported beside it, never mixed in")


def mean_curve(learners: list[dict[str, Any]]) -> tuple[list[int], list[float]]:
    """(assessment steps in training items, mean probe accuracy over non-failed learners)."""
    curves = [x["curve"] for x in learners if not x["failed"] and x["curve"]]
    if not curves:
        return [], []
    steps = [s for s, _ in curves[0]]
    return steps, [sum(c[i][1] for c in curves) / len(curves) for i in range(len(steps))]


def _curves(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    out = {}
    for a, rs in runs.items():
        per = [mean_curve(r["generations"][-1]["learners"]) for r in rs]
        steps = per[0][0]
        out[a] = {"steps": steps, "per_seed": [c for _, c in per],
                  "band": [t_interval([c[i] for _, c in per if len(c) > i])
                           for i in range(len(steps))]}
    first = next(iter(runs.values()))
    per0 = [mean_curve(r["generations"][0]["learners"]) for r in first]
    out["generation 0"] = {"steps": per0[0][0], "per_seed": [c for _, c in per0],
                           "band": [t_interval([c[i] for _, c in per0 if len(c) > i])
                                    for i in range(len(per0[0][0]))]}
    return out


def _verdict(c: dict[str, Any]) -> dict[str, Any]:
    """One plain sentence for a contrast on the primary outcome (Holm-adjusted sign-flip p)."""
    from evolve.experiments.report import fmt

    md, p = c["mean_diff"], c.get("p_holm", c["p_signflip"])
    sig = p is not None and p < ALPHA
    beat = None if md is None or c["n"] < 2 else bool(sig and md > 0)
    if beat is None:
        word, note = "could not be compared with", " (fewer than 2 seeds)"
    elif sig:
        word, note = ("beat", "") if beat else ("did worse than", "")
    else:
        word = "did not beat"
        note = (" (higher, within noise)" if md > 0 else " (lower, within noise)" if md < 0
                else " (no difference)")
    text = (f"`{c['a']}` {word} `{c['b']}` on {c['outcome']}{note}: mean paired difference "
            f"{fmt(md)} (95% CI [{fmt(c['ci'][0])}, {fmt(c['ci'][1])}]), sign-flip p = "
            f"{fmt(c['p_signflip'])} (Holm {fmt(c.get('p_holm'))}; smallest possible "
            f"{fmt(c['min_p_signflip'])}), paired t p = {fmt(c['p_t'])}, d_z = {fmt(c['d_z'])}, "
            f"{c['wins']} of {c['n']} seeds higher")
    return {"a": c["a"], "b": c["b"], "beat": beat, "significant": sig, "text": text}


RULE = ("shown iff fitness - random is positive with Holm p < alpha and shuffled - random is not "
        "significant (the negative control says no)")


def main_verdict(primary: list[dict[str, Any]]) -> dict[str, Any]:
    """The experiment's answer by its rule (`RULE`), from the primary contrasts."""
    v = {f"{c['a']}-{c['b']}": _verdict(c) for c in primary}
    fit, shuf = v.get("fitness-random"), v.get("shuffled-random")
    if fit is None or shuf is None:
        return {"shown": None, "rule": RULE, "text": "not decided: the fitness or shuffled arm "
                "did not run"}
    shown = bool(fit["beat"]) and not shuf["significant"]
    why = ("fitness beat random and shuffled did not" if shown else
           "the negative control (shuffled) also differed from random" if shuf["significant"]
           else "fitness did not beat random after Holm")
    return {"shown": shown, "rule": RULE,
            "text": f"{'shown' if shown else 'not shown'}: {why}"}


PLANTED_CONTRASTS = (("fitness", "random"), ("oracle", "random"), ("shuffled", "random"))


def _planted_verdicts(per_seed: dict[str, dict[str, list[float | None]]],
                      ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], bool]:
    """(contrasts, verdicts, passed): fitness and oracle beat random (Holm sign-flip p < alpha,
    higher) and shuffled does not."""
    cs = contrasts(per_seed, PLANTED_CONTRASTS, PRIMARY)
    verdicts = {f"{c['a']}-{c['b']}": _verdict(c) for c in cs}
    beat = {k: bool(v["beat"]) for k, v in verdicts.items()}
    passed = beat.get("fitness-random", False) and beat.get("oracle-random", False) and \
        not beat.get("shuffled-random", False)
    return cs, list(verdicts.values()), passed


def planted_section(planted: dict[str, list[dict[str, Any]]], pilot: int = 8) -> dict[str, Any]:
    """The positive control: its contrasts (Holm over them), heritability, the pass rule, and the
    same on its first `pilot` seeds alone with the seeds they say 80% power needs (when more seeds
    ran than the pilot, the report says the extension was decided from the pilot)."""
    if not planted:
        return {"ran": False}
    per_seed = per_seed_values(planted, METRICS)
    cs, verdicts, passed = _planted_verdicts(per_seed)
    n = len(next(iter(planted.values())))
    k = min(pilot, n)
    first = {a: {m: v[:k] for m, v in ms.items()} for a, ms in per_seed.items()}
    pcs, pverdicts, ppassed = _planted_verdicts(first)
    return {"ran": True, "seeds": [r["seed"] for r in next(iter(planted.values()))],
            "arms": list(planted), "per_seed": per_seed, "contrasts": cs,
            "verdicts": verdicts, "passed": passed,
            "pilot": {"seeds": k, "contrasts": pcs, "verdicts": pverdicts, "passed": ppassed,
                      "power": power_section(first, k, n, PRIMARY, ALPHA)},
            "heritability": heritability(planted["random"], PRIMARY),
            "lr_last_generation": {a: mean_of([mean_of([x["lr"] for x in r["generations"][-1]
                                                        ["learners"] if not x["failed"]])
                                               for r in rs]) for a, rs in planted.items()},
            "lr_generation0": mean_of([mean_of([x["lr"] for x in r["generations"][0]["learners"]])
                                       for r in planted["random"]]),
            "log10_lr_by_generation": {a: [mean_of([mean_of([math.log10(x["lr"]) for x in
                                                              r["generations"][g]["learners"]
                                                              if not x["failed"]]) for r in rs])
                                           for g in range(len(rs[0]["generations"]))]
                                       for a, rs in planted.items()},
            "by_generation": {a: [t_interval([seed_value(r["generations"][g]["learners"], PRIMARY)
                                              for r in rs])["mean"]
                                  for g in range(len(rs[0]["generations"]))]
                              for a, rs in planted.items()}}


def heritability_baseline(herit: dict[str, Any], seeds: list[int], path: Any,
                          ) -> dict[str, Any] | None:
    """The heritability of an earlier run of the random arm (`--heritability-baseline DIR`: its
    report.json) beside this one's, with the paired per-seed difference (same seeds)."""
    import json
    from pathlib import Path

    from evolve.experiments.paired import paired

    if path is None:
        return None
    doc = json.loads((Path(path) / "report.json").read_text())
    before = doc["heritability"]
    then = dict(zip(doc["seeds"], before["per_seed"], strict=True))
    now = dict(zip(seeds, herit["per_seed"], strict=True))
    both = [s for s in seeds if s in then]
    return {"source": str(path), "command": doc.get("command"), "seeds": doc["seeds"],
            "parent_offspring_slope": before["parent_offspring_slope"], "ci": before["ci"],
            "per_seed": before["per_seed"],
            "after_minus_before": paired([now[s] for s in both], [then[s] for s in both])}


def _power(per_seed: dict[str, dict[str, list[float | None]]], pilot: int, n: int,
           pilot_runs: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any]:
    """The power section: from the first `pilot` seeds of this run, or from `pilot_runs` (an
    earlier run's seeds, `--pilot-from`) when given."""
    if not pilot_runs:
        return power_section(per_seed, min(pilot, n), n, PRIMARY, ALPHA)
    seeds = [r["seed"] for r in next(iter(pilot_runs.values()))]
    out = power_section(per_seed_values(pilot_runs, [PRIMARY]), len(seeds), n, PRIMARY, ALPHA)
    out["pilot_seed_list"] = seeds
    return out


def analyse(runs: dict[str, list[dict[str, Any]]], planted: dict[str, list[dict[str, Any]]],
            seeds: list[int], pilot: int, planted_pilot: int = 8,
            baseline: Any = None, pilot_runs: dict[str, list[dict[str, Any]]] | None = None,
            ) -> dict[str, Any]:
    """The report's numbers (see the module doc)."""
    arms = list(runs)
    per_seed = per_seed_values(runs, METRICS)
    gen0 = per_seed_values({arms[0]: runs[arms[0]]}, METRICS, gen=0)[arms[0]]
    summary = {a: {m: t_interval(per_seed[a][m]) for m in METRICS} for a in arms}
    summary["generation 0"] = {m: t_interval(gen0[m]) for m in METRICS}
    gap = max((abs((seed_value(runs[a][i]["generations"][0]["learners"], m) or 0.0)
                   - (gen0[m][i] or 0.0)) for a in arms for i in range(len(seeds))
               for m in METRICS), default=0.0)
    primary = contrasts(per_seed, PRIMARY_CONTRASTS, PRIMARY)
    # the other contrasts on the primary outcome, each on its own: outside the Holm family
    other = [{**contrast(a, b, PRIMARY, per_seed[a][PRIMARY], per_seed[b][PRIMARY]),
              "p_holm": None} for a, b in SECONDARY_CONTRASTS if a in per_seed and b in per_seed]
    # each arm's last generation against its seed's generation 0: did it rise, or did the
    # control fall? (descriptive, not corrected)
    from_gen0 = [contrast(a, "generation 0", PRIMARY, per_seed[a][PRIMARY], gen0[PRIMARY])
                 for a in arms]
    secondary = [c for m in METRICS if m != PRIMARY
                 for c in contrasts(per_seed, PRIMARY_CONTRASTS, m)]
    herit = heritability(runs["random"], PRIMARY)
    herit["by_arm"] = {a: heritability(rs, PRIMARY) for a, rs in runs.items()}
    herit["before"] = heritability_baseline(herit, seeds, baseline)
    by_gen = {a: [{"generation": g["generation"],
                   **t_interval([seed_value(r["generations"][i]["learners"], PRIMARY)
                                 for r in runs[a]])}
                  for i, g in enumerate(runs[a][0]["generations"])] for a in arms}
    budget = {a: {"seconds": sum(r["seconds"] for r in runs[a]),
                  "train_s": sum(r["train_s"] for r in runs[a]),
                  "steps_per_item_last": mean_of([x["steps_per_item"] for r in runs[a]
                                                  for x in r["generations"][-1]["learners"]])}
              for a in arms}
    return {"primary_outcome": {"name": PRIMARY, "definition": DEFINITION, "secondary": SECONDARY,
                                "beside": "assess_initial_accuracy", "test": "exact sign-flip "
                                "over run seeds, two-sided, Holm over the primary contrasts",
                                "alpha": ALPHA},
            "per_seed": per_seed, "generation0_per_seed": gen0, "summary": summary,
            "generation0_max_gap": gap, "contrasts": primary, "other_contrasts": other,
            "secondary_contrasts": secondary,
            "change_from_generation0": from_gen0,
            "controls": {"planted": planted_section(planted, planted_pilot)},
            "heritability": herit,
            "selection_response": selection_response(runs, herit["parent_offspring_slope"],
                                                     PRIMARY),
            "power": _power(per_seed, pilot, len(seeds), pilot_runs),
            "fitness_predicts": fitness_prediction(runs, [PRIMARY, SECONDARY,
                                                          "assess_initial_accuracy"]),
            "signal_table": signal_table(runs, PRIMARY),
            "curves": _curves(runs), "by_generation": by_gen, "budget": budget,
            "verdicts": [_verdict(c) for c in primary], "verdict": main_verdict(primary)}


def pilot_text(runs: dict[str, list[dict[str, Any]]], pilot: int) -> str:
    """The pilot's power line (printed once the first `pilot` seeds of every arm have run)."""
    from evolve.experiments.report import fmt

    done = {a: rs for a, rs in runs.items() if rs}
    p = power_section(per_seed_values(done, [PRIMARY]), pilot, pilot, PRIMARY, ALPHA)
    return (f"pilot ({pilot} seeds): oracle - random d_z {fmt(p.get('oracle_random_pilot_d_z'))} "
            f"-> {fmt(p.get('oracle_random_seeds_needed'))} seeds for 80% power; fitness - random "
            f"d_z {fmt(p.get('fitness_random_pilot_d_z'))} -> "
            f"{fmt(p.get('fitness_random_seeds_needed'))} seeds")
