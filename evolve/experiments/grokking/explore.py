"""Looking for a grokking setting fast: one `Population` of LoRA learners on a frozen base, trained
directly (no evolution, no tracking) for many passes over one training split of an `op mod p`
table, with train and holdout accuracy printed every `--every` passes (the tables of
docs/experiments.md "Grokking inside evolution" were made this way).

    python -m evolve.experiments.grokking.explore --base DIR --op sub --p 23 --fraction 0.6 \
        --passes 600 --every 10 1e-3:1:32 3e-3:3:32:64:2

A learner is `lr:weight_decay:rank[:alpha[:init_scale]]` (alpha default 2 x rank, init_scale 0);
LoRA on all seven Llama linear layers unless `--targets`, gradient clipping `--clip` (default 1,
0 = off), AdamW beta2 `--beta2`, batch `--batch` (0 = full batch), the split and the pass orders
seeded, `--parts embed,head,norm` (whole modules each learner trains too, learners/parts.py).
Holdout: up to 256 of the cells not trained on. At the end
each learner's verdict from the evolution's own detector (fitness/signals/generalisation.py, window
10 probes): the pass where it memorised (train >= 0.9) and, if holdout's 10-probe mean then jumped
by > 0.2, the pass where it grokked and the jump's midpoint. `--verdict LOG` prints the same
verdicts for a saved output of this script.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from learners.population import LearnerSpec

ALL = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
Row = tuple[int, list[float], list[float]]   # pass, train accuracy and holdout accuracy per learner
_PASS = re.compile(r"^pass\s+(\d+) t=\s*\d+s ((?:[\d.]+/[\d.]+ ?)+)$")


def spec_of(text: str, targets: tuple[str, ...]) -> LearnerSpec:
    """`lr:wd:rank[:alpha[:init_scale]]` -> a LearnerSpec."""
    from learners.population import LearnerSpec

    lr, wd, rank, *rest = text.split(":")
    return LearnerSpec(lr=float(lr), weight_decay=float(wd), rank=int(rank),
                       alpha=float(rest[0]) if rest else 2.0 * int(rank), dropout=0.0, seed=1,
                       target_modules=targets,
                       init_scale=float(rest[1]) if len(rest) > 1 else 0.0)


def split(op: str, p: int, fraction: float, canonical: bool = False, seed: int = 0
          ) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The table of `op mod p` (canonical: only a <= b) shuffled by `seed`: the first `fraction`
    trained, up to 256 of the rest held out; (prompt, answer) pairs."""
    from curricula.families.modular import Modular

    table = Modular(p=p, ops=[op], canonical=canonical).table(op)
    random.Random(seed).shuffle(table)
    n = round(fraction * len(table))
    return ([(i.prompt, i.answer) for i in table[:n]],
            [(i.prompt, i.answer) for i in table[n:][:256]])


def explore(base: Path, op: str, p: int, fraction: float, passes: int, learners: Sequence[str],
            batch: int = 32, every: int = 10, targets: str = ALL, seed: int = 0,
            log: Callable[[str], None] | None = None, clip: float | None = 1.0,
            betas: tuple[float, float] = (0.9, 0.999), canonical: bool = False,
            parts: Sequence[str] = ()) -> list[Row]:
    """Train the learners; returns (pass, train acc, holdout acc) every `every` passes from 0.
    `batch` 0 = the whole training split per step; `clip` None = no gradient clipping;
    `canonical`: only cells with a <= b, so no held-out cell has its mirror trained."""
    from learners.base import load_base
    from learners.population import Population

    log = log or (lambda msg: print(msg, flush=True))
    model, tok = load_base(base)
    train, hold = split(op, p, fraction, canonical, seed)
    tm = tuple(targets.split(","))
    specs = [replace(spec_of(s, tm), max_grad_norm=clip) for s in learners]
    pop = Population(model, tok, specs, target_modules=tm, betas=betas, modules_to_save=parts)
    batch = batch or len(train)
    log(f"train {len(train)} hold {len(hold)} learners {' '.join(learners)} "
        f"parts {','.join(parts) or '-'}")
    t0, rows = time.time(), []
    for e in range(passes + 1):
        if e:
            order = train[:]
            random.Random(seed * 100_003 + e).shuffle(order)
            for i in range(0, len(order), batch):
                pop.train_step([order[i:i + batch]] * pop.P)
        if e % every == 0:
            tr = [float(x) for x in pop.probe(train).correct.mean(1)]
            ho = [float(x) for x in pop.probe(hold).correct.mean(1)]
            rows.append((e, tr, ho))
            log(probe_line(e, time.time() - t0, tr, ho))
    for i, line in enumerate(verdicts(rows)):
        log(f"{learners[i]}: {line}")
    return rows


def probe_line(e: int, seconds: float, tr: Sequence[float], ho: Sequence[float]) -> str:
    """One probe of a log: `pass E t=Ss train/holdout ...` per learner (what `parse_log` reads)."""
    return f"pass {e:4d} t={seconds:5.0f}s " + " ".join(
        f"{a:.2f}/{b:.2f}" for a, b in zip(tr, ho, strict=True))


def parse_log(text: str) -> list[Row]:
    """The probe rows of a saved `explore` output (other lines are skipped)."""
    rows = []
    for line in text.splitlines():
        if m := _PASS.match(line.strip()):
            pairs = [tuple(float(x) for x in c.split("/")) for c in m.group(2).split()]
            rows.append((int(m.group(1)), [a for a, _ in pairs], [b for _, b in pairs]))
    return rows


def verdicts(rows: Sequence[Row]) -> list[str]:
    """Per learner: where it memorised and whether (and where) the grokking detector fired."""
    from fitness.signals.generalisation import grok_indices

    out = []
    for k in range(len(rows[0][1]) if rows else 0):
        tr, ho = [r[1][k] for r in rows], [r[2][k] for r in rows]
        m, j, o = grok_indices(tr, ho)
        text = "never memorised" if m is None else f"memorised at pass {rows[m][0]}"
        if j is None:
            text += "; did not grok"
        else:
            text += f"; the grokking detector fired at pass {rows[j][0]}"
            text += " (before memorising: holdout rose with train)" if m is None or m > j else ""
        text += "" if o is None else f" (holdout jump midpoint at pass {rows[o][0]})"
        out.append(f"{text}; end train {tr[-1]:.2f} holdout {ho[-1]:.2f} (best {max(ho):.2f})")
    return out


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--base", type=Path, help="a local causal LM directory (required to train)")
    a.add_argument("--op", default="sub", help="modular op (curricula/families/modular.py)")
    a.add_argument("--p", type=int, default=23, help="modulus (default 23)")
    a.add_argument("--fraction", type=float, default=0.6, help="trained part of the table")
    a.add_argument("--passes", type=int, default=300, help="passes over the training split")
    a.add_argument("--batch", type=int, default=32,
                   help="items per step (default 32; 0 = the whole training split)")
    a.add_argument("--clip", type=float, default=1.0,
                   help="gradient clipping norm per learner (default 1; 0 = off)")
    a.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2 (default 0.999)")
    a.add_argument("--canonical", action="store_true",
                   help="only cells with a <= b (a held-out cell's mirror is never trained)")
    a.add_argument("--every", type=int, default=10, help="passes between probes (default 10)")
    a.add_argument("--targets", default=ALL, help="adapted modules, comma-separated")
    a.add_argument("--parts", default="",
                   help="whole modules each learner also trains, e.g. embed,head,norm")
    a.add_argument("--verdict", type=Path, metavar="LOG",
                   help="only print the detector's verdicts for a saved output of this script")
    a.add_argument("learners", nargs="*", help="lr:weight_decay:rank[:alpha[:init_scale]]")
    g = a.parse_args(argv)
    if g.verdict:
        rows = parse_log(g.verdict.read_text())
        if not rows:
            a.error(f"--verdict {g.verdict}: no 'pass N t=..s train/holdout ...' lines in it")
        for i, line in enumerate(verdicts(rows)):
            print(f"learner {i + 1}: {line}")
        return 0
    if not g.learners or g.base is None:
        a.error("give --base DIR and at least one learner, e.g. 3e-3:1:64 (or --verdict LOG)")
    explore(g.base.expanduser(), g.op, g.p, g.fraction, g.passes, g.learners, g.batch, g.every,
            g.targets, clip=g.clip or None, betas=(0.9, g.beta2), canonical=g.canonical,
            parts=[x for x in g.parts.split(",") if x])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
