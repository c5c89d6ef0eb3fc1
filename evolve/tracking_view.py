"""What the MLflow UI shows of an evolution: the experiment's kind and default columns, the
evolution run's name and description, the champion model version's description, and UI links.

Plain data and text (no `mlflow` import): `evolve/tracking.py` writes it to the store.

How MLflow 3.17's UI decides (read from its source, `mlflow/server/js`):
- the page (GenAI traces overview or the training runs table) follows the sidebar's "GenAI |
  Model training" switch, kept in the browser (localStorage `mlflow.workflowType`, GenAI unless
  the user switched) and set by the URL parameter `workflowType=machine_learning`. In 3.17.2 the
  experiment tag `mlflow.experimentKind` (`custom_model_development` = training) no longer
  decides it (its workflow navigation flag is always on); evolve still sets the tag, for the UIs
  that read it;
- the runs table's column selection lives in the browser (localStorage, per experiment). The one
  server-side default is a saved view: the experiment tag `mlflow.sharedViewState.<key>` (an
  envelope `{name, createdAt, updatedAt, state}`), listed under "Views" and applied when the page
  is opened with `?viewStateShareKey=<key>`. So `evolve ui` and `evolve run` print a link with
  both parameters;
- a run's or a model version's description is Markdown (the run tag `mlflow.note.content`).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
NOTE = "mlflow.note.content"
SHARE_KEY = "evolve"
SHARE_TAG = f"mlflow.sharedViewState.{SHARE_KEY}"
TRAINING = "workflowType=machine_learning"
_RUN_NAME_MAX = 250


def column(kind: str, key: str) -> str:
    """MLflow's canonical runs-table column key, e.g. tags.`evolve.generation`."""
    return f"{kind}.`{key}`"


# learner runs: generation, fitness, operator and parents; the evolution run: its champion's
# fitness and the mean learning speed on never-trained items (metric `assess_auc_mean`)
COLUMNS = (column("tags", "evolve.generation"), column("metrics", "fitness"),
           column("tags", "evolve.operator"), column("tags", "evolve.parents"),
           column("metrics", "champion_fitness"), column("metrics", "assess_auc_mean"))


VIEW_NAME = "evolve: generation, fitness, operator"


def view_state(now_ms: int | None = None) -> str:
    """The saved view (MLflow 3.17's envelope: name, times, and the state as a JSON string):
    evolve's columns, newest runs first. It is listed under the runs table's "Views" too."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    state = {"selectedColumns": list(COLUMNS), "orderByKey": "attributes.start_time",
             "orderByAsc": False, "runListHidden": False, "viewMaximized": False}
    return json.dumps({"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms,
                       "state": json.dumps(state)})


def experiment_tags() -> dict[str, str]:
    """Tags every experiment `evolve run` creates or opens for writing carries."""
    return {EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1], SHARE_TAG: view_state(),
            NOTE: ("Evolutions recorded by `evolve run`: one parent run per evolution (named "
                   "experiment · seed · config), its learners nested under it, one run per "
                   "learner per generation. Open an evolution run for its family tree, fitness "
                   "plot and report.")}


def evolution_name(experiment: str, seed: int, config: str | None = None,
                   sets: Sequence[str] = ()) -> str:
    """`evolve · seed 0 · smoke · generations=1`: what the run is, readable in the runs table."""
    label = Path(config).stem if config else "default"
    name = " · ".join([experiment, f"seed {seed}", label, *[s for s in sets if s]])
    return name if len(name) <= _RUN_NAME_MAX else name[: _RUN_NAME_MAX - 1] + "…"


def run_route(experiment_id: str, run_id: str, artifact: str | None = None) -> str:
    """The UI's hash route of a run page, or of one artifact in its artifact viewer."""
    route = f"#/experiments/{experiment_id}/runs/{run_id}"
    route = f"{route}/artifacts/{artifact}" if artifact else route
    return route + "?" + TRAINING  # the training view, whatever the browser last chose


def experiment_url(base: str, experiment_id: str) -> str:
    """The runs table of an experiment with evolve's columns (the shared view state)."""
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}"
            f"/runs?{TRAINING}&viewStateShareKey={SHARE_KEY}")


def artifact_src(run_id: str, path: str) -> str:
    """A relative URL the MLflow server answers with the artifact's bytes (for inline images)."""
    return "get-artifact?" + urllib.parse.urlencode({"path": path, "run_uuid": run_id})


def evolution_note(experiment_id: str, run_id: str, champion: dict[str, Any] | None = None,
                   report: bool = False) -> str:
    """The evolution run's Markdown description: links one click from the run page."""
    links = [f"[Family tree]({run_route(experiment_id, run_id, 'plots/lineage.html')})",
             f"[Fitness per generation]({run_route(experiment_id, run_id, 'plots/fitness.png')})",
             f"[Champions' signals]({run_route(experiment_id, run_id, 'plots/champion_signals.png')})"]
    if report:
        links.insert(0, f"[Report]({run_route(experiment_id, run_id, 'report.html')})")
    lines = ["**" + " · ".join(links) + "**", ""]
    if champion:
        lines.append(f"Champion **{champion['learner_id']}** (fitness {champion['fitness']:.3f}): "
                     f"[its run]({run_route(experiment_id, champion['run_id'])}), "
                     f"model [{champion['model']} v{champion['version']}]"
                     f"(#/models/{urllib.parse.quote(champion['model'])}/versions/"
                     f"{champion['version']}).")
        lines.append("")
    lines.append(f"![fitness per generation]({artifact_src(run_id, 'plots/fitness.png')})")
    lines.append("")
    lines.append("Plots are drawn after the last generation (`tracking.draw_plots: every` draws "
                 "them each generation). `evolve report` writes the report, `evolve lineage` "
                 "prints the tree.")
    return "\n".join(lines)


def champion_note(learner_id: str, fitness: float | None, experiment_id: str,
                  evolution_run_id: str, chain: Sequence[tuple[str, str, Sequence[str]]]) -> str:
    """A registered champion's Markdown description: its ancestry, oldest first, with links."""
    fit = "-" if fitness is None else f"{fitness:.3f}"
    rows = [f"- **{child}**: {op}" + (f" of {' × '.join(parents)}" if parents else "")
            for child, op, parents in chain]
    return "\n".join([
        f"Champion **{learner_id}** (fitness {fit}) of evolution "
        f"[{evolution_run_id[:8]}]({run_route(experiment_id, evolution_run_id)}); "
        f"[family tree]({run_route(experiment_id, evolution_run_id, 'plots/lineage.html')}).",
        "", "Ancestry, oldest first:", *rows])
