"""Trajectory files: the adaptible checkpoint format (read) and our own JSON format (read, write).

adaptible (`../shared/reference/adaptible_meta_experiment.json`): `{"trajectories": {seed:
{"seed", "checkpoints": [{"step", "improved_ids", "retained_ids", "regressed_ids", "stuck_ids"},
...]}}}`. Only the id lists are read: an item's baseline is "right" when it is retained or
regressed, it is correct at a checkpoint when improved or retained, and its window is the checkpoint
where it first appears. The stored rates, scores and accuracies are ignored on purpose.

evolve (written by the engine, `save_evolve`)::

    {"format": "evolve-trajectories", "version": 1,
     "trajectories": [{"learner_id": "g0-l3", "steps": [16, 32, ...], "failed": false,
        "items": {"modadd_97_013_044": {"baseline": false, "window": 0,
                                         "correct": [true, null, ...],
                                         "confidence": [0.8, null, ...]}},
        "holdout": {"ids": [...], "baseline": [...], "correct": [[...] per checkpoint],
                    "confidence": [[...] per checkpoint]},
        "spectral": {...} or null}]}

`null` in `correct` / `confidence` = not probed at that checkpoint. Non-finite floats are written as
null. Any problem → ValueError with one line naming the file and what is missing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from fitness.trajectory import Trajectory, check

FORMAT = "evolve-trajectories"
VERSION = 1
KINDS = ("improved", "retained", "regressed", "stuck")


def read_json(path: str | Path) -> Any:
    """Parsed JSON, or a one-line ValueError naming the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file; pass a trajectory JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: cannot read it ({type(exc).__name__}); pass a UTF-8 JSON "
                         "file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno} column "
                         f"{exc.colno})") from None


def detect(data: Any) -> str | None:
    """"evolve", "adaptible" or None for parsed JSON."""
    if isinstance(data, dict) and data.get("format") == FORMAT:
        return "evolve"
    if isinstance(data, dict) and "format" not in data and "trajectories" in data:
        return "adaptible"   # its own parser names whatever is missing inside
    return None


def load(path: str | Path, fmt: str | None = None) -> list[Trajectory]:
    """Trajectories from `path` in format `fmt` ("adaptible" / "evolve"; None: detect it)."""
    data = read_json(path)
    fmt = fmt or detect(data)
    if fmt == "adaptible":
        return parse_adaptible(data, str(path))
    if fmt == "evolve":
        return parse_evolve(data, str(path))
    if fmt is None:
        raise ValueError(f"{path}: neither an evolve trajectory file (\"format\": \"{FORMAT}\") "
                         "nor an adaptible run (trajectories -> checkpoints); pass --format")
    raise ValueError(f"unknown trajectory format {fmt!r}; valid: adaptible, evolve")


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise ValueError(f"{where}: {what}")


# --- adaptible ------------------------------------------------------------------------------


def load_adaptible(path: str | Path) -> list[Trajectory]:
    """One Trajectory per seed of an adaptible meta-experiment file, from the id lists alone."""
    return parse_adaptible(read_json(path), str(path))


def parse_adaptible(data: Any, name: str = "<adaptible>") -> list[Trajectory]:
    _need(isinstance(data, dict) and isinstance(data.get("trajectories"), (dict, list)), name,
          "missing the 'trajectories' object (seed -> {checkpoints: [...]})")
    entries = data["trajectories"]
    pairs = list(entries.items()) if isinstance(entries, dict) else list(enumerate(entries))
    _need(bool(pairs), name, "'trajectories' is empty")
    return [_adaptible_one(t, str(key), name) for key, t in pairs]


def _adaptible_one(t: Any, key: str, name: str) -> Trajectory:
    where = f"{name}: trajectories[{key}]"
    _need(isinstance(t, dict) and isinstance(t.get("checkpoints"), list), where,
          "missing the 'checkpoints' list")
    cps = t["checkpoints"]
    for j, cp in enumerate(cps):
        _need(isinstance(cp, dict) and isinstance(cp.get("step"), int), where,
              f"checkpoint {j} is missing an integer 'step'")
        for kind in KINDS:
            _need(isinstance(cp.get(f"{kind}_ids"), list), where,
                  f"checkpoint {j} (step {cp['step']}) is missing the '{kind}_ids' list")
    cps = sorted(cps, key=lambda c: c["step"])
    K = len(cps)
    baseline: dict[str, bool] = {}
    window: dict[str, int] = {}
    correct: dict[str, list[bool | None]] = {}
    for k, cp in enumerate(cps):
        seen: set[str] = set()
        for kind in KINDS:
            for item in cp[f"{kind}_ids"]:
                item = str(item)
                _need(item not in seen, where,
                      f"item {item!r} is listed twice at step {cp['step']}")
                seen.add(item)
                base = kind in ("retained", "regressed")
                if item not in baseline:
                    baseline[item], window[item] = base, k
                    correct[item] = [None] * K
                _need(baseline[item] == base, where,
                      f"item {item!r} is {kind} at step {cp['step']} but its baseline was "
                      f"{'right' if baseline[item] else 'wrong'} earlier")
                correct[item][k] = kind in ("improved", "retained")
    traj = Trajectory(learner_id=str(t.get("seed", key)), steps=[int(c["step"]) for c in cps],
                      baseline=baseline, window=window, correct=correct,
                      confidence={i: [None] * K for i in correct})
    check(traj)
    return traj


# --- evolve ---------------------------------------------------------------------------------


def _clean(x: Any) -> Any:
    """JSON-ready copy: non-finite floats -> None, tuples -> lists, numpy scalars -> Python."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, (str, bytes)):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def to_dict(traj: Trajectory) -> dict[str, Any]:
    """One trajectory in the evolve JSON layout."""
    return _clean({
        "learner_id": traj.learner_id, "steps": list(traj.steps), "failed": bool(traj.failed),
        "items": {i: {"baseline": bool(traj.baseline.get(i, False)), "window": traj.window.get(i),
                      **({"initial": bool(traj.initial[i])} if i in traj.initial else {}),
                      "correct": traj.correct[i],
                      "confidence": traj.confidence.get(i, [None] * traj.K)}
                  for i in traj.correct},
        "holdout": {"ids": traj.holdout_ids, "baseline": traj.holdout_baseline,
                    "correct": traj.holdout_correct, "confidence": traj.holdout_confidence,
                    "self_confidence": traj.holdout_self_confidence},
        "spectral": traj.spectral})


def save_evolve(trajs: list[Trajectory], path: str | Path) -> Path:
    """Write `trajs` as an evolve trajectory file; returns the path."""
    doc = {"format": FORMAT, "version": VERSION, "trajectories": [to_dict(t) for t in trajs]}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    return p


def load_evolve(path: str | Path) -> list[Trajectory]:
    """Trajectories from an evolve trajectory file."""
    return parse_evolve(read_json(path), str(path))


def parse_evolve(data: Any, name: str = "<evolve>") -> list[Trajectory]:
    _need(isinstance(data, dict) and data.get("format") == FORMAT, name,
          f"missing \"format\": \"{FORMAT}\"")
    _need(data.get("version") == VERSION, name,
          f"version {data.get('version')!r} unsupported; this reader knows version {VERSION}")
    _need(isinstance(data.get("trajectories"), list), name, "missing the 'trajectories' list")
    return [_evolve_one(t, j, name) for j, t in enumerate(data["trajectories"])]


def _evolve_one(t: Any, j: int, name: str) -> Trajectory:
    where = f"{name}: trajectories[{j}]"
    _need(isinstance(t, dict), where, "is not an object")
    for key, typ in (("learner_id", str), ("steps", list), ("items", dict)):
        _need(isinstance(t.get(key), typ), where, f"missing '{key}' ({typ.__name__})")
    K = len(t["steps"])
    items = t["items"]
    for i, it in items.items():
        _need(isinstance(it, dict) and isinstance(it.get("correct"), list)
              and isinstance(it.get("window"), int) and isinstance(it.get("baseline"), bool),
              where, f"item {i!r} needs 'baseline' (bool), 'window' (int) and 'correct' (list)")
    hold = t.get("holdout") or {}
    _need(isinstance(hold, dict), where, "'holdout' must be an object")
    traj = Trajectory(
        learner_id=t["learner_id"], steps=[int(s) for s in t["steps"]],
        baseline={i: it["baseline"] for i, it in items.items()},
        window={i: it["window"] for i, it in items.items()},
        correct={i: list(it["correct"]) for i, it in items.items()},
        confidence={i: list(it.get("confidence") or [None] * K) for i, it in items.items()},
        holdout_ids=list(hold.get("ids") or []), holdout_baseline=list(hold.get("baseline") or []),
        holdout_correct=[list(r) for r in hold.get("correct") or []],
        holdout_confidence=[list(r) for r in hold.get("confidence") or []],
        holdout_self_confidence=[list(r) for r in hold.get("self_confidence") or []],
        failed=bool(t.get("failed", False)), spectral=t.get("spectral"),
        initial={i: bool(it["initial"]) for i, it in items.items()
                 if isinstance(it.get("initial"), bool)})
    try:
        check(traj)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return traj
