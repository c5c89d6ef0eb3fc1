"""The selection experiment's report: `report.json` (every derived number, the run ids),
`runs.json.gz` (every run's learners: genomes, fitness, signals, assessment curves; `load_runs`),
`report.md` (the verdict in plain words, tables read from the JSON's values) and three plots, and
the summary run in MLflow. See `evolve/experiments/selection.py` for the design."""

from __future__ import annotations

import argparse
import gzip
import json
import math
from pathlib import Path
from typing import Any

from evolve.experiments.report import fmt, md_table, write_json
from evolve.experiments.selection_arms import (
    ALPHA,
    ARMS,
    KIND,
    METRICS,
    PLANTED,
    PRIMARY,
    SECONDARY,
    arm_sets,
)

LABELS = {"assess_gain": "gain: AUC of accuracy(t) - accuracy(0)",
          "assess_learned_share": "share of initially-wrong items learned",
          "assess_initial_accuracy": "accuracy before training",
          "assess_auc": "AUC of probe accuracy (0-1)",
          "assess_learned_per_100": "probe items learned per 100 steps",
          "assess_half_life": "forgetting half-life (items)",
          "assess_final_accuracy": "final probe accuracy"}
SHOWN = ("assess_gain", "assess_learned_share", "assess_initial_accuracy", "assess_auc")


def command_of(args: argparse.Namespace) -> str:
    parts = ["evolve experiment selection"] + (["--quick"] if args.quick else [])
    parts += [f"--out {args.out}", f"--arms {','.join(args.arms)}"]
    for flag, v in (("--seeds", args.seeds), ("--planted-seeds", args.planted_seeds)):
        if v is not None:
            parts.append(f"{flag} {v}")
    if args.pilot != 4:
        parts.append(f"--pilot {args.pilot}")
    if getattr(args, "planted_pilot", 8) != 8:
        parts.append(f"--planted-pilot {args.planted_pilot}")
    if getattr(args, "pilot_from", None):
        parts.append(f"--pilot-from {args.pilot_from}")
    if getattr(args, "heritability_baseline", None):
        parts.append(f"--heritability-baseline {args.heritability_baseline}")
    if args.weights != "auto":
        parts.append(f"--weights {args.weights}")
    if args.config:
        parts.append(f"--config {args.config}")
    parts += [f"--set {s}" for s in args.sets]
    parts += [f"--planted-set {s}" for s in getattr(args, "planted_sets", [])]
    return " ".join(parts)


def ci_text(s: dict[str, Any]) -> str:
    """`mean [lo, hi]` of a t_interval dict."""
    return f"{fmt(s['mean'])} [{fmt(s['lo'])}, {fmt(s['hi'])}]"


RUNS_FILE = "runs.json.gz"


def _run_ids(runs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Per arm, each run's seed and MLflow run id (and where a reused run was first recorded)."""
    return {a: [{"seed": r["seed"], "run_id": r["run_id"],
                 **({"reused_from": r["reused_from"]} if r.get("reused_from") else {})}
                for r in rs] for a, rs in runs.items()}


def load_runs(out: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`{"runs": ..., "planted_runs": ...}` as written beside report.json (every learner)."""
    with gzip.open(out / RUNS_FILE, "rt") as f:
        return json.load(f)  # type: ignore[no-any-return]


def write_report(args: argparse.Namespace, cfgs: dict[str, Any], arms: list[str], seeds: list[int],
                 weights: str | None, runs: dict[str, list[dict[str, Any]]],
                 planted: dict[str, list[dict[str, Any]]], result: dict[str, Any],
                 seconds: float, planted_cfg: Any = None,
                 planted_sets: list[str] | None = None) -> dict[str, Any]:
    """Write report.json, runs.json.gz, the plots and report.md under `args.out`; returns the
    JSON document (report.json: the derived numbers; the per-learner data go to runs.json.gz)."""
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfgs[arms[0]]
    pc = planted_cfg.to_dict() if planted_cfg is not None else None
    doc = {"command": command_of(args), "seeds": seeds, "arms": {
        a: {"description": ARMS[a][0], "sets": arm_sets(a, weights)} for a in arms},
        "base": cfg.base or "embedded default", "weights_file": weights, "primary": PRIMARY,
        "alpha": ALPHA, "seconds": seconds, "config": cfg.to_dict(),
        "planted_sets": planted_sets if planted_sets is not None else PLANTED,
        "planted_config": pc, **result, "runs_file": RUNS_FILE,
        "run_ids": _run_ids(runs), "planted_run_ids": _run_ids(planted)}
    write_json(out / "report.json", doc)
    with gzip.open(out / RUNS_FILE, "wt") as f:
        json.dump({"runs": runs, "planted_runs": planted}, f, separators=(",", ":"))
    plots(out, doc)
    (out / "report.md").write_text(markdown(doc))
    return doc


def _contrast_rows(cs: list[dict[str, Any]]) -> list[list[Any]]:
    return [[f"`{c['a']}` - `{c['b']}`", c["outcome"], ci_text({"mean": c["mean_diff"],
             "lo": c["ci"][0], "hi": c["ci"][1]}), c["p_signflip"], c.get("p_holm"), c["p_t"],
             c["d_z"], f"{c['wins']}/{c['losses']}/{c['ties']}"] for c in cs]


def _reused_line(doc: dict[str, Any]) -> list[str]:
    """A setup line naming the runs that were first recorded elsewhere (`reused_from`)."""
    reused = {a: [r for r in rs if r.get("reused_from")] for a, rs in doc["run_ids"].items()}
    reused = {a: rs for a, rs in reused.items() if rs}
    if not reused:
        return []
    first = next(iter(reused.values()))[0]["reused_from"]
    return ["- Reused runs (put into OUT/runs/ from an earlier report, not run here): "
            + ", ".join(f"`{a}` {len(rs)} seeds" for a, rs in reused.items())
            + f"; first recorded in {first.get('mlflow')}; fitness: {first.get('fitness')}."]


CONTRAST_HEAD = ["contrast", "outcome", "mean diff [95% CI]", "sign-flip p", "Holm p",
                 "paired t p", "d_z", "higher/lower/tied"]


def markdown(doc: dict[str, Any]) -> str:
    """The report text; every number is formatted from `doc` (the JSON's values)."""
    cfg, arms, seeds = doc["config"], list(doc["arms"]), doc["seeds"]
    G = cfg["generations"] - 1
    a = cfg["assess"]
    probe = sum(t["probe"] for t in cfg["tasks"])
    items = sum(t["n"] for t in cfg["tasks"])
    pl = doc["controls"]["planted"]
    md = ["# Does selection breed faster learners? Fitness vs random, shuffled and oracle selection",
          "", "## Verdict", ""]
    if doc.get("verdict"):
        md += [f"**Does fitness selection breed faster learners? {doc['verdict']['text']}** "
               f"(rule, fixed before the run: {doc['verdict']['rule']}).", ""]
    md += [f"- {v['text']}." for v in doc["verdicts"]]
    if pl["ran"]:
        pp = pl["pilot"]
        md += ["", f"**Planted positive control, its first {pp['seeds']} seeds (fixed before the "
               "run): " + ("passed" if pp["passed"] else "FAILED") + "** (fitness and oracle "
               "must beat random, shuffled must not):"]
        md += [f"- {v['text']}." for v in pp["verdicts"]]
        if len(pl["seeds"]) > pp["seeds"]:
            md += ["", f"**Planted control extended to {len(pl['seeds'])} seeds: "
                   + ("passed" if pl["passed"] else "FAILED") + f"** (the extension was decided "
                   f"from the first {pp['seeds']} seeds: their oracle - random d_z "
                   f"{fmt(pp['power'].get('oracle_random_pilot_d_z'))} needs "
                   f"{fmt(pp['power'].get('oracle_random_seeds_needed'))} seeds for 80% power; "
                   "a second look at the same contrasts, so its p values are optimistic):"]
            md += [f"- {v['text']}." for v in pl["verdicts"]]
    else:
        md += ["", "**The planted positive control was not run** (`--planted-seeds 0`)."]
    md += ["", f"Primary outcome, fixed before the run: {doc['primary_outcome']['definition']}. "
           f"Test: {doc['primary_outcome']['test']}, alpha {fmt(ALPHA)}. Secondary: "
           f"`{SECONDARY}`. Everything else is reported, not used for the verdict.", "",
           "## Setup", ""]
    md += [f"- Command: `{doc['command']}` ({fmt(doc['seconds'] / 60)} minutes of this "
           "invocation; runs reused from OUT/runs/ cost nothing here).",
           *_reused_line(doc),
           f"- Base: `{doc['base']}`. Run seeds {', '.join(map(str, seeds))}; per arm and seed one "
           f"evolution of population {cfg['population']} for {cfg['generations']} generations, "
           f"{items} fresh training items per generation. Generation 0 is shared exactly by the "
           f"arms of a seed (largest generation-0 difference: {fmt(doc['generation0_max_gap'])}).",
           f"- Outcome: the assessment (`evolve/assess.py`) trains each learner on the {probe} "
           f"fixed never-trained probe items for {a['steps']} steps of "
           f"{cfg['training']['batch_size']} items, probing {a['checkpoints']} times plus once "
           "before.", ""]
    md += md_table(["arm", "what differs"], [[f"`{k}`", v["description"] + (
        f" (`--set {' --set '.join(v['sets'])}`)" if v["sets"] else "")]
        for k, v in doc["arms"].items()]).split("\n")
    md += ["", f"## Generation {G}: mean over seeds [95% t interval]", ""]
    rows = [[name] + [ci_text(doc["summary"][name][m]) for m in SHOWN]
            for name in arms + ["generation 0"]]
    md += md_table(["arm"] + [LABELS[m] for m in SHOWN], rows).split("\n")
    md += ["", "## Primary contrasts (a - b per seed; Holm over these)", ""]
    md += md_table(CONTRAST_HEAD, _contrast_rows(doc["contrasts"])).split("\n")
    if doc.get("other_contrasts"):
        md += ["", f"Other contrasts on `{PRIMARY}`, each uncorrected (not in the Holm family):", ""]
        md += md_table(CONTRAST_HEAD, _contrast_rows(doc["other_contrasts"])).split("\n")
    md += ["", f"Each arm's generation {G} minus its seed's generation 0 (descriptive: did the arm "
           "rise, or did a control fall?):", ""]
    md += md_table(CONTRAST_HEAD, _contrast_rows(doc["change_from_generation0"])).split("\n")
    md += ["", "## Planted positive control", ""]
    if pl["ran"]:
        pc = doc.get("planted_config") or cfg
        md += [f"Genes: only `lr` varies (`--set {' --set '.join(doc['planted_sets'])}`): "
               f"population {pc['population']}, {pc['generations']} generations, lr "
               f"{fmt(pc['genome']['lr'][0])} to {fmt(pc['genome']['lr'][1])}, seeds "
               f"{', '.join(map(str, pl['seeds']))}. Mean lr in generation 0: "
               f"{fmt(pl['lr_generation0'])}; in the last generation: "
               + ", ".join(f"{k} {fmt(v)}" for k, v in pl["lr_last_generation"].items())
               + f". Parent-offspring slope of {PRIMARY} in its random arm: "
               f"{fmt(pl['heritability']['parent_offspring_slope'])} [95% CI "
               f"{fmt(pl['heritability']['ci'][0])}, {fmt(pl['heritability']['ci'][1])}].", ""]
        md += md_table(CONTRAST_HEAD, _contrast_rows(pl["contrasts"])).split("\n")
        if pl.get("log10_lr_by_generation"):
            gens = range(len(next(iter(pl["by_generation"].values()))))
            md += ["", f"Per generation, mean over seeds: log10 lr / {PRIMARY}.", ""]
            md += md_table(["arm"] + [f"g{g}" for g in gens], [
                [f"`{a}`"] + [f"{fmt(pl['log10_lr_by_generation'][a][g])} / "
                              f"{fmt(pl['by_generation'][a][g])}" for g in gens]
                for a in pl["by_generation"]]).split("\n")
    else:
        md += ["Not run."]
    h = doc["heritability"]
    md += ["", "## Heritability and the response to selection", "",
           f"Parent-offspring regression of `{PRIMARY}` in the random arm (child on first parent, "
           "pairs pooled over generations within a seed, mean of the per-seed slopes): "
           f"**{fmt(h['parent_offspring_slope'])}** [95% CI {fmt(h['ci'][0])}, {fmt(h['ci'][1])}]"
           f" over {h['n_seeds']} seeds. Other arms (biased: their parents were chosen): "
           + ", ".join(f"{k} {fmt(v['parent_offspring_slope'])}" for k, v in h["by_arm"].items())
           + ".", ""]
    if h.get("before"):
        b, d = h["before"], h["before"]["after_minus_before"]
        md += [f"Before the variation changes (`{b['command']}`): slope "
               f"{fmt(b['parent_offspring_slope'])} [95% CI {fmt(b['ci'][0])}, {fmt(b['ci'][1])}]"
               f"; now minus before, paired by seed: {fmt(d['mean_diff'])} [{fmt(d['ci_lo'])}, "
               f"{fmt(d['ci_hi'])}], sign-flip p = {fmt(d['p_sign_flip'])} ({d['n']} seeds).", ""]
    md += ["Per generation g (children g, parents g - 1), means over seeds: S = selection "
           "differential; predicted = h2 x S(outcome) with h2 the random arm's slope; observed = "
           "children's mean minus parents' mean; Price: selection + transmission = observed.", ""]
    rows = [[f"`{arm}`", r["generation"], r["selection_differential/fitness"],
             r["selection_differential/outcome"], r["predicted"], r["observed"],
             r["price/selection"], r["price/transmission"]]
            for arm, rs in doc["selection_response"].items() for r in rs]
    md += md_table(["arm", "g", "S fitness", "S outcome", "predicted R", "observed R",
                    "Price selection", "Price transmission"], rows).split("\n")
    f = doc["fitness_predicts"]
    md += ["", "Mean within-generation Spearman correlation of fitness with: "
           + "; ".join(f"`{k}` {fmt(v['mean_spearman'])} [{fmt(v['ci'][0])}, {fmt(v['ci'][1])}]"
                       f" ({v['populations']} populations)" for k, v in f.items()) + ".", ""]
    t = doc["signal_table"]
    md += ["## Which signals predict learning?", "",
           f"Mean within-population Spearman correlation with `{t['outcome']}` [95% t interval "
           "over seeds]: `own` = a learner's signal vs its own gain (every arm); `offspring` = a "
           "parent's signal vs its children's mean gain in the next generation (arms "
           f"{', '.join(t['unbiased_arms'])}, whose parents are chosen without regard to quality)."
           " Suggested weights (offspring correlations whose interval is above 0): "
           + (", ".join(f"`{k}` {fmt(v)}" for k, v in t["suggested_weights"].items())
              or "none: no signal's interval is above 0") + ".", ""]
    rows = [[f"`{r['signal']}`", ci_text({"mean": r["own"]["mean"], "lo": r["own"]["ci"][0],
             "hi": r["own"]["ci"][1]}), ci_text({"mean": r["offspring"]["mean"],
             "lo": r["offspring"]["ci"][0], "hi": r["offspring"]["ci"][1]}),
             r["offspring"]["populations"]] for r in t["rows"]]
    md += md_table(["signal", "own gain", "offspring gain", "populations (offspring)"],
                   rows).split("\n")
    p = doc["power"]
    source = (f"the pilot `{p['pilot_source']}` (its seeds {fmt(p['pilot_seed_list'][0])}-"
              f"{fmt(p['pilot_seed_list'][-1])}, none of them in this test)"
              if p.get("pilot_source") else f"the first {p['pilot_seeds']} seeds (the pilot)")
    md += ["", "## Power", "",
           f"From {source}: oracle - random d_z "
           f"{fmt(p.get('oracle_random_pilot_d_z'))}, seeds needed for 80% power "
           f"{fmt(p.get('oracle_random_seeds_needed'))}; fitness - random d_z "
           f"{fmt(p.get('fitness_random_pilot_d_z'))}, seeds needed "
           f"{fmt(p.get('fitness_random_seeds_needed'))} at alpha {fmt(p['alpha'])}, "
           f"{fmt(p.get('fitness_random_seeds_needed_half_alpha'))} at alpha / 2 (Holm's second "
           f"step). Seeds run: {p['seeds_run']} (power at the pilot's effects: oracle "
           f"{fmt(p.get('oracle_random_power_at_seeds_run'))}, fitness "
           f"{fmt(p.get('fitness_random_power_at_seeds_run'))} at alpha, "
           f"{fmt(p.get('fitness_random_power_at_seeds_run_half_alpha'))} at alpha / 2).", ""]
    md += ["## Secondary contrasts (not used for the verdict; Holm within each outcome)", ""]
    md += md_table(CONTRAST_HEAD, _contrast_rows(doc["secondary_contrasts"])).split("\n")
    md += ["", f"## Per seed: `{PRIMARY}` of generation {G} (raw values of report.json)", ""]
    rows = [[s] + [doc["per_seed"][x][PRIMARY][i] for x in arms]
            + [doc["generation0_per_seed"][PRIMARY][i]] for i, s in enumerate(seeds)]
    md += md_table(["seed"] + [f"`{x}`" for x in arms] + ["generation 0"], rows).split("\n")
    md += ["", "## Compute", ""]
    rows = [[f"`{x}`", doc["budget"][x]["seconds"], doc["budget"][x]["train_s"],
             doc["budget"][x]["steps_per_item_last"]] for x in arms]
    md += md_table(["arm", "wall seconds (all seeds)", "training seconds", f"mean steps_per_item, "
                    f"generation {G}"], rows).split("\n")
    md += ["", "## Plots", "", "![learning curves](learning_curves.png)", "",
           "![per-generation gain](generations.png)", "",
           "![paired differences](paired_differences.png)", "", "## MLflow", "",
           f"Experiment `{cfg['tracking']['experiment']}` in `{cfg['tracking']['uri']}`: one "
           "evolution per arm and seed, tagged `evolve.experiment=selection`, `evolve.arm`, "
           "`evolve.run_seed` (the planted control also `evolve.control=planted`); each carries "
           "the per-generation metrics `heritability/*`, `selection_differential/*`, "
           "`response/*`, `price/*`; plus a summary run tagged `evolve.kind=" + KIND + "`.", ""]
    rows = [[f"`{x}`", r["seed"], r["run_id"] + (" (reused)" if r.get("reused_from") else "")]
            for x in arms for r in doc["run_ids"][x]]
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
    groups = [("main", doc["contrasts"])]
    if doc["controls"]["planted"]["ran"]:
        groups.append(("planted control", doc["controls"]["planted"]["contrasts"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(5.5 * len(groups), 4.3), dpi=110,
                             squeeze=False)
    for ax, (m, tests) in zip(axes[0], groups, strict=True):
        for j, t in enumerate(tests):
            d = t["diffs"]
            ax.scatter([j + 0.08 * (k - (len(d) - 1) / 2) for k in range(len(d))], d, s=18,
                       color=f"C{j}", zorder=3)
            if t["ci"][0] is not None:
                ax.errorbar(j + 0.3, t["mean_diff"], yerr=[[t["mean_diff"] - t["ci"][0]],
                            [t["ci"][1] - t["mean_diff"]]], fmt="D", color="k", capsize=4)
        ax.axhline(0, color="0.4", lw=1, ls=":")
        ax.set_xticks(range(len(tests)), [f"{t['a']}\n- {t['b']}" for t in tests], fontsize=8)
        ax.set(ylabel=f"{LABELS[PRIMARY]}, difference", title=f"per-seed paired differences: {m}")
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
    planted = doc["controls"]["planted"]
    for prefix, cs in (("", doc["contrasts"]),
                       ("planted.", planted["contrasts"] if planted["ran"] else [])):
        for t in cs:
            for k in ("mean_diff", "p_t", "p_signflip", "p_holm", "d_z"):
                if t.get(k) is not None and math.isfinite(t[k]):
                    summary[f"{prefix}{t['a']}-{t['b']}.{t['outcome']}.{k}"] = float(t[k])
    h = doc["heritability"]["parent_offspring_slope"]
    if h is not None:
        summary["heritability/parent_offspring_slope"] = float(h)
    history = {f"{a}.{PRIMARY}": [(r["generation"], r["mean"]) for r in doc["by_generation"][a]
                                  if r["mean"] is not None] for a in doc["arms"]}
    params = {"seeds": doc["seeds"], "arms": list(doc["arms"]), "primary": PRIMARY,
              "population": cfg.population, "generations": cfg.generations,
              "weights_file": doc["weights_file"] or "none", "command": doc["command"][:480]}
    # the report's own files only: OUT may also hold runs/ and, when the user put them there, the
    # state and artifact directories (logging those copied the artifact store into itself)
    files = [out / n for n in ("report.md", "report.json", RUNS_FILE, "learning_curves.png",
                               "generations.png", "paired_differences.png") if (out / n).is_file()]
    return log_run(settings, f"selection-{len(doc['seeds'])}seeds", KIND, params, history,
                   summary, files)
