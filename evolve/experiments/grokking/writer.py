"""report.json and report.md of `evolve experiment grokking`: the watched run, the Dunning-Kruger
curve, the early warning, hysteresis and the meta-optimiser, each with its plots. Every verdict
sentence is computed from the numbers it sits next to."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from evolve.experiments.grokking import plots
from evolve.experiments.grokking.setting import GrokConfig
from evolve.experiments.report import fmt, md_table, write_json

KEEP = ("step", "train_acc", "val_acc", "val_self", "val_conf", "weight_norm", "alpha")


def _st(x: Any) -> str:
    """A step count: whole numbers as integers, inf as 'not reached', None as n/a."""
    if isinstance(x, float) and x == float("inf"):
        return "not reached"
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    if isinstance(x, float) and abs(x) >= 10:
        return f"{x:.1f}"
    return fmt(x)


def _ci(ci: list[Any]) -> str:
    return f"[{_st(ci[0])}, {_st(ci[1])}]"


def document(cfg: GrokConfig, command: str, run: dict[str, Any], s: dict[str, Any],
             parts: dict[str, Any]) -> dict[str, Any]:
    """The report.json document (issue #18's names at the top level)."""
    h = run["history"]
    ew, hy, meta, runs = parts["early_warning"], parts["hysteresis"], parts["meta"], parts["runs"]
    return {
        "experiment": "grokking", "command": command, "config": dataclasses.asdict(cfg),
        "summary": {k: v for k, v in s.items() if k != "confidence_gap"}
        | {"train_seconds": h["seconds"][-1], "parameters": run["parameters"],
           "train_size": run["train_size"], "val_size": run["val_size"],
           "stopped_early": run["stopped_early"], "load_average": parts["load_average"]},
        "history": dict(h, confidence_gap=s["confidence_gap"]),
        "layer_alpha": run["layer_alpha"],
        "dunning_kruger": parts["dunning_kruger"],
        "early_warning": {k: {kk: vv for kk, vv in v.items()} for k, v in ew.items()},
        "hysteresis": hy,
        "meta_optimizer": meta.get("arms", meta),
        "meta_optimizer_comparison": {k: v for k, v in meta.items() if k not in ("arms", "traces")}
        | ({"paired_vs_best": _paired(meta)} if "arms" in meta else {}),
        "warning_runs": [{k: r[k] for k in ("id", "seed", "train_fraction", "weight_decay", "onset",
                                            "memorised", "generalised", "budget", "seconds")}
                         | {"history": {k: r["history"][k] for k in KEEP}} for r in runs],
    }


def _paired(meta: dict[str, Any]) -> dict[str, Any]:
    """Controller and PBT minus the best fixed AdamW, paired by seed (runs that reached 0.95 in
    both arms; `evolve.experiments.paired`: mean difference, t interval, sign-flip p)."""
    from evolve.experiments.paired import paired

    arms = meta["arms"]
    best = arms["adamw_best"]["times"]
    return {name: paired(arms[name]["times"], best) for name in ("controller", "pbt")
            if name in arms}


def _single_md(cfg: GrokConfig, run: dict[str, Any], s: dict[str, Any]) -> list[str]:
    rows = [[label, s[key]] for label, key in (
        ("training accuracy reached 99%", "memorised_step"),
        ("peak confidence gap (self-confidence - val acc)", "peak_gap_step"),
        ("onset: validation accuracy >= 50%", "onset_step"),
        (f"grokking detector fired (jump > {cfg.threshold} over {cfg.window} probes)",
         "detector_step"),
        ("validation accuracy >= 95%", "val_95_step"), ("end of the run", "last_step"))]
    return [
        f"Setting: a+b mod {cfg.p}, {run['train_size']} training pairs ({cfg.train_fraction:.0%}), "
        f"{run['val_size']} validation pairs; embedding {cfg.embed_dim} x 2 -> MLP {cfg.hidden} -> "
        f"{cfg.p} ({run['parameters']:,} parameters); AdamW lr {cfg.lr}, weight decay "
        f"{cfg.weight_decay}, full batch, seed {cfg.seed}, probed every {cfg.probe_every} steps.", "",
        md_table(["milestone", "step"], rows), "",
        f"At the peak gap the model's mean confidence in its own answers was "
        f"{fmt(s['self_confidence_at_peak'])} while validation accuracy was "
        f"{fmt(s['val_at_peak_gap'])} (gap {fmt(s['peak_gap'])}).", "",
        "![accuracy](accuracy.png)", "", "![confidence vs knowledge](confidence_knowledge.png)", "",
        "![alpha](alpha.png)", ""]


def _warning_md(ew: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    grok = [r["onset"] for r in runs if r["onset"] is not None]
    never = sum(r["onset"] is None for r in runs)
    rows = [[k, v["description"], v["threshold"], f"{v['fired_on_grokking']}/{v['test_grokking']}",
             v["hit_rate"], _st(v["lead_time_median"]), _ci(v["lead_time_ci"]), v["spearman"],
             v["false_alarm_rate"]] for k, v in ew.items()]
    base = ew["val_acc_twice_chance"]
    better = [k for k, v in ew.items() if k != "val_acc_twice_chance"
              and v["lead_time_ci"][0] is not None and base["lead_time_ci"][1] is not None
              and v["lead_time_ci"][0] > base["lead_time_ci"][1]
              and (v["false_alarm_rate"] or 0) <= (base["false_alarm_rate"] or 0)]
    verdict = (f"Rules whose lead-time interval lies wholly above the baseline's, with no more false "
               f"alarms: {', '.join(better)}." if better else
               "No rule's lead-time interval lies wholly above that of the baseline 'validation "
               "accuracy above twice chance' with no more false alarms.")
    fewer = [f"{k} (median lead {_st(v['lead_time_median'])}, interval {_ci(v['lead_time_ci'])}, "
             f"rho {fmt(v['spearman'])})" for k, v in ew.items()
             if v["false_alarm_rate"] is not None and base["false_alarm_rate"] is not None
             and v["false_alarm_rate"] < base["false_alarm_rate"] and (v["hit_rate"] or 0) >= 0.5]
    if fewer:
        verdict += (f" The baseline raised false alarms on {fmt(base['false_alarm_rate'])} of the "
                    f"never-grokking test runs; rules with fewer: {'; '.join(fewer)}. Fewer false "
                    "alarms is what they buy, against the baseline's median lead of "
                    f"{_st(base['lead_time_median'])} steps.")
    return [f"{len(runs)} runs: {len(grok)} reached the onset (validation accuracy >= 50%) at steps "
            f"{min(grok, default=None)}-{max(grok, default=None)}, {never} never did within the "
            "budget. Thresholds fitted on the even seeds, everything below measured on the odd "
            "seeds; lead = onset - alarm (positive: before the onset); interval: bootstrap of the "
            "median (2,000 resamples); rho: Spearman of alarm step vs onset step on the alarmed "
            "grokking runs; FA: share of never-grokking test runs alarmed.", "",
            md_table(["rule", "statistic", "threshold", "fired", "alarmed before onset",
                      "median lead", "95% interval", "rho", "false alarms"], rows), "",
            verdict, "", "![early warning](early_warning.png)", "",
            "![dunning-kruger](dunning_kruger.png)", ""]


def _hysteresis_md(hy: dict[str, Any]) -> list[str]:
    rows = [[f"{w:g}", sum(r["up"][i] for r in hy["per_seed"]) / len(hy["per_seed"]),
             sum(r["down"][i] for r in hy["per_seed"]) / len(hy["per_seed"])]
            for i, w in enumerate(hy["levels"])]
    lo, hi = hy["ci"]
    said = ("A loop exists: the interval of the area excludes 0." if hy["loop_exists"] else
            "No loop is established: the interval of the area includes 0 (or has too few seeds).")
    tc = hy["time_control_val_acc"]
    ctrl = (f"Time control (a fresh run at weight decay {hy['levels'][0]:g} for as many steps as "
            f"the sweep): validation accuracy {fmt(tc)}, interval {_ci(hy['time_control_ci'])}; "
            + ("it generalised too, so the area is at least partly elapsed time, not the path."
               if tc is not None and tc >= 0.5 else
               "it did not generalise, so the down branch's accuracy comes from the path through "
               "high weight decay, not from the extra steps."))
    return [f"Weight decay {', '.join(f'{w:g}' for w in hy['levels'])} up, then down; "
            f"{hy['segment']} steps per level with warm starts (model and optimiser state kept), "
            f"training fraction {hy['train_fraction']}; seeds {hy['seeds']}.", "",
            md_table(["weight decay", "up branch (mean val acc)", "down branch"], rows), "",
            f"Area between the branches over log10(weight decay): {fmt(hy['loop_area'])}, 95% t "
            f"interval [{fmt(lo)}, {fmt(hi)}] over {len(hy['seeds'])} seeds. {said} {ctrl}", "",
            "![hysteresis](hysteresis.png)", ""]


def _meta_md(meta: dict[str, Any]) -> list[str]:
    arms = meta["arms"]
    rows = [[n, a["runs"], a["reached"], _st(a["time_to_generalise_median"]), _ci(a["ci"]),
             a.get("chosen", "")] for n, a in arms.items()]
    c, b = arms["controller"], arms["adamw_best"]
    cm, bm = c["time_to_generalise_median"], b["time_to_generalise_median"]
    if c["ci"][1] is not None and b["ci"][0] is not None and c["ci"][1] < b["ci"][0]:
        verdict = "The controller generalised sooner than the best fixed AdamW: the intervals are apart."
    elif c["ci"][0] is not None and b["ci"][1] is not None and c["ci"][0] > b["ci"][1]:
        verdict = "The best fixed AdamW generalised sooner than the controller: the intervals are apart."
    else:
        verdict = (f"Medians {_st(cm)} (controller) vs {_st(bm)} (best fixed, {b['chosen']}); their "
                   "bootstrap intervals overlap, so unpaired neither is shown faster.")
    d = _paired(meta).get("controller")
    if d and d["ci_hi"] is not None and (d["ci_hi"] < 0 or d["ci_lo"] > 0):
        verdict += (f" Paired by seed the difference's t interval excludes 0 "
                    f"({'faster' if d['ci_hi'] < 0 else 'slower'} by {fmt(abs(d['mean_diff']))} "
                    f"steps on average, sign-flip p {fmt(d['p_sign_flip'])}; with {d['n']} seeds "
                    f"the smallest possible is {fmt(d['min_p_sign_flip'])}).")
    return [f"Budget {meta['plan']['budget']} steps, seeds {meta['plan']['seeds']}, training "
            f"fraction {meta['plan']['train_fraction']}; time = first probed step with validation "
            "accuracy >= 0.95 (inf: not within the budget). Controller: weight decay = "
            f"{meta['controller']['w_lo']} + ({meta['controller']['w_hi']} - "
            f"{meta['controller']['w_lo']}) x clip(confidence gap / {meta['controller']['gap_ref']}, "
            "0, 1) after every probe.", "",
            md_table(["arm", "runs", "reached 95%", "median steps", "95% interval", "best of grid"],
                     rows), "",
            f"{verdict} Paired by seed the controller was faster on "
            f"{meta['controller_wins_vs_best']} of {meta['paired_seeds']} seeds. The best fixed "
            "weight decay was picked on the same seeds (in its favour).", "",
            *[f"- {name} minus {b['chosen']}, paired over the {d['n']} seeds both reached 0.95: "
              f"mean {fmt(d['mean_diff'])} steps, 95% t interval [{fmt(d['ci_lo'])}, "
              f"{fmt(d['ci_hi'])}], sign-flip p {fmt(d['p_sign_flip'])}."
              for name, d in _paired(meta).items()],
            "- PBT spends 4 members' steps per step: its time is not on the same compute budget.",
            "",
            "![meta-optimiser](meta_optimizer.png)", ""]


EVOLUTION_HEADING = "## 6. Grokking inside evolution"


def evolution_md(out: Path) -> list[str]:
    """Section 6 from `out/evolution.md` (written by `python -m evolve.experiments.grokking.evolution`
    from an `evolve run --config configs/grokking.yaml`), or a line saying how to make it."""
    f = out / "evolution.md"
    body = f.read_text().rstrip("\n").split("\n") if f.is_file() else [
        "Not run here: `evolve run --config configs/grokking.yaml`, then "
        "`python -m evolve.experiments.grokking.evolution` (docs/experiments.md)."]
    return [EVOLUTION_HEADING, "", *body, ""]


def write(out: Path, cfg: GrokConfig, command: str, run: dict[str, Any], s: dict[str, Any],
          parts: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and every plot; returns the JSON document."""
    doc = document(cfg, command, run, s, parts)
    write_json(out / "report.json", doc)
    plots.single(out, run, s)
    plots.dunning_kruger(out, parts["runs"] + [{"history": run["history"], "onset": s["onset_step"]}])
    if parts["early_warning"]:
        plots.early_warning(out, parts["runs"], parts["early_warning"])
    if "skipped" not in parts["hysteresis"]:
        plots.hysteresis(out, parts["hysteresis"])
    if "skipped" not in parts["meta"]:
        plots.meta_optimizer(out, parts["meta"])
    dk = parts["dunning_kruger"]
    before = [d for d in dk if d["peak_before_onset"]]
    grok = [d for d in dk if d["onset_step"] is not None]
    after_mem = sorted(d["peak_gap_step"] - (r["memorised"] or 0)
                       for d, r in zip(dk, parts["runs"], strict=True))
    ahead = sorted(d["onset_step"] - d["peak_gap_step"] for d in grok)
    la = parts["load_average"]
    md = ["# Grokking on a+b mod p: self-confidence, an early warning, hysteresis, a meta-optimiser",
          "", f"Command: `{command}`", "",
          f"Machine: {os.cpu_count()} cores shared with other jobs (load average {la[0]} at the "
          f"start, {la[1]} at the end); one torch thread per run. Step counts, not seconds, are "
          "the measure throughout.", "",
          "## 1. The watched run", "", *_single_md(cfg, run, s),
          "## 2. The latent Dunning-Kruger curve", "",
          *(["No study runs here (--skip warning): the watched run's peak gap and onset are in "
             "section 1.", ""] if not dk else [
          f"Self-confidence = mean probability of the model's own (argmax) answer on the "
          f"validation set; the gap = self-confidence - validation accuracy. In {len(before)} of "
          f"{len(grok)} grokking runs the gap peaked before the onset (per run in report.json "
          "`dunning_kruger`). The peak came a median "
          f"{_st(after_mem[len(after_mem) // 2] if after_mem else None)} steps after training "
          "accuracy reached 99%, and a median "
          f"{_st(ahead[len(ahead) // 2] if ahead else None)} steps before the onset"
          + (": the overconfident peak is the memorised state itself, so its timing says when "
             "memorisation ended, not when generalisation will come." if after_mem
             and after_mem[len(after_mem) // 2] <= 100 else "."), ""]),
          "## 3. An early warning, causal and tested out of sample", "",
          *(_warning_md(parts["early_warning"], parts["runs"]) if parts["early_warning"]
            else ["Not run (--skip warning).", ""]),
          "## 4. Hysteresis", "",
          *(_hysteresis_md(parts["hysteresis"]) if "skipped" not in parts["hysteresis"]
            else ["Not run (--skip hysteresis).", ""]),
          "## 5. A meta-optimiser", "",
          *(_meta_md(parts["meta"]) if "skipped" not in parts["meta"]
            else ["Not run (--skip meta).", ""]),
          *evolution_md(out)]
    (out / "report.md").write_text("\n".join(md))
    return doc

