"""The embedded default base model: built once from the curricula's pretraining items, then cached.

No model hub is reachable, so the project pretrains its own ~1.1 M-parameter Llama-style model on a
procedural mix (`pretrain_items` of modular add/mul, addition, rpn, parens, strings and the facts
prior) so that it knows the formats, solves some families partly and is confidently wrong on the
counterfactual facts. This module is the one place that needs both `curricula` and `learners`.

Cache: `$EVOLVE_CACHE` else `~/.cache/evolve`, one subdirectory per hash of (BaseConfig, corpus
spec, FORMAT_VERSION). A build writes into a temporary sibling and renames it into place, so a
killed build never leaves a half-written base that a later run would trust.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.cache import cache_root
from common.errors import EvolveError
from learners.base import BaseConfig

FORMAT_VERSION = 2  # bump when the recipe changes in a way the hash below cannot see
# 2: packed shares on two Python threads + fused AdamW (1 was one padded batch, foreach AdamW)
FAMILIES_MIX = ("modular", "addition", "rpn", "parens", "strings", "facts")
TMP_PREFIX = ".building-"


@dataclass(frozen=True)
class CorpusSpec:
    """What the default base is pretrained on, and how long (every field goes into the cache key)."""

    families: tuple[str, ...] = FAMILIES_MIX  # each with its default parameters
    per_family: int = 20_000   # pretrain_items per family; facts cycles its 600 priors ~33 times
    steps: int = 3_000         # AdamW steps of batch_size pairs
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0              # model init, corpus draw and batch order
    eval_items: int = 256      # held-out items per family for report.json


# Wall seconds per pretraining step of the default BaseConfig at batch 64 on a quiet 2-core AMD EPYC
# box (docs/base-model.md): 3,000 steps in 4:42 with both cores free; 175 ms a step pinned to one.
STEP_SECONDS_TWO_CORES, STEP_SECONDS_ONE_CORE = 0.094, 0.175


def build_estimate(cfg: BaseConfig, spec: CorpusSpec) -> str:
    """How long the build will take, from measured step times (the default model size only)."""
    if cfg != BaseConfig():
        return "time depends on the model size"
    lo, hi = (spec.steps * spec.batch_size / 64 * s / 60
              for s in (STEP_SECONDS_TWO_CORES, STEP_SECONDS_ONE_CORE))
    return (f"about {max(1, round(lo))} min on 2 free cores, {max(1, round(hi))} on one, "
            "longer on a busy machine")


def cache_key(cfg: BaseConfig, spec: CorpusSpec) -> str:
    """A short stable hash of everything that determines the built base."""
    blob = json.dumps({"config": dataclasses.asdict(cfg), "corpus": dataclasses.asdict(spec),
                       "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def corpus(spec: CorpusSpec) -> list[tuple[str, str]]:
    """The pretraining pairs: `per_family` items of each family's prior, concatenated."""
    import curricula

    pairs: list[tuple[str, str]] = []
    for name in spec.families:
        fam = curricula.FAMILIES.get(name)()
        pairs += [(it.prompt, it.answer) for it in fam.pretrain_items(spec.per_family, spec.seed)]
    return pairs


def _score(model: Any, tok: Any, pairs: Sequence[tuple[str, str]]) -> tuple[list[bool], list[float]]:
    """Teacher-forced exact-match verdict and answer probability per pair (chunks of 256)."""
    import torch

    from learners.encoding import answer_verdicts, encode_pairs

    correct: list[bool] = []
    prob: list[float] = []
    with torch.no_grad():
        for lo in range(0, len(pairs), 256):
            b = encode_pairs(tok, pairs[lo:lo + 256])
            c, p, _ = answer_verdicts(model(input_ids=b.input_ids,
                                            attention_mask=b.attention_mask).logits, b)
            correct += c.tolist()
            prob += p.tolist()
    return correct, prob


def _mean(xs: Sequence[float]) -> float | None:
    return float(f"{sum(xs) / len(xs):.4g}") if xs else None


def evaluate(model: Any, tok: Any, spec: CorpusSpec) -> dict[str, Any]:
    """Per-family (and per-category) exact-match accuracy on held-out `generate` items, and on the
    counterfactual facts: how often and how confidently the model still answers its prior."""
    import curricula

    out: dict[str, Any] = {"families": {}}
    for name in spec.families:
        fam = curricula.FAMILIES.get(name)()
        items = fam.generate(spec.eval_items, spec.seed + 1)
        ok, prob = _score(model, tok, [(it.prompt, it.answer) for it in items])
        cats: dict[str, list[bool]] = {}
        for it, c in zip(items, ok, strict=True):
            cats.setdefault(it.category, []).append(c)
        out["families"][name] = {"accuracy": _mean(ok), "mean_prob": _mean(prob), "n": len(items),
                                 "categories": {k: _mean(v) for k, v in sorted(cats.items())}}
        if name == "facts":
            out["counterfactual"] = _counterfactual(model, tok, fam.pretrain_items(
                spec.per_family, spec.seed), items)
    return out


def _counterfactual(model: Any, tok: Any, seen: Sequence[Any], items: Sequence[Any]) -> dict[str, Any]:
    """On counterfactual items: accuracy/prob of the new answer vs of the pretrained (prior) one
    that the model saw in `seen` for the same prompt."""
    prior = {it.prompt: it.answer for it in seen}
    cf = [it for it in items if it.category == "counterfactual" and it.prompt in prior]
    ok_new, p_new = _score(model, tok, [(it.prompt, it.answer) for it in cf])
    ok_old, p_old = _score(model, tok, [(it.prompt, prior[it.prompt]) for it in cf])
    return {"n": len(cf), "accuracy": _mean(ok_new), "mean_prob": _mean(p_new),
            "prior_accuracy": _mean(ok_old), "prior_mean_prob": _mean(p_old)}


def build_default(out: Path, cfg: BaseConfig, spec: CorpusSpec, progress: bool = True) -> dict[str, Any]:
    """Build, pretrain, evaluate and save the default base into `out`; returns the report."""
    from learners.base import build_base, one_torch_thread, pretrain, save_base
    from learners.tokenizer import build_char_tokenizer

    t0 = time.perf_counter()
    with one_torch_thread():  # the evaluation too: spin-waiting OpenMP threads (see the function)
        tok = build_char_tokenizer()
        model = build_base(cfg, tok, spec.seed)
        pairs = corpus(spec)
        curve = pretrain(model, tok, pairs, spec.steps, batch_size=spec.batch_size, lr=spec.lr,
                         seed=spec.seed, progress=progress)
        train_s = time.perf_counter() - t0
        report = {"config": dataclasses.asdict(cfg), "corpus": dataclasses.asdict(spec),
                  "format_version": FORMAT_VERSION, "parameters": sum(p.numel() for p in model.parameters()),
                  "pretrain_seconds": round(train_s, 1), "loss_curve": [round(x, 5) for x in curve],
                  **evaluate(model, tok, spec)}
        save_base(model, tok, out)
    report["build_seconds"] = round(time.perf_counter() - t0, 1)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return report


def _clean_stale(root: Path) -> None:
    """Remove temp dirs of builds whose process is gone (killed); a live build's dir is kept."""
    for d in root.glob(TMP_PREFIX + "*"):
        try:
            pid = int(d.name.split("-")[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except (ValueError, IndexError, PermissionError, OSError):
            continue


def default_base(cache_dir: Path | None = None, progress: bool = True, *,
                 config: BaseConfig | None = None, spec: CorpusSpec | None = None) -> Path:
    """The directory of the embedded default base: the cached copy, else the weights shipped in
    the package (`evolve.shipped_base`, when built from this recipe), else built (about 5 minutes).

    `config` / `spec` override the model shape and pretraining recipe (tests use a tiny one).
    """
    cfg, spec = config or BaseConfig(), spec or CorpusSpec()
    root = cache_root(cache_dir)
    key = cache_key(cfg, spec)
    final = root / f"base-{key}"
    if (final / "config.json").is_file() and (final / "report.json").is_file():
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{final.name}.lock").touch()
    except OSError as e:
        raise EvolveError(f"cannot write the base-model cache {root} ({e.strerror}); set "
                          "EVOLVE_CACHE to a writable directory or pass --base PATH") from None
    with _build_lock(root / f"{final.name}.lock"):  # a second process waits, then reuses the build
        if (final / "config.json").is_file() and (final / "report.json").is_file():
            return final
        _clean_stale(root)
        from evolve import shipped_base

        if shipped_base.install(final, key):
            return final  # the package ships this very recipe's weights: copied, no build
        print(f"evolve: building the default base model once ({spec.steps} pretraining steps, "
              f"{build_estimate(cfg, spec)}); caching it in {final}", file=sys.stderr, flush=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{final.name}-{os.getpid()}-", dir=root))
        try:
            build_default(tmp, cfg, spec, progress)
            try:
                tmp.rename(final)
            except OSError:  # a process without the lock (older code) finished first: keep theirs
                if not (final / "report.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@contextmanager
def _build_lock(path: Path) -> Iterator[None]:
    """An exclusive `flock` on `path`; the kernel releases it if the holder is killed."""
    import fcntl

    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"evolve: waiting for another process building the base in {path.parent}",
                  file=sys.stderr, flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_base(path: str | Path | None, targets: Sequence[str] = (),
                 parts: Sequence[str] = ()) -> Path:
    """The base directory `path` names (`smollm2`, `FILE.gguf` converted once and cached, or a
    directory; `learners.resolve`), checked with `load_base` (one-line EvolveError if it is not a
    causal LM), or the default base when `path` is None or empty. `targets`: LoRA target module
    names the run may use; one that matches no linear module of the model is a one-line
    EvolveError listing the names it has (learners/arch.py resolves q_proj/k_proj/v_proj on
    fused-qkv models). `parts`: the modules learners train whole (training.modules_to_save,
    learners/parts.py), checked the same way."""
    from learners.arch import check_targets
    from learners.base import load_base
    from learners.parts import resolve_parts
    from learners.resolve import resolve

    p = default_base() if not path else resolve(path)
    if path or targets or parts:
        model, _ = load_base(p)
        try:
            check_targets(model, list(dict.fromkeys(targets)))
        except ValueError as e:
            raise EvolveError(f"--base {p}: {e} (set genome.target_modules in the config)") from None
        try:
            resolve_parts(model, parts)
        except ValueError as e:
            raise EvolveError(f"--base {p}: {e} (set training.modules_to_save in the config)"
                              ) from None
    return p
