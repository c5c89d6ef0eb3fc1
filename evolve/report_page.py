"""One self-contained HTML page per evolution (`evolve report RUN`): the champion, fitness and the
outcome per generation, the selection-response figures (when the run has them), each signal's
distribution per generation, which learners grokked and when (for learners probed 20 times or
more), the family tree and the champion's learning curves.

Plain data in, one HTML string out: figures are matplotlib PNGs inlined as data URIs, the family
tree is `lineage_html.render` in an `<iframe srcdoc>`; no network, no mlflow import. What the
page reads from the store is gathered by `evolve.commands.report.gather`.
"""

from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from evolve import lineage_html, plots  # noqa: E402
from evolve.assess import AVERAGED  # noqa: E402
from evolve.records import LearnerRecord  # noqa: E402

# parent metrics that are timings or bookkeeping, not results
SKIP = ("plots_s", "failed_learners")
# metric prefixes of the selection-response analysis (heritability, response, differentials)
RESPONSE = ("heritability/", "response/", "selection_differential/", "price/")
# the outcome: each averaged assessment outcome's mean (`evolve.generation.fitness_metrics`), the
# learning speed on never-trained items first
OUTCOME = ("assess_auc_mean", *(f"{n}_mean" for n in AVERAGED if n != "assess_auc"))


@dataclass
class EvolutionData:
    """Everything the page shows, read from the store."""

    run_id: str
    name: str
    experiment: str
    status: str
    params: dict[str, str]
    tags: dict[str, str]
    history: dict[str, dict[int, float]]       # parent metric -> {generation: value}
    records: list[LearnerRecord]
    links: dict[str, str] = field(default_factory=dict)   # label -> URL (MLflow UI)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _img(src: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="{src}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "–" if math.isnan(v) else f"{v:.4g}"
    return html.escape(str(v))


def table(head: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    """An HTML table of already-formatted or plain cells (escaped)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def per_generation(data: EvolutionData) -> tuple[list[str], list[list[Any]]]:
    """(header, rows): per generation its champion and every result metric of the run."""
    champs = plots.champions(data.records)
    names = [k for k in data.history if k not in SKIP and not k.endswith("_s")]
    names.sort(key=lambda k: (k not in ("champion_fitness", "mean_fitness"),
                              k not in OUTCOME, k.startswith(RESPONSE), k))
    gens = sorted({g for h in data.history.values() for g in h} | set(champs))
    rows = [[g, champs[g].learner_id if g in champs else None,
             *[data.history[k].get(g) for k in names]] for g in gens]
    return ["generation", "champion", *names], rows


def _lines(series: Mapping[str, Mapping[int, float]], title: str, ylabel: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, pts in series.items():
        xs = sorted(pts)
        ax.plot(xs, [pts[x] for x in xs], "o-", label=k)
    ax.set_xticks(sorted({x for pts in series.values() for x in pts}))
    ax.set_xlabel("generation")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def signal_distributions(records: Sequence[LearnerRecord]) -> str | None:
    """One panel per signal: every learner's value per generation (dots), the median (line)."""
    names = sorted({k for r in records for k, v in r.signals.items() if v is not None})
    if not names:
        return None
    cols = 3
    nrows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(11, 2.6 * nrows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        by_gen: dict[int, list[float]] = {}
        for r in records:
            v = r.signals.get(name)
            if v is not None and math.isfinite(v) and not r.failed:
                by_gen.setdefault(r.generation, []).append(float(v))
        for g, vs in sorted(by_gen.items()):
            ax.scatter([g] * len(vs), vs, s=10, color="0.45")
        gens = sorted(by_gen)
        ax.plot(gens, [sorted(by_gen[g])[len(by_gen[g]) // 2] for g in gens], "-", color="C1")
        ax.set_xticks(gens)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    return _png(fig)


def champion_curves(champion: LearnerRecord) -> str | None:
    """The champion's per-checkpoint curves (x = training items seen)."""
    if not champion.curves:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, pts in sorted(champion.curves.items()):
        ax.plot([s for s, _ in pts], [v for _, v in pts], "o-", ms=3, label=k)
    ax.set_xlabel("training items seen")
    ax.set_title(f"{champion.learner_id}: learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return _png(fig)


def render(data: EvolutionData) -> str:
    """The whole page."""
    scored = [r for r in data.records if not r.failed and r.fitness is not None
              and math.isfinite(r.fitness)]
    last = max((r.generation for r in data.records), default=0)
    final = [r for r in scored if r.generation == last]
    champ = max(final, key=lambda r: r.fitness or 0.0) if final else None
    parts: list[str] = [f"<h1>{html.escape(data.name)}</h1>",
                        f"<p>evolution run <code>{data.run_id}</code> · experiment "
                        f"{html.escape(data.experiment)} · {html.escape(data.status)} · "
                        f"{last + 1} generations, {len(data.records)} learners</p>"]
    if data.links:
        parts.append("<p>" + " · ".join(f'<a href="{html.escape(u)}">{html.escape(k)}</a>'
                                        for k, u in data.links.items()) + "</p>")
    parts.append("<h2>Champion</h2>")
    if champ is None:
        parts.append("<p>No learner of the last generation was scored.</p>")
    else:
        model = data.tags.get("evolve.champion_model", "not registered")
        parts.append(table(["learner", "fitness", "operator", "parents", "model version"],
                           [[champ.learner_id, champ.fitness, champ.operator,
                             " × ".join(champ.parents) or "–", model]]))
        parts.append(table(["gene", "value"], sorted(champ.genome.items()), "genome"))
    head, rows = per_generation(data)
    parts += ["<h2>Per generation</h2>",
              "<p>Fitness is normalised within a generation; the outcome (<code>assess_*</code>: "
              "learning speed on never-trained probe items) is comparable across "
              "generations.</p>", table(head, rows, "wide")]
    parts.append(_img(_drawn(lambda path: plots.fitness_per_generation(data.records, path)),
                      "fitness per generation"))
    outcome = {k: data.history[k] for k in OUTCOME if k in data.history}
    if outcome:
        parts.append(_img(_lines(outcome, "Outcome per generation (mean over learners)",
                                 "outcome"), "outcome per generation"))
    response = {k: v for k, v in data.history.items() if k.startswith(RESPONSE)}
    parts.append("<h2>Response to selection</h2>")
    if response:
        parts.append(_img(_lines(response, "Heritability and response per generation", "value"),
                          "selection response"))
    else:
        parts.append("<p>This run has no heritability / response metrics "
                     f"(none named {', '.join(p + '*' for p in RESPONSE)}).</p>")
    dist = signal_distributions(data.records)
    parts.append("<h2>Signals</h2>")
    parts.append(_img(dist, "signal distributions") if dist else "<p>No signals recorded.</p>")
    parts += grokking(data.records)
    parts.append("<h2>Family tree</h2>")
    tree = lineage_html.render(data.records, title=data.name)
    parts.append(f'<iframe class="tree" title="family tree" srcdoc="{html.escape(tree)}">'
                 "</iframe>")
    parts.append("<h2>Champion's learning curves</h2>")
    curves = champion_curves(champ) if champ else None
    parts.append(_img(curves, "champion learning curves") if curves
                 else "<p>The champion has no recorded curves.</p>")
    style = ("body{font-family:sans-serif;max-width:1150px;margin:1em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:.5em 0;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
             "table.genome td{text-align:left}img{max-width:100%;display:block;margin:.5em 0}"
             "iframe.tree{width:100%;height:640px;border:1px solid #ccc}"
             "div.scroll{overflow-x:auto}")
    body = "\n".join(p if not p.startswith('<table class="wide"') else f'<div class="scroll">{p}</div>'
                     for p in parts)
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(data.name)}'
            f"</title><style>{style}</style></head><body>{body}</body></html>")


def grokking(records: Sequence[LearnerRecord]) -> list[str]:
    """The "Grokking" section: per learner probed at 20 checkpoints or more (the detector's full
    10-probe windows, docs/fitness.md), whether it grokked, where it memorised and where holdout
    came half-way up its rise, and train vs holdout accuracy per learner; [] when there is none
    (an ordinary evolution probes each learner 6 times)."""
    from evolve.experiments.grokking.evolution import plot, rows_of
    from fitness.signals.generalisation import GROK_WINDOW

    rows = [r for r in rows_of(records)
            if r["grokked"] is not None and r["checkpoints"] >= 2 * GROK_WINDOW]
    if not rows:
        return []
    yes = sum(bool(r["grokked"]) for r in rows)
    cells = [[r["learner"], "yes" if r["grokked"] else "no", r["memorised_step"], r["onset_step"],
              r["delay"], r["final_holdout_acc"], r["max_holdout_acc"]] for r in rows]
    return ["<h2>Grokking</h2>",
            f"<p>{yes} of {len(rows)} learners grokked: holdout accuracy jumped after train "
            "accuracy had plateaued (tag <code>evolve.grokked</code>, metrics "
            "<code>signal.grok_*</code>). Steps are training items.</p>",
            table(["learner", "grokked", "memorised at", "onset at", "delay", "final holdout",
                   "best holdout"], cells),
            _img(_drawn(lambda path: plot(rows, path)), "train and holdout accuracy per learner")]


def _drawn(write: Callable[[Path], Path]) -> str:
    """The PNG file `write(path)` draws (returning where it wrote) as a data URI."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp) / "f.png")
        return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()

