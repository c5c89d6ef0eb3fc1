"""`evolve experiment grokking`: grokking on `a+b mod p`, reproduced and watched.

An embedding + MLP model is trained from scratch, full batch, with AdamW and strong weight decay on
a fraction of the addition table; training accuracy reaches 100% within a few hundred steps and
validation accuracy jumps to ~100% thousands of steps later (Power et al. 2022; Nanda et al. 2023).
Every `probe_every` steps the run records train / validation accuracy and confidence, the weight
norm and the layers' weightwatcher alpha (`fitness.spectral`); afterwards the project's grokking
detector (`fitness.signals.detect_grokking`) and confidence-gap signals run on the history, and
`grokking_report` asks whether any signal moved before validation accuracy did.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import EvolveError
from evolve.experiments.report import (
    LAGS,
    LEADS,
    first_index,
    fmt,
    mean,
    rolling_median,
    signal_motion,
)

HELP = "reproduce grokking on a+b mod p (embedding + MLP, AdamW wd 1) and report the signals"
KIND = "experiment.grokking"   # the run's `evolve.kind` tag in MLflow
EXPERIMENT = "evolve-experiments"   # default MLflow experiment (--set tracking.experiment=...)


@dataclass
class GrokConfig:
    """The setting. Defaults are the full run (about 4,000 steps to generalise, NOTES.md)."""

    p: int = 97                    # modulus: p*p = 9,409 pairs (a, b)
    train_fraction: float = 0.4    # 3,763 training pairs; the rest is the validation set
    steps: int = 8000              # at most; stops once validation accuracy holds stop_accuracy
    lr: float = 1e-3
    weight_decay: float = 1.0      # AdamW's decoupled decay; ~1 is what makes it grok
    beta1: float = 0.9
    beta2: float = 0.98
    embed_dim: int = 128           # 2 tokens x 128 -> hidden 512 -> p: 193,761 parameters at p 97
    hidden: int = 512
    probe_every: int = 50          # steps between probes (and alpha fits)
    seed: int = 0
    threshold: float = 0.2         # grokking detector: window-mean jump of validation accuracy
    window: int = 10               # ... over this many probes
    stop_accuracy: float = 0.99    # stop when validation accuracy held this for `window` probes

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise EvolveError(msg)

        need(self.p >= 5, f"--p {self.p} is too small; pass a modulus of at least 5 (97 is canonical)")
        need(0.05 <= self.train_fraction <= 0.95,
             f"--train-fraction {self.train_fraction} is outside [0.05, 0.95]; 0.3-0.5 groks")
        need(self.steps >= 1, f"--steps {self.steps}; pass a positive number of training steps")
        need(self.probe_every >= 1, f"--probe-every {self.probe_every}; pass at least 1 (steps)")
        need(self.weight_decay >= 0, f"--weight-decay {self.weight_decay} < 0; pass 0 or more")
        need(self.lr > 0, f"lr {self.lr} must be > 0")
        need(self.window >= 1 and self.threshold > 0, "detector window >= 1 and threshold > 0")


# A small setting that groks in about 2,000 steps of a few ms each (measured: val >= 0.99 at step
# ~2,100 in 6 s on one busy core): p 31, half the table, lr 1e-2, a 4x narrower model. Probes
# every 40 steps: the alpha fits are most of its cost (about 0.15 s each, 60 probes).
QUICK: dict[str, Any] = dict(p=31, train_fraction=0.5, lr=1e-2, embed_dim=64, hidden=128,
                             steps=3000, probe_every=40)
HISTORY = ("step", "train_loss", "train_acc", "train_conf", "val_loss", "val_acc", "val_conf",
           "val_maxprob", "weight_norm", "alpha", "seconds")


def make_split(cfg: GrokConfig) -> tuple[Any, Any, Any, Any]:
    """All p*p pairs split by the seed: (x_train [N,2] long, y_train [N], x_val [M,2], y_val [M])."""
    import torch

    a, b = torch.meshgrid(torch.arange(cfg.p), torch.arange(cfg.p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % cfg.p
    perm = torch.randperm(cfg.p * cfg.p, generator=torch.Generator().manual_seed(cfg.seed))
    n = int(round(cfg.train_fraction * cfg.p * cfg.p))
    tr, va = perm[:n], perm[n:]
    return x[tr], y[tr], x[va], y[va]


def build_model(cfg: GrokConfig) -> Any:
    """Embedding [p, d] of both operands, concatenated [N, 2d] -> Linear -> ReLU -> Linear [N, p]."""
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    return nn.Sequential(nn.Embedding(cfg.p, cfg.embed_dim), nn.Flatten(1),
                         nn.Linear(2 * cfg.embed_dim, cfg.hidden), nn.ReLU(),
                         nn.Linear(cfg.hidden, cfg.p))


def layer_matrices(model: Any) -> dict[str, Any]:
    """The weight matrices weightwatcher fits: name -> [out, in] (the embedding as [p, d])."""
    return {"embed": model[0].weight.detach().clone(), "fc1": model[2].weight.detach().clone(),
            "fc2": model[4].weight.detach().clone()}


def spectral_alpha(model: Any) -> tuple[float | None, dict[str, float | None]]:
    """(mean alpha, layer name -> alpha) from `fitness.spectral` (the only weightwatcher user);
    (None, {}) where it is missing."""
    try:
        from fitness.spectral import spectral
    except ImportError:
        return None, {}
    res = spectral(layer_matrices(model))
    return res["mean_alpha"], {name: row["alpha"] for name, row in res["layers"].items()}


def train(cfg: GrokConfig, log: Any = None) -> dict[str, Any]:
    """Train and probe. Returns {"history": {name: [per probe]}, "layer_alpha": {layer: [...]},
    "val_correct": [K][M] bool, "val_prob": [K][M] float, "stopped_early": bool, ...}."""
    import torch
    import torch.nn.functional as F

    # One thread: spin-waiting OpenMP threads run 65x slower when the box is busy (NOTES.md).
    torch.set_num_threads(1)
    xtr, ytr, xva, yva = make_split(cfg)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                            betas=(cfg.beta1, cfg.beta2))
    hist: dict[str, list[Any]] = {k: [] for k in HISTORY}
    layer_rows: list[dict[str, float | None]] = []
    val_correct: list[list[bool]] = []
    val_prob: list[list[float]] = []
    val_self: list[list[float]] = []
    t0, held, load0 = time.perf_counter(), 0, round(os.getloadavg()[0], 1)

    def probe(step: int) -> None:
        with torch.no_grad():
            for part, x, y in (("train", xtr, ytr), ("val", xva, yva)):
                logits = model(x)                                  # [N, p]
                probs = logits.softmax(-1)
                p_true = probs.gather(1, y[:, None])[:, 0]         # [N] probability of the answer
                correct = logits.argmax(-1) == y
                hist[f"{part}_loss"].append(F.cross_entropy(logits, y).item())
                hist[f"{part}_acc"].append(correct.float().mean().item())
                hist[f"{part}_conf"].append(p_true.mean().item())
                if part == "val":
                    hist["val_maxprob"].append(probs.max(-1).values.mean().item())
                    val_correct.append(correct.tolist())
                    val_prob.append(p_true.tolist())
                    val_self.append(probs.max(-1).values.tolist())   # own greedy answer
            hist["weight_norm"].append(math.sqrt(sum(float((w * w).sum())
                                                     for w in model.parameters())))
        mean_alpha, layers = spectral_alpha(model)
        hist["alpha"].append(mean_alpha)
        layer_rows.append(layers)
        hist["step"].append(step)
        hist["seconds"].append(round(time.perf_counter() - t0, 2))
        if log and (len(hist["step"]) % 10 == 1):
            log(f"step {step:>6}  train acc {hist['train_acc'][-1]:.3f}  val acc "
                f"{hist['val_acc'][-1]:.3f}  alpha {_show(mean_alpha)}  {hist['seconds'][-1]:.0f}s")

    probe(0)
    step = 0
    for step in range(1, cfg.steps + 1):
        loss = F.cross_entropy(model(xtr), ytr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.probe_every == 0:
            probe(step)
            held = held + 1 if hist["val_acc"][-1] >= cfg.stop_accuracy else 0
            if held >= cfg.window:
                break
    names = sorted({n for row in layer_rows for n in row})   # aligned with the probes
    layer_alpha = {n: [row.get(n) for row in layer_rows] for n in names}
    return {"history": hist, "layer_alpha": layer_alpha, "val_correct": val_correct,
            "val_prob": val_prob, "val_self": val_self, "stopped_early": step < cfg.steps, "last_step": step,
            "load_average": [load0, round(os.getloadavg()[0], 1)],
            "parameters": sum(w.numel() for w in model.parameters()),
            "train_size": len(ytr), "val_size": len(yva)}


def _diff(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _show(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


# --- analysis: milestones, the detector, and which signal moved first ------------------------
ONSET_FRACTION = 0.1   # the jump's onset: validation accuracy covered 10% of its rise
SMOOTH = 5             # probes in the running median the signal motion is measured on


def detect(train_acc: list[float], val_acc: list[float], cfg: GrokConfig) -> tuple[int | None, str]:
    """(probe index where the project's detector fired or None, where the detector came from)."""
    try:
        from fitness.signals.generalisation import detect_grokking
    except ImportError:
        return None, "unavailable: fitness.signals.generalisation.detect_grokking is missing"
    idx = detect_grokking(train_acc, val_acc, cfg.threshold, cfg.window)
    return (None if idx is None else int(idx)), "fitness.signals.generalisation.detect_grokking"


def confidence_gap(run: dict[str, Any]) -> tuple[list[float | None], None, str]:
    """(per-probe validation confidence gap, None, source): mean self-confidence (probability of
    the model's own answer) minus accuracy, from `fitness.signals.confidence_gap_series`."""
    from fitness.signals.confidence import confidence_gap_series

    gap = confidence_gap_series(run["val_correct"], run["val_self"])
    return gap, None, "fitness.signals.confidence"


def analyse(run: dict[str, Any], cfg: GrokConfig) -> dict[str, Any]:
    """Milestones, the detector's verdict, validation accuracy around it, and each signal's motion."""
    hist = run["history"]
    steps, tr, va = hist["step"], hist["train_acc"], hist["val_acc"]
    idx, source = detect(tr, va, cfg)
    gap, area, gap_source = confidence_gap(run)
    over = [m - a for m, a in zip(hist["val_maxprob"], va, strict=True)]
    mem = first_index(tr, lambda v: v >= 1.0)
    w = cfg.window
    s: dict[str, Any] = {
        "memorised_step": None if mem is None else steps[mem],
        "detector_step": None if idx is None else steps[idx], "detector_index": idx,
        "detector": source, "val_at_memorised": None if mem is None else va[mem],
        "val_at_detector": None if idx is None else va[idx],
        # the two windows the detector compared: (j-2w, j-w] and (j-w, j]
        "val_before": None if idx is None else mean(va[max(0, idx - 2 * w + 1):idx - w + 1]),
        "val_after": None if idx is None else mean(va[idx - w + 1:idx + 1]),
        "val_final": va[-1], "train_final": tr[-1], "last_step": steps[-1],
        "val_50_step": None, "val_95_step": None, "onset_step": None, "loop_area": area,
    }
    for key, level in (("val_50_step", 0.5), ("val_95_step", 0.95)):
        i = first_index(va, lambda v, lv=level: v >= lv)
        s[key] = None if i is None else steps[i]
    signals: dict[str, Any] = {}
    if mem is not None:
        rise = max(va[mem:]) - va[mem]
        onset = first_index(va, lambda v: v - va[mem] >= ONSET_FRACTION * rise, mem) \
            if rise > cfg.threshold else None
        half = first_index(va, lambda v: v - va[mem] >= 0.5 * rise, mem) if onset else None
        s["onset_step"] = None if onset is None else steps[onset]
        named = {"alpha": hist["alpha"],
                 **{f"alpha_{k}": v for k, v in run["layer_alpha"].items()},
                 "confidence_gap": gap, "overconfidence": over, "val_conf": hist["val_conf"],
                 "weight_norm": hist["weight_norm"], "val_acc": va}
        # a running median of 5 probes: power-law fits on <= 97 eigenvalues jump between probes
        signals = {k: signal_motion(steps, rolling_median(v, SMOOTH), mem, onset, half)
                   for k, v in named.items()}
    return {"summary": s, "signals": signals, "confidence_gap": gap, "overconfidence": over,
            "confidence_gap_source": gap_source}


# --- the report ----------------------------------------------------------------------------
def plots(out: Path, run: dict[str, Any], result: dict[str, Any]) -> list[Path]:
    """accuracy.png, confidence_loop.png and alpha.png, the milestones marked."""
    from evolve.experiments.report import line_plot, loop_plot

    hist, s = run["history"], result["summary"]
    steps = hist["step"]
    marks = {"train acc 100%": s["memorised_step"], "jump onset": s["onset_step"],
             "detector fired": s["detector_step"]}
    acc = line_plot(out / "accuracy.png", steps,
                    {"train accuracy": hist["train_acc"], "validation accuracy": hist["val_acc"]},
                    title="Grokking: accuracy over training steps", xlabel="step (full batch)",
                    ylabel="accuracy", marks=marks, ylim=(-0.02, 1.02))
    loop = loop_plot(out / "confidence_loop.png",
                     {"P(answer), validation": (hist["val_acc"], hist["val_conf"]),
                      "max prob, validation": (hist["val_acc"], hist["val_maxprob"])},
                     steps, title="Confidence vs knowledge (validation set)",
                     xlabel="knowledge = validation accuracy", ylabel="mean confidence")
    series = {"mean alpha": hist["alpha"]}
    series.update({f"alpha {k}": v for k, v in run["layer_alpha"].items()})
    title = "weightwatcher layer alpha over steps (2 = the claimed well-trained edge)"
    if all(a is None for a in hist["alpha"]):
        title = "alpha not available: fitness.spectral is not installed yet"
    alpha = line_plot(out / "alpha.png", steps, series, title=title, xlabel="step",
                      ylabel="power-law exponent alpha", marks=marks, hline=2.0)
    return [acc, loop, alpha]


def _claim(result: dict[str, Any]) -> list[str]:
    """The run against 'alpha falls towards 2 as a model generalises, below 2 when it over-fits'."""
    a, s = result["signals"].get("alpha"), result["summary"]
    if not a or a["at_memorised"] is None or a["at_end"] is None:
        return ["Alpha was not measured in this run (fitness.spectral unavailable)."]
    mem, end = a["at_memorised"], a["at_end"]
    band = lambda x: "below 2" if x < 2 else "in the 2-6 band" if x <= 6 else "above 6"  # noqa: E731
    yes = lambda ok: "yes" if ok else "no"  # noqa: E731
    return [f"- Memorised, over-fitted model (step {fmt(s['memorised_step'])}: train accuracy "
            f"100%, validation {fmt(s['val_at_memorised'])}): mean alpha {fmt(mem)}, {band(mem)}. "
            f"The claim expects alpha below 2 here: {yes(mem < 2)}.",
            f"- Generalised model (step {fmt(s['last_step'])}, validation "
            f"{fmt(s['val_final'])}): mean alpha {fmt(end)}, {band(end)}; it "
            f"{'fell' if end < mem else 'rose'} by {fmt(abs(end - mem))} while the model "
            f"generalised. The claim expects a fall towards 2, not below it: "
            f"{yes(end < mem and 2 <= end <= 6)}.",
            f"- Lowest mean alpha after memorisation: {fmt(a['min'])}."]


def write_report(out: Path, cfg: GrokConfig, run: dict[str, Any], result: dict[str, Any],
                 command: str) -> dict[str, Any]:
    """report.json (config, summary, signal motion, the whole history), report.md and the PNGs."""
    from evolve.experiments.report import md_table, write_json

    hist, s, sig = run["history"], result["summary"], result["signals"]
    s = dict(s, train_seconds=hist["seconds"][-1], load_average=run["load_average"],
             parameters=run["parameters"],
             train_size=run["train_size"], val_size=run["val_size"],
             stopped_early=run["stopped_early"])
    doc = {"experiment": "grokking", "command": command, "config": dataclasses.asdict(cfg),
           "summary": s, "signals": sig, "confidence_gap_source": result["confidence_gap_source"],
           "history": dict(hist, confidence_gap=result["confidence_gap"],
                           overconfidence=result["overconfidence"]),
           "layer_alpha": run["layer_alpha"]}
    write_json(out / "report.json", doc)
    plots(out, run, result)
    w = cfg.window
    val_at = lambda st: None if st is None else hist["val_acc"][hist["step"].index(st)]  # noqa: E731
    rows = [[label, s[key], val_at(s[key])] for label, key in (
        ("training accuracy reached 100%", "memorised_step"),
        (f"jump onset (validation covered {ONSET_FRACTION:.0%} of its rise)", "onset_step"),
        (f"grokking detector fired (jump > {cfg.threshold} over {w} probes)", "detector_step"),
        ("validation accuracy >= 50%", "val_50_step"), ("validation accuracy >= 95%", "val_95_step"),
        ("end of the run", "last_step"))]
    if s["detector_index"] is None:
        verdict = (f"The grokking detector did not fire within {s['last_step']} steps."
                   if s["detector"].startswith("fitness") else f"Detector {s['detector']}.")
    else:
        verdict = (f"The detector compares the mean validation accuracy of the last {w} probes "
                   f"with the {w} before them: {fmt(s['val_before'])} before, "
                   f"{fmt(s['val_after'])} after, at step {s['detector_step']}, "
                   f"{s['detector_step'] - (s['memorised_step'] or 0)} steps after training "
                   f"accuracy reached 100% (and {fmt(_diff(s['detector_step'], s['onset_step']))} "
                   f"steps after the onset: it confirms a jump, it cannot foresee one). "
                   f"Validation accuracy ended at {fmt(s['val_final'])}.")
    names = {"alpha": "mean layer alpha", "confidence_gap": "confidence gap (self-conf. - acc)",
             "overconfidence": "max prob - acc", "val_conf": "validation P(answer)",
             "weight_norm": "weight norm (L2)", "val_acc": "validation accuracy (reference)"}
    names.update({k: f"alpha of {k[6:]}" for k in sig if k.startswith("alpha_")})
    srows = [[names[k], v["at_memorised"], v["at_onset"], v["at_end"],
              None if v["moved_by_onset"] is None else f"{v['moved_by_onset']:.0%}",
              v["half_step"], v["lead_steps"], v["turn_step"] if v["turned"] else None,
              v["verdict"]] for k, v in sig.items()]
    first = [names[k] for k, v in sig.items() if k != "val_acc" and v["moved_by_onset"] is not None
             and v["moved_by_onset"] >= LEADS]
    turned = [f"{names[k]} (step {v['turn_step']})" for k, v in sig.items()
              if "before the jump" in v["verdict"] and v["verdict"].startswith("turned")]
    md = [f"# Grokking on a+b mod {cfg.p}, reproduced and watched", "",
          f"Command: `{command}`", "",
          f"Setting: {run['train_size']} training pairs ({cfg.train_fraction:.0%} of the {cfg.p}x"
          f"{cfg.p} table), {run['val_size']} validation pairs; embedding {cfg.embed_dim} x 2 -> "
          f"MLP {cfg.hidden} -> {cfg.p} ({run['parameters']:,} parameters); AdamW lr {cfg.lr}, "
          f"weight decay {cfg.weight_decay}, betas {cfg.beta1}/{cfg.beta2}, full batch; seed "
          f"{cfg.seed}; probed every {cfg.probe_every} steps; {s['last_step']} steps "
          f"({'stopped once validation accuracy held ' + str(cfg.stop_accuracy) if s['stopped_early'] else 'all steps'}) "
          f"in {s['train_seconds']:.0f} s (training and probing) on one torch thread; load average "
          f"of the machine {s['load_average'][0]} at the start, {s['load_average'][1]} at the end, "
          f"on {os.cpu_count()} cores.", "",
          "## What happened", "", md_table(["milestone", "step", "validation accuracy"], rows), "",
          verdict, "", "## Did any signal move before the jump?", "",
          f"Values are running medians over {SMOOTH} probes.", "",
          md_table(["signal", "at train 100%", "at onset", "at end", "moved by onset",
                    "half-way step", "lead over val acc (steps)", "turned at", "verdict"],
                   srows), "",
          f"Signals that had covered at least {LEADS:.0%} of their post-memorisation range by the "
          f"jump's onset (step {fmt(s['onset_step'])}): {', '.join(first) or 'none'}. Signals "
          f"whose trend turned (peaked) between train 100% and the onset: "
          f"{', '.join(turned) or 'none'}.", "",
          "## Alpha and the weightwatcher claim", "", *_claim(result), "",
          "## Plots", "", "![accuracy](accuracy.png)", "",
          "![confidence vs knowledge](confidence_loop.png)", "", "![alpha](alpha.png)", "",
          "## How each number is measured", "",
          "- Accuracy: argmax of the logits equals (a+b) mod p, over all training / validation "
          "pairs, every probe. P(answer): mean softmax probability of the true answer.",
          f"- Detector: {s['detector']} (train_acc, val_acc, threshold={cfg.threshold}, "
          f"window={w}) over the probes; it fires at the first probe j whose last-{w}-probe "
          "mean beats the previous window's by more than the threshold, after train accuracy "
          "plateaued; 'before' / 'after' are those two windows' means.",
          f"- Confidence gap: mean validation self-confidence (max prob, the model's own answer) "
          f"minus validation accuracy ({result['confidence_gap_source']}).",
          "- Alpha: weightwatcher power-law exponent of the embedding, fc1 and fc2 matrices "
          "(fitness.spectral), mean over layers.",
          f"- Moved by onset: |value at onset - value at train 100%| / (max - min after train "
          f"100%); >= {LEADS:.0%} reads as 'moved first', < {LAGS:.0%} as 'no anticipation'. "
          "Half-way step: first probe where the signal covered half its way from its value at "
          "train 100% to its end value; lead = validation accuracy's half-way step minus it. "
          f"Turned at: where it peaked (its extreme farther from its end value), shown when the "
          f"peak is at least {LAGS:.0%} of the range away from its value at train 100%.", ""]
    (out / "report.md").write_text("\n".join(md))
    return doc


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = GrokConfig()
    p.add_argument("--out", type=Path, default=Path("docs/results/grokking"),
                   help="directory for report.md, report.json and the PNGs "
                        "(default docs/results/grokking)")
    p.add_argument("--quick", action="store_true",
                   help=f"small setting (p {QUICK['p']}, {QUICK['steps']} steps at most), "
                        "well under a minute; flags below still override it")
    p.add_argument("--seed", type=int, default=d.seed, help="seed of the split and the init "
                   f"(default {d.seed})")
    p.add_argument("--steps", type=int, default=None,
                   help=f"training steps at most (default {d.steps}; quick {QUICK['steps']}); "
                        f"stops early once validation accuracy held {d.stop_accuracy}")
    p.add_argument("--train-fraction", type=float, default=None,
                   help=f"fraction of the p*p table trained on (default {d.train_fraction})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"AdamW weight decay (default {d.weight_decay}, the grokking setting)")
    p.add_argument("--probe-every", type=int, default=None,
                   help=f"steps between probes (default {d.probe_every}; quick "
                        f"{QUICK['probe_every']})")
    p.add_argument("--no-mlflow", action="store_true",
                   help=f"do not log the run to MLflow (default: log it to the tracking store, "
                        f"experiment {EXPERIMENT!r})")
    from evolve.config import tracking_args

    tracking_args(p)


def config_of(args: argparse.Namespace) -> GrokConfig:
    """Defaults < the quick preset (with --quick) < explicit flags."""
    values: dict[str, Any] = dict(QUICK) if args.quick else {}
    values["seed"] = args.seed
    for flag in ("steps", "train_fraction", "weight_decay", "probe_every"):
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    return GrokConfig(**values)


def main(args: argparse.Namespace) -> int:
    cfg = config_of(args)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    log(f"grokking: a+b mod {cfg.p}, train fraction {cfg.train_fraction}, up to {cfg.steps} "
        f"steps, seed {cfg.seed} -> {out}")
    run = train(cfg, log)
    result = analyse(run, cfg)
    doc = write_report(out, cfg, run, result, command=_command_of(args))
    if not args.no_mlflow:
        from evolve.config import tracking_of_args
        from evolve.experiments.report import log_run

        settings = tracking_of_args(args)
        if not args.config and not any(x.startswith("tracking.experiment=") for x in args.sets):
            settings["experiment"] = EXPERIMENT   # not among the evolutions
        hist = run["history"]
        series = {k: list(zip(hist["step"], hist[k], strict=True)) for k in
                  ("train_acc", "val_acc", "val_conf", "alpha", "weight_norm")}
        series["confidence_gap"] = list(zip(hist["step"], result["confidence_gap"], strict=True))
        summary = {k: v for k, v in doc["summary"].items() if isinstance(v, (int, float))}
        run_id = log_run(settings, f"grokking-p{cfg.p}-seed{cfg.seed}", KIND,
                         dataclasses.asdict(cfg), series, summary, out)
        log(f"logged to MLflow {settings['uri']} experiment {settings['experiment']!r} run {run_id}")
    s = doc["summary"]
    print(f"memorised (train acc 100%) at step {s['memorised_step']}; detector fired at step "
          f"{s['detector_step']}; validation accuracy {_show(s['val_before'])} -> "
          f"{_show(s['val_after'])}; report {out / 'report.md'}")
    return 0


def _command_of(args: argparse.Namespace) -> str:
    parts = ["evolve experiment grokking"]
    if args.quick:
        parts.append("--quick")
    parts.append(f"--seed {args.seed} --out {args.out}")
    for flag in ("steps", "train_fraction", "weight_decay", "probe_every"):
        if getattr(args, flag) is not None:
            parts.append(f"--{flag.replace('_', '-')} {getattr(args, flag)}")
    return " ".join(parts)
