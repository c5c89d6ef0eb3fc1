"""`evolve base build`: rebuild the embedded default base from its recipe and compare it with the
weights shipped in the package (`evolve/embedded_base/`); `--ship` replaces those."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

HELP = "rebuild the embedded base model from its recipe and compare it with the shipped weights"


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="pretrain the embedded base from its recipe (about 5 min on "
                                     "2 free cores) and compare it with the shipped weights",
                       description="Pretrain the embedded base from its recipe (docs/base-model.md)"
                                   " and say whether it is bitwise the shipped weights.")
    b.add_argument("--out", metavar="DIR",
                   help="write the rebuilt base here (default: a temporary directory, removed "
                        "after the comparison)")
    b.add_argument("--ship", action="store_true",
                   help="replace the weights shipped in the package with the rebuild, with a new "
                        "manifest (for a changed recipe; commit evolve/embedded_base/ after)")
    b.add_argument("--check", action="store_true",
                   help="exit 1 when the rebuild differs from the shipped weights")
    b.add_argument("--json", action="store_true", help="print the comparison as JSON")
    sub.add_parser("show", help="where the shipped base is, its cache key and who built it")


def main(args: argparse.Namespace) -> int:
    from evolve import shipped_base
    from evolve.basemodel import CorpusSpec, cache_key
    from learners.base import BaseConfig

    key = cache_key(BaseConfig(), CorpusSpec())
    doc = shipped_base.manifest()
    if args.action == "show":
        state = "none shipped" if doc is None else \
            ("current" if doc["key"] == key else f"stale (built for key {doc['key']})")
        print(f"shipped base: {shipped_base.SHIPPED_DIR} ({state}); recipe key {key}")
        if doc:
            print(json.dumps(doc["built_on"]))
        return 0
    return build(args, key, doc)


def build(args: argparse.Namespace, key: str, doc: dict[str, object] | None) -> int:
    from common.errors import EvolveError
    from evolve import shipped_base
    from evolve.basemodel import CorpusSpec, build_default
    from learners.base import BaseConfig

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="evolve-base-"))
    if args.out and out.exists() and any(out.iterdir()):
        raise EvolveError(f"--out {out} is not empty; pass a new or empty directory")
    try:
        t0 = time.perf_counter()
        build_default(out, BaseConfig(), CorpusSpec(), progress=sys.stderr.isatty())
        seconds = time.perf_counter() - t0
        result: dict[str, object] = {"key": key, "seconds": round(seconds, 1),
                                     "machine": shipped_base.machine()}
        if doc is not None and doc["key"] == key:
            result.update(shipped_base.compare(out))
        else:
            result["identical"] = None  # nothing to compare with: no current shipped base
        if args.ship:
            shipped = shipped_base.SHIPPED_DIR
            shipped.mkdir(exist_ok=True)
            for f in shipped_base.FILES:
                shutil.copyfile(out / f, shipped / f)
            shipped_base.write_manifest(shipped, key)
            result["shipped_to"] = str(shipped)
    finally:
        if not args.out:
            shutil.rmtree(out, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(_verdict(result))
    return 1 if args.check and result.get("identical") is False else 0


def _verdict(r: dict[str, object]) -> str:
    head = f"rebuilt the embedded base (key {r['key']}) in {r['seconds']} s"
    if r.get("identical") is None:
        what = "no shipped base of this recipe to compare with"
    elif r["identical"]:
        what = f"bitwise identical to the shipped weights (sha256 {str(r['built_sha256'])[:16]}...)"
    else:
        what = (f"DIFFERS from the shipped weights: {r['tensors_differing']} of {r['tensors']} "
                f"tensors, max abs difference {r['max_abs_diff']:.3g} (another CPU or math "
                "library rounds differently; docs/base-model.md)")
    tail = f"\nshipped to {r['shipped_to']}" if r.get("shipped_to") else ""
    return f"{head}: {what}{tail}"
