"""The family tree of an evolution as one self-contained HTML page (inline SVG, CSS and JS, no
network), for MLflow's artifact viewer (which shows HTML in an iframe with scripts allowed).

The SVG is drawn here, in Python, so the tree shows even with scripts off; the script adds the
hover panel, highlights a learner's ancestry on click, and builds the learner table from the
embedded JSON. Also home of the tree layout that `evolve.plots` draws as PNG.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from evolve.records import LearnerRecord, learner_key

# viridis at 0, .25, .5, .75, 1: low fitness dark purple, high fitness yellow
_VIRIDIS = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
FAILED_COLOR = "#d62728"
COL_W, ROW_H, NODE_R, MARGIN = 130, 140, 20, 60   # px; 130 fits two 'crossover' labels


def score_range(records: list[LearnerRecord]) -> tuple[float, float]:
    """(min, max) fitness over learners that did not fail; (0, 1) when there are none."""
    xs = [r.fitness for r in records if r.fitness is not None and r.scored]
    return (min(xs), max(xs)) if xs else (0.0, 1.0)


def fitness_color(value: float | None, lo: float, hi: float) -> str:
    """Hex colour of a fitness on viridis over [lo, hi]; grey for an unscored learner."""
    if value is None or not math.isfinite(value):
        return "#9e9e9e"
    t = 0.5 if hi <= lo else min(1.0, max(0.0, (value - lo) / (hi - lo)))
    i = min(int(t * 4), 3)
    f = t * 4 - i
    rgb = [round(a + (b - a) * f) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1], strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def tree_layout(records: list[LearnerRecord]) -> dict[str, tuple[float, int]]:
    """learner id -> (column, generation). Generation 0 in learner order; each later generation
    ordered by the mean column of its parents (fewer crossing edges), ties by learner order."""
    by_gen: dict[int, list[LearnerRecord]] = {}
    for r in records:
        by_gen.setdefault(r.generation, []).append(r)
    pos: dict[str, tuple[float, int]] = {}
    for g in sorted(by_gen):
        def key(r: LearnerRecord) -> tuple[float, tuple[int, int, str]]:
            xs = [pos[p][0] for p in r.parents if p in pos]
            return (sum(xs) / len(xs) if xs else math.inf, learner_key(r.learner_id))
        ordered = sorted(by_gen[g], key=key)
        for col, r in enumerate(ordered):
            pos[r.learner_id] = (float(col), g)
    return pos


def _num(x: float | None) -> float | None:
    """JSON has no NaN/inf: those become null."""
    return x if x is not None and math.isfinite(x) else None


def _fmt(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.4g}"


def render(records: list[LearnerRecord], title: str = "evolution") -> str:
    """The whole page as a string."""
    pos = tree_layout(records)
    lo, hi = score_range(records)
    width = MARGIN * 2 + COL_W * max([int(c) for c, _ in pos.values()] + [0]) + 120
    gens = sorted({g for _, g in pos.values()})
    height = MARGIN * 2 + ROW_H * (len(gens) - 1 if gens else 0)
    row = {g: i for i, g in enumerate(gens)}
    xy = {k: (MARGIN + 110 + c * COL_W, MARGIN + row[g] * ROW_H) for k, (c, g) in pos.items()}
    svg: list[str] = []
    for g in gens:
        svg.append(f'<text class="gen" x="8" y="{MARGIN + row[g] * ROW_H + 4}">generation {g}</text>')
    for r in records:  # edges first so nodes sit on top
        x2, y2 = xy[r.learner_id]
        for p in r.parents:
            if p not in xy:
                continue
            x1, y1 = xy[p]
            svg.append(f'<line class="edge op-{r.operator}" data-child="{html.escape(r.learner_id)}"'
                       f' data-parent="{html.escape(p)}" x1="{x1}" y1="{y1 + NODE_R + 18}" x2="{x2}"'
                       f' y2="{y2 - NODE_R}"/>')
            mx, my = (x1 + x2) / 2, (y1 + y2) / 2   # midpoint: edges sharing an end diverge most
            svg.append(f'<text class="op" x="{mx:.0f}" y="{my + 14:.0f}">{r.operator}</text>')
    for r in records:
        x, y = xy[r.learner_id]
        lid = html.escape(r.learner_id)
        genome = ", ".join(f"{k}={v}" for k, v in r.genome.items())
        tip = f"{r.learner_id}  fitness {_fmt(r.fitness)}\n{genome}" + \
            (f"\nFAILED: {r.failure}" if r.failed else "")
        fill = FAILED_COLOR if r.failed else fitness_color(r.fitness, lo, hi)
        cls = "node failed" if r.failed else "node"
        mark = f'<text class="x" x="{x}" y="{y + 6}">✕</text>' if r.failed else ""
        svg.append(f'<g class="{cls}" data-learner="{lid}"><title>{html.escape(tip)}</title>'
                   f'<circle cx="{x}" cy="{y}" r="{NODE_R}" fill="{fill}"/>{mark}'
                   f'<text class="lid" x="{x}" y="{y + NODE_R + 13}">{lid}</text></g>')
    data = [{"id": r.learner_id, "generation": r.generation, "parents": r.parents,
             "operator": r.operator, "fitness": _num(r.fitness), "failed": r.failed,
             "failure": r.failure, "genome": r.genome, "decisions": r.decisions,
             "run_id": r.run_id} for r in records]
    blob = json.dumps(data, default=str).replace("</", "<\\/")
    legend = (f'fitness <span class="bar"></span> {_fmt(lo)} … {_fmt(hi)} &nbsp; '
              f'<span class="dot" style="background:{FAILED_COLOR}"></span> failed &nbsp; '
              f'{len(records)} learners, {len(gens)} generations')
    return _PAGE.format(title=html.escape(title), w=width, h=max(height, 2 * MARGIN),
                        svg="\n".join(svg), data=blob, legend=legend,
                        stops=", ".join("rgb({},{},{})".format(*c) for c in _VIRIDIS))


def write(records: list[LearnerRecord], path: str | Path, title: str = "evolution") -> Path:
    """Render the page to `path`."""
    path = Path(path)
    path.write_text(render(records, title), encoding="utf-8")
    return path


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Family tree: {title}</title>
<style>
body {{ font: 13px system-ui, sans-serif; margin: 12px; color: #222; }}
h1 {{ font-size: 16px; margin: 0 0 6px; }}
.legend {{ margin-bottom: 8px; }}
.bar {{ display: inline-block; width: 90px; height: 10px; background: linear-gradient(90deg, {stops}); }}
.dot {{ display: inline-block; width: 10px; height: 10px; border-radius: 5px; }}
svg {{ border: 1px solid #ddd; background: #fff; }}
.edge {{ stroke: #888; stroke-width: 1.4; }} .edge.op-crossover {{ stroke: #1f77b4; }}
.edge.op-mutate {{ stroke: #ff7f0e; stroke-dasharray: 5 3; }} .edge.op-clone {{ stroke: #555; }}
.op {{ font-size: 10px; fill: #555; text-anchor: middle; paint-order: stroke; stroke: #fff;
  stroke-width: 3px; }} .gen {{ font-weight: 600; fill: #444; }}
.lid {{ font-size: 11px; text-anchor: middle; }} .x {{ font-size: 18px; text-anchor: middle; fill: #fff; }}
.node circle {{ stroke: #333; stroke-width: 1; cursor: pointer; }}
.node.failed circle {{ stroke: #000; stroke-dasharray: 3 2; }}
.dim {{ opacity: 0.15; }} .hl circle {{ stroke-width: 3; }} .edge.hl {{ stroke-width: 3; }}
#panel {{ position: fixed; right: 12px; top: 12px; width: 320px; background: #fafafa;
  border: 1px solid #ccc; padding: 8px; white-space: pre-wrap; font-family: monospace;
  font-size: 11px; display: none; }}
table {{ border-collapse: collapse; margin-top: 10px; }}
td, th {{ border: 1px solid #ddd; padding: 2px 6px; text-align: left; }}
tr.failed td {{ color: {failed}; }}
</style></head><body>
<h1>Family tree: {title}</h1>
<div class="legend">{legend}. Hover a learner for its genome; click it to highlight its ancestry.</div>
<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">
{svg}
</svg>
<div id="panel"></div>
<table id="learners"><thead><tr><th>learner</th><th>gen</th><th>operator</th><th>parents</th>
<th>fitness</th><th>status</th></tr></thead><tbody></tbody></table>
<script type="application/json" id="lineage-data">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("lineage-data").textContent);
  var byId = {{}}; data.forEach(function (d) {{ byId[d.id] = d; }});
  var panel = document.getElementById("panel");
  function fmt(x) {{ return x === null ? "\\u2014" : Number(x).toPrecision(4); }}
  function ancestors(id) {{
    var seen = {{}}, todo = [id];
    while (todo.length) {{ var c = todo.pop(); if (seen[c] || !byId[c]) continue;
      seen[c] = true; todo = todo.concat(byId[c].parents); }}
    return seen;
  }}
  document.querySelectorAll(".node").forEach(function (g) {{
    var d = byId[g.dataset.learner];
    g.addEventListener("mouseenter", function () {{
      panel.style.display = "block";
      panel.textContent = d.id + "  (generation " + d.generation + ", " + d.operator + ")\\n" +
        "fitness " + fmt(d.fitness) + (d.failed ? "\\nFAILED: " + d.failure : "") +
        "\\nparents: " + (d.parents.join(" x ") || "none") + "\\n\\ngenome:\\n" +
        Object.keys(d.genome).map(function (k) {{ return "  " + k + " = " + JSON.stringify(d.genome[k]); }}).join("\\n") +
        (d.decisions.length ? "\\n\\ndecisions:\\n  " + d.decisions.join("\\n  ") : "");
    }});
    g.addEventListener("mouseleave", function () {{ panel.style.display = "none"; }});
    g.addEventListener("click", function () {{
      var keep = ancestors(d.id), on = !g.classList.contains("hl") ;
      document.querySelectorAll(".node").forEach(function (n) {{
        n.classList.toggle("dim", on && !keep[n.dataset.learner]);
        n.classList.toggle("hl", on && !!keep[n.dataset.learner]); }});
      document.querySelectorAll(".edge").forEach(function (e) {{
        var k = keep[e.dataset.child] && keep[e.dataset.parent];
        e.classList.toggle("dim", on && !k); e.classList.toggle("hl", on && !!k); }});
    }});
  }});
  var body = document.querySelector("#learners tbody");
  data.forEach(function (d) {{
    var tr = document.createElement("tr");
    tr.className = d.failed ? "failed" : ""; tr.dataset.learner = d.id;
    [d.id, d.generation, d.operator, d.parents.join(" x "), fmt(d.fitness),
     d.failed ? "failed" : "ok"].forEach(function (v) {{
      var td = document.createElement("td"); td.textContent = v; tr.appendChild(td); }});
    body.appendChild(tr);
  }});
  document.body.dataset.rendered = String(data.length);
}})();
</script>
</body></html>
"""
_PAGE = _PAGE.replace("{failed}", FAILED_COLOR)
