"""`evolve replay LEARNER`: re-train a learner's whole ancestry as one learner, reproduce its adapter.

The store holds everything needed: the evolution's config (hence every item and seed), and per
learner its genome (mutated hyperparameters included), parents and decision lines (merges and
weight noise with their seeds). Replay walks the ancestry oldest first, trains each ancestor alone
on the stream it saw (same items, same curriculum seed, same inherited state), and exports the
result; if the learner's adapter was logged it reports the largest absolute difference.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import EvolveError

if TYPE_CHECKING:
    from evolve.config import RunConfig
    from evolve.tracking_store import Store
    from learners.population import LearnerState

HELP = "re-train a learner's ancestry as one learner and reproduce its adapter"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("learner", metavar="LEARNER",
                   help="learner id (e.g. g3-l0) or its MLflow run id")
    p.add_argument("--run", metavar="RUN_ID",
                   help="evolution (parent) run id (default: the one holding LEARNER's run id, "
                        "else the latest evolution)")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="where to write the replayed PEFT adapter (default: replay/<LEARNER>)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="the store (tracking.uri, tracking.experiment) and state_dir (default "
                        ".evolve_state), e.g. tracking.uri=sqlite:///x.db; repeatable")


def main(args: argparse.Namespace) -> int:
    from evolve.config_layers import layered, tracking_settings
    from evolve.tracking import Tracker

    # only the store and the state directory: the evolution's own config comes from the run
    settings = tracking_settings(None, args.sets)
    state_dir = str(layered(None, args.sets)[0].get("state_dir") or ".evolve_state")
    tracker = Tracker(settings["uri"], settings["experiment"], settings["artifact_location"],
                      create=False)
    edges = tracker.lineage(args.learner, args.run)
    target = edges[-1].child
    evolution = tracker.evolution_of(args.learner, args.run)
    out = Path(args.out or Path("replay") / target)
    diff = replay(tracker, evolution, target, out, state_dir)
    print(f"replayed {target} of evolution {evolution}: {len(edges)} ancestors, adapter -> {out}")
    if diff is None:
        print("no adapter was logged for this learner: nothing to compare")
    else:
        print(f"max abs difference to the recorded adapter: {diff:.3g}")
    return 0


def run_config(tracker: Store, evolution: str, state_dir: str) -> RunConfig:
    """The evolution's config: its saved state copy, else the `config.yaml` artifact in the store."""
    from evolve.config import from_dict
    from evolve.config_files import load_yaml

    local = Path(state_dir) / evolution / "config.yaml"
    if local.is_file():
        return from_dict(load_yaml(local.read_text()))
    with tempfile.TemporaryDirectory() as tmp:
        path = tracker.client.download_artifacts(evolution, "config.yaml", tmp)
        return from_dict(load_yaml(Path(path).read_text()))


def replay(tracker: Store, evolution: str, learner: str, out: Path, state_dir: str) -> float | None:
    """Re-train `learner`'s ancestry, export its adapter to `out`; max abs diff to the logged one."""
    from evolve.basemodel import resolve_base
    from evolve.train import export_adapter

    cfg, state = replay_state(tracker, evolution, learner, state_dir)
    export_adapter(str(resolve_base(cfg.base)), state, out)
    rec = next(r for r in tracker.load_records(evolution, curves=False) if r.learner_id == learner)
    if rec.run_id is None or tracker.client.get_run(rec.run_id).data.tags.get(
            "evolve.has_adapter") != "true":
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return adapter_diff(tracker.download_adapter(rec.run_id, tmp), out)


def replay_state(tracker: Store, evolution: str, learner: str, state_dir: str,
                 ) -> tuple[RunConfig, LearnerState]:
    """(the run's config, `learner`'s final LearnerState re-trained from its ancestry alone)."""
    from evolve.basemodel import resolve_base
    from evolve.generation import (
        Member,
        build_streams,
        draw_items,
        group_of,
        make_job,
    )
    from evolve.genome import Genome
    from evolve.operators.decisions import adapter_plan
    from evolve.records import learner_index
    from evolve.train import child_state, train_group

    cfg = run_config(tracker, evolution, state_dir)
    base = str(resolve_base(cfg.base))
    records = {r.learner_id: r for r in tracker.load_records(evolution, curves=False)}
    items = draw_items(cfg)
    done: dict[str, LearnerState] = {}

    def final_state(lid: str) -> LearnerState:
        if lid in done:
            return done[lid]
        rec = records[lid]
        genome = Genome.from_params(rec.genome)
        state = None
        if rec.operator != "init" and cfg.inheritance == "lamarckian":
            merge, noise = adapter_plan(rec.decisions)
            state = child_state(genome, list(rec.parents), merge, noise,
                                {p: final_state(p) for p in rec.parents})
        plans = build_streams(cfg, [Member(lid, genome, state)], rec.generation)
        # the group it trained in gives the job seed
        group = group_of(learner_index(lid), cfg.population, cfg.groups)
        res = train_group(make_job(cfg, base, plans, items, rec.generation, group, assess=False))
        done[lid] = res.final_states[0]
        return done[lid]

    if learner not in records:
        raise EvolveError(f"no learner {learner!r} in evolution {evolution}")
    return cfg, final_state(learner)


def adapter_diff(a: Path, b: Path) -> float:
    """Largest absolute difference between two PEFT adapters' tensors (same keys required)."""
    from safetensors.torch import load_file

    ta, tb = (load_file(str(Path(d) / "adapter_model.safetensors")) for d in (a, b))
    if set(ta) != set(tb):
        return float("inf")
    return max(float((ta[k].float() - tb[k].float()).abs().max()) for k in ta)
