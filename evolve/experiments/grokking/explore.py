"""Looking for a grokking setting fast: one `Population` of LoRA learners on a frozen base, trained
directly (no evolution, no tracking) for many passes over one training split of an `op mod p`
table, with train and holdout accuracy printed every `--every` passes (the tables of
docs/experiments.md "Grokking inside evolution" were made this way).

    python -m evolve.experiments.grokking.explore --base DIR --op sub --p 23 --fraction 0.6 \
        --passes 600 --every 10 1e-3:1:32 3e-3:3:32:64:2

A learner is `lr:weight_decay:rank[:alpha[:init_scale]]` (alpha default 2 x rank, init_scale 0);
LoRA on all seven Llama linear layers unless `--targets`, gradient clipping 1, batch `--batch`,
the split and the pass orders seeded. Holdout: up to 256 of the cells not trained on.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from learners.population import LearnerSpec

ALL = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
Row = tuple[int, list[float], list[float]]   # pass, train accuracy and holdout accuracy per learner


def spec_of(text: str, targets: tuple[str, ...]) -> LearnerSpec:
    """`lr:wd:rank[:alpha[:init_scale]]` -> a LearnerSpec."""
    from learners.population import LearnerSpec

    lr, wd, rank, *rest = text.split(":")
    return LearnerSpec(lr=float(lr), weight_decay=float(wd), rank=int(rank),
                       alpha=float(rest[0]) if rest else 2.0 * int(rank), dropout=0.0, seed=1,
                       target_modules=targets,
                       init_scale=float(rest[1]) if len(rest) > 1 else 0.0)


def explore(base: Path, op: str, p: int, fraction: float, passes: int, learners: Sequence[str],
            batch: int = 32, every: int = 10, targets: str = ALL, seed: int = 0,
            log: Callable[[str], None] | None = None, clip: float | None = 1.0,
            betas: tuple[float, float] = (0.9, 0.999)) -> list[Row]:
    """Train the learners; returns (pass, train acc, holdout acc) every `every` passes from 0.
    `batch` 0 = the whole training split per step; `clip` None = no gradient clipping."""
    from curricula.families.modular import Modular
    from learners.base import load_base
    from learners.population import Population

    log = log or (lambda msg: print(msg, flush=True))
    model, tok = load_base(base)
    table = Modular(p=p, ops=[op]).table(op)
    random.Random(seed).shuffle(table)
    n = round(fraction * len(table))
    train = [(i.prompt, i.answer) for i in table[:n]]
    hold = [(i.prompt, i.answer) for i in table[n:][:256]]
    tm = tuple(targets.split(","))
    specs = [replace(spec_of(s, tm), max_grad_norm=clip) for s in learners]
    pop = Population(model, tok, specs, target_modules=tm, betas=betas)
    batch = batch or len(train)
    log(f"train {len(train)} hold {len(hold)} learners {' '.join(learners)}")
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
            log(f"pass {e:4d} t={time.time() - t0:5.0f}s "
                + " ".join(f"{a:.2f}/{b:.2f}" for a, b in zip(tr, ho, strict=True)))
    return rows


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--base", type=Path, required=True, help="a local causal LM directory")
    a.add_argument("--op", default="sub", help="modular op (curricula/families/modular.py)")
    a.add_argument("--p", type=int, default=23, help="modulus (default 23)")
    a.add_argument("--fraction", type=float, default=0.6, help="trained part of the table")
    a.add_argument("--passes", type=int, default=300, help="passes over the training split")
    a.add_argument("--batch", type=int, default=32,
                   help="items per step (default 32; 0 = the whole training split)")
    a.add_argument("--clip", type=float, default=1.0,
                   help="gradient clipping norm per learner (default 1; 0 = off)")
    a.add_argument("--beta2", type=float, default=0.999, help="AdamW beta2 (default 0.999)")
    a.add_argument("--every", type=int, default=10, help="passes between probes (default 10)")
    a.add_argument("--targets", default=ALL, help="adapted modules, comma-separated")
    a.add_argument("learners", nargs="+", help="lr:weight_decay:rank[:alpha[:init_scale]]")
    g = a.parse_args(argv)
    explore(g.base.expanduser(), g.op, g.p, g.fraction, g.passes, g.learners, g.batch, g.every,
            g.targets, clip=g.clip or None, betas=(0.9, g.beta2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
