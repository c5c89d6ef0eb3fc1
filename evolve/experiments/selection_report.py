"""The selection experiment's report: `report.json` (every run's learners and every derived number),
`report.md` (the verdict in plain words, tables read from the JSON's values) and three plots, and
the summary run in MLflow. See `evolve/experiments/selection.py` for the design."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from evolve.experiments.report import fmt, md_table, write_json
from evolve.experiments.selection_arms import ALPHA, ARMS, KIND, METRICS, PRIMARY, arm_sets

LABELS = {"assess_auc": "AUC of probe accuracy (0-1)",
          "assess_learned_per_100": "probe items learned per 100 steps",
          "assess_half_life": "forgetting half-life (items)",
          "assess_final_accuracy": "final probe accuracy"}


def command_of(args: argparse.Namespace) -> str:
    parts = ["evolve experiment selection"] + (["--quick"] if args.quick else [])
    parts += [f"--out {args.out}"]
    if args.seeds is not None:
        parts.append(f"--seeds {args.seeds}")
    if args.weights != "auto":
        parts.append(f"--weights {args.weights}")
    if args.config:
        parts.append(f"--config {args.config}")
    parts += [f"--set {s}" for s in args.sets]
    return " ".join(parts)


def ci_text(s: dict[str, Any]) -> str:
    """`mean [lo, hi]` of a t_interval dict."""
    return f"{fmt(s['mean'])} [{fmt(s['lo'])}, {fmt(s['hi'])}]"


def write_report(args: argparse.Namespace, cfgs: dict[str, Any], arms: list[str], seeds: list[int],
                 weights: str | None, runs: dict[str, list[dict[str, Any]]], result: dict[str, Any],
                 seconds: float) -> dict[str, Any]:
    """Write report.json, the plots and report.md under `args.out`; returns the JSON document."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfgs[arms[0]]
    doc = {"command": command_of(args), "seeds": seeds, "arms": {
        a: {"description": ARMS[a][0], "sets": arm_sets(a, weights)} for a in arms},
        "weights_file": weights, "primary": PRIMARY, "alpha": ALPHA, "seconds": seconds,
        "config": cfg.to_dict(), "runs": runs, **result}
    write_json(out / "report.json", doc)
    plots(out, doc)
    (out / "report.md").write_text(markdown(doc))
    return doc


def markdown(doc: dict[str, Any]) -> str:
    """The report text; every number is formatted from `doc` (the JSON's values)."""
    cfg, arms, seeds = doc["config"], list(doc["arms"]), doc["seeds"]
    G = cfg["generations"] - 1
    a = cfg["assess"]
    probe = sum(t["probe"] for t in cfg["tasks"])
    items = sum(t["n"] for t in cfg["tasks"])
    md = ["# Does selection work? Fitness selection vs random and no selection", "",
          "## Verdict", ""]
    md += [f"- {v['text']}." for v in doc["verdicts"]]
    beat = [v for v in doc["verdicts"] if v["a"].startswith("fitness") and v["beat"]]
    lost = [v for v in doc["verdicts"] if v["a"].startswith("fitness") and not v["beat"]]
    md += ["", ("**On this setup, fitness selection beat " + ", ".join(f"`{v['b']}`" for v in beat)
                + " at p < " + fmt(ALPHA) + ".**" + (" It did not beat " + ", ".join(
                    f"`{v['b']}`" for v in lost) + "." if lost else ""))
           if beat else f"**On this setup, fitness selection did not beat the controls** "
                        f"(no paired t-test on {PRIMARY} below p = {fmt(ALPHA)} in its favour).", ""]
    md += [f"Primary outcome, fixed before the run: `{PRIMARY}` of generation {G}'s learners "
           f"(mean over each seed's learners), compared by a two-sided paired t-test over the "
           f"{len(seeds)} run seeds at alpha {fmt(ALPHA)}. The other outcomes and tests are "
           "reported, not used for the verdict.", "", "## Setup", ""]
    md += [f"- Command: `{doc['command']}` ({fmt(doc['seconds'] / 60)} minutes).",
           f"- Run seeds {', '.join(map(str, seeds))}; per arm and seed one evolution of population "
           f"{cfg['population']} for {cfg['generations']} generations, {items} fresh training items "
           f"per generation, base `{cfg['base'] or 'embedded default'}`; the same budget in every "
           "arm. Generation 0 is shared exactly by the arms of a seed (largest difference of a "
           f"generation-0 per-seed value between arms: {fmt(doc['generation0_max_gap'])}).",
           f"- Outcome: the assessment (`evolve/assess.py`) trains each learner on the {probe} "
           f"fixed never-trained probe items for {a['steps']} steps of {cfg['training']['batch_size']}"
           f" items, probing {a['checkpoints']} times plus once before. AUC = area under probe "
           "accuracy over that budget / budget; learned per 100 = items wrong before and right at "
           "the end per 100 optimiser steps; half-life = Kaplan-Meier forgetting half-life in "
           "training items, a learner that never forgot counting as the whole budget.", ""]
    md += md_table(["arm", "what differs"], [[f"`{k}`", v["description"] + (
        f" (`--set {' --set '.join(v['sets'])}`)" if v["sets"] else "")]
        for k, v in doc["arms"].items()]).split("\n")
    md += ["", f"## Generation {G}: mean over seeds [95% t interval]", ""]
    rows = [[name] + [ci_text(doc["summary"][name][m]) for m in METRICS]
            for name in arms + ["generation 0"]]
    md += md_table(["arm"] + [LABELS[m] for m in METRICS], rows).split("\n")
    md += ["", "## Paired tests (a - b per seed; d_z = mean / sd of the differences)", ""]
    rows = [[f"`{t['a']}` - `{t['b']}`", t["metric"], ci_text({"mean": t["mean_diff"],
             "lo": t["ci_lo"], "hi": t["ci_hi"]}), t["p_t"], t["p_wilcoxon"], t["p_sign_flip"],
             t["d_z"], f"{t['wins']}/{t['losses']}/{t['ties']}"] for t in doc["tests"]]
    md += md_table(["comparison", "outcome", "mean diff [95% CI]", "paired t p", "Wilcoxon p",
                    "sign-flip p", "d_z", "higher/lower/tied"], rows).split("\n")
    md += ["", f"## Per seed: `{PRIMARY}` of generation {G} (raw values of report.json)", ""]
    rows = [[s] + [doc["per_seed"][x][PRIMARY][i] for x in arms]
            + [doc["generation0_per_seed"][PRIMARY][i]] for i, s in enumerate(seeds)]
    md += md_table(["seed"] + [f"`{x}`" for x in arms] + ["generation 0"], rows).split("\n")
    md += ["", "## Compute", ""]
    rows = [[f"`{x}`", doc["budget"][x]["seconds"], doc["budget"][x]["train_s"],
             doc["budget"][x]["steps_per_item_last"]] for x in arms]
    md += md_table(["arm", "wall seconds (all seeds)", "training seconds", f"mean steps_per_item, "
                    f"generation {G}"], rows).split("\n")
    md += ["", "Every arm trains the same learners on the same items for the same generations; "
           "`steps_per_item` is a gene, so an arm whose learners evolved more steps per item spent "
           "more optimiser steps (the column above says whether that happened).", "",
           "## Plots", "", "![learning curves](learning_curves.png)", "",
           "![per-generation AUC](generations.png)", "", "![paired differences](paired_differences.png)",
           "", "## Caveats", "",
           "- The random and fitness arms inherit adapters (Lamarckian) and so keep training across "
           "generations; `none` starts fresh each generation. `fitness` vs `none` mixes selection "
           "with accumulated training; `fitness` vs `random` isolates selection.",
           f"- {len(seeds)} seeds: the exact sign-flip test cannot go below "
           f"{fmt(2 / 2 ** len(seeds))}; a difference of the size of the seed-to-seed spread needs "
           "more seeds to show.",
           "- One task mix, one base, one budget: a null here is a null on this setup only.", ""]
    md += ["## MLflow", "",
           f"Experiment `{cfg['tracking']['experiment']}` in `{cfg['tracking']['uri']}`: one "
           "evolution per arm and seed, tagged `evolve.experiment=selection`, `evolve.arm`, "
           "`evolve.run_seed`, plus a summary run tagged `evolve.kind=" + KIND + "`.", ""]
    rows = [[f"`{x}`", r["seed"], r["run_id"]] for x in arms for r in doc["runs"][x]]
    md += md_table(["arm", "seed", "run id"], rows).split("\n")
    return "\n".join(md) + "\n"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _band(ax: Any, x: list[float], band: list[dict[str, Any]], label: str, color: str,
          ls: str = "-") -> None:
    m = [b["mean"] for b in band]
    lo = [b["lo"] if b["lo"] is not None else b["mean"] for b in band]
    hi = [b["hi"] if b["hi"] is not None else b["mean"] for b in band]
    ax.plot(x, m, color=color, ls=ls, lw=1.8, marker="o", ms=3, label=label)
    ax.fill_between(x, lo, hi, color=color, alpha=0.15)


def plots(out: Path, doc: dict[str, Any]) -> list[Path]:
    """learning_curves.png, generations.png, paired_differences.png under `out`."""
    plt = _plt()
    arms = list(doc["arms"])
    G = doc["config"]["generations"] - 1
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for i, a in enumerate(arms):
        c = doc["curves"][a]
        _band(ax, c["steps"], c["band"], f"{a} (generation {G})", f"C{i}")
    c = doc["curves"]["generation 0"]
    _band(ax, c["steps"], c["band"], "generation 0 (all arms)", "0.3", "--")
    ax.set(xlabel="assessment training items", ylabel="probe accuracy (never-trained items)",
           title="Learning the probe items: mean over seeds, 95% t band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths = [_save(plt, fig, out / "learning_curves.png")]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=110)
    for i, a in enumerate(arms):
        rows = [r for r in doc["by_generation"][a] if r["mean"] is not None]
        _band(ax, [r["generation"] for r in rows], rows, a, f"C{i}")
    ax.set(xlabel="generation", ylabel=f"{PRIMARY} (mean of learners)",
           title=f"{PRIMARY} per generation: mean over seeds, 95% t band")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(plt, fig, out / "generations.png"))
    metrics = [PRIMARY, "assess_learned_per_100"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(11, 4.3), dpi=110)
    for ax, m in zip(axes, metrics, strict=True):
        tests = [t for t in doc["tests"] if t["metric"] == m]
        for j, t in enumerate(tests):
            d = t["diffs"]
            ax.scatter([j + 0.08 * (k - (len(d) - 1) / 2) for k in range(len(d))], d, s=18,
                       color=f"C{j}", zorder=3)
            if t["ci_lo"] is not None:
                ax.errorbar(j + 0.3, t["mean_diff"], yerr=[[t["mean_diff"] - t["ci_lo"]],
                            [t["ci_hi"] - t["mean_diff"]]], fmt="D", color="k", capsize=4)
        ax.axhline(0, color="0.4", lw=1, ls=":")
        ax.set_xticks(range(len(tests)), [f"{t['a']}\n- {t['b']}" for t in tests], fontsize=8)
        ax.set(ylabel=f"{LABELS[m]}, difference", title=f"per-seed paired differences: {m}")
        ax.grid(alpha=0.3, axis="y")
    paths.append(_save(plt, fig, out / "paired_differences.png"))
    return paths


def _save(plt: Any, fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def log_summary(out: Path, cfg: Any, doc: dict[str, Any]) -> str:
    """One MLflow run (tag evolve.kind=experiment.selection) with the per-arm means, the paired
    differences and p values as metrics and the report directory as artifacts."""
    from evolve.experiments.report import log_run

    settings = {"uri": cfg.tracking.uri, "experiment": cfg.tracking.experiment,
                "artifact_location": cfg.tracking.artifact_location}
    summary: dict[str, float] = {}
    for a in doc["arms"]:
        for m in METRICS:
            v = doc["summary"][a][m]["mean"]
            if v is not None and math.isfinite(v):
                summary[f"{a}.{m}"] = float(v)
    for t in doc["tests"]:
        for k in ("mean_diff", "p_t", "p_sign_flip", "d_z"):
            if t[k] is not None and math.isfinite(t[k]):
                summary[f"{t['a']}-{t['b']}.{t['metric']}.{k}"] = float(t[k])
    history = {f"{a}.{PRIMARY}": [(r["generation"], r["mean"]) for r in doc["by_generation"][a]
                                  if r["mean"] is not None] for a in doc["arms"]}
    params = {"seeds": doc["seeds"], "arms": list(doc["arms"]), "primary": PRIMARY,
              "population": cfg.population, "generations": cfg.generations,
              "weights_file": doc["weights_file"] or "none", "command": doc["command"][:480]}
    return log_run(settings, f"selection-{len(doc['seeds'])}seeds", KIND, params, history,
                   summary, out)
