"""What keeps a frozen base from grokking: train chosen parts of a local causal LM (the number
base) with full-parameter AdamW, or LoRA on its linear layers plus chosen full parts, on one split
of an `op mod p` table, full batch, and print train / holdout accuracy in `explore`'s format (so
`explore --verdict LOG` reads a saved output and the verdicts come from the evolution's detector).

    python -m evolve.experiments.grokking.ablate --base DIR --op add --p 43 --canonical \
        --train linears,embed,head,norm --reinit --steps 3000

Parts (`--train`, comma-separated): `linears` (every linear layer of the decoder blocks), `embed`
(the input embeddings), `head` (the output head), `norm` (every RMSNorm/LayerNorm weight); the
last three as `training.modules_to_save` names them (learners/parts.py).
`--reinit` redraws the decoder's linear layers at std 1/sqrt(fan_in) first (the number base's are
near zero, std 1e-3, so LoRA products are the network). `--lora R` puts a rank-R LoRA (PEFT's
init, alpha 2R, `--lora-init S` = learners' `init_scale`) on every decoder linear layer; its
factors are trained with the parts named. Weight decay acts on everything trained. Session 12's
tables (docs/experiments.md) were made with this script: the number base groks with every part
trained and not with the embeddings, head or norms frozen.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.errors import EvolveError
from evolve.experiments.grokking.explore import Row, probe_line, split, verdicts

PARTS = ("linears", "embed", "head", "norm")


def parts_of(model: Any) -> dict[int, str]:
    """id(parameter) -> which of PARTS it belongs to: `embed`, `head` and `norm` as
    `training.modules_to_save` resolves them (learners/parts.py), `linears` the weights of the
    other nn.Linear layers. Parameters of no part (LoRA factors, position tables) are absent."""
    import torch

    from learners.parts import resolve_parts

    kinds: dict[int, str] = {}
    for part in ("embed", "head", "norm"):
        for module in resolve_parts(model, [part]).values():
            for w in module.parameters(recurse=False):
                kinds.setdefault(id(w), part)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            kinds.setdefault(id(module.weight), "linears")
    return kinds


def trainable(model: Any, parts: set[str], lora: int, lora_init: float, seed: int
              ) -> tuple[list[Any], dict[str, str]]:
    """Freeze the model but for `parts` (and rank-`lora` adapters on the decoder's linears);
    returns the parameters to train and each named parameter's part."""
    import torch

    from learners.arch import linear_names
    from learners.lora import inject

    if lora:
        gen = torch.Generator().manual_seed(seed)
        for layer in inject(model, linear_names(model), 1, lora).values():
            layer.set_learner(0, lora, 2.0 * lora, 0.0, True)
            layer.reset_learner(0, lora, gen, True, lora_init)
    part = parts_of(model)
    params, kinds = [], {}
    for name, w in model.named_parameters():
        kind = part.get(id(w))
        on = kind in parts or (lora > 0 and "lora_" in name)
        w.requires_grad_(on)
        kinds[name] = kind or "lora"
        if on:
            params.append(w)
    return params, kinds


def ablate(base: Path, op: str, p: int, fraction: float, steps: int, parts: set[str],
           lr: float = 3e-3, weight_decay: float = 1.0, beta2: float = 0.98, every: int = 50,
           reinit: bool = False, lora: int = 0, lora_init: float = 0.0, canonical: bool = False,
           seed: int = 0, log: Callable[[str], None] | None = None,
           clip: float | None = None) -> list[Row]:
    """Train; returns (step, [train acc], [holdout acc]) every `every` steps from 0.
    `clip`: gradient norm clipping over everything trained (None: off)."""
    import torch

    from learners.base import load_base

    log = log or (lambda msg: print(msg, flush=True))
    unknown = sorted(parts - set(PARTS))
    if unknown or not (parts or lora):
        raise EvolveError(f"--train {','.join(sorted(parts))}: name parts from "
                          f"{', '.join(PARTS)} (or give --lora R)")
    torch.manual_seed(seed)
    model, tok = load_base(base)
    model.train()
    if reinit:
        kinds = parts_of(model)
        with torch.no_grad():
            for w in model.parameters():
                if kinds.get(id(w)) == "linears":
                    w.normal_(0.0, w.shape[1] ** -0.5)
    params, _ = trainable(model, parts, lora, lora_init, seed)
    train, hold = split(op, p, fraction, canonical, seed)

    def encode(pairs: list[tuple[str, str]]) -> tuple[Any, Any]:
        ids = [tok.encode(q, add_special_tokens=False) for q, _ in pairs]
        ans = [tok.encode(a, add_special_tokens=False) for _, a in pairs]
        if len({len(i) for i in ids}) != 1 or any(len(a) != 1 for a in ans):
            raise EvolveError(f"--base {base}: prompts must tokenize to one length and answers "
                              "to one token; build a number base (python -m "
                              "evolve.experiments.grokking.number_base)")
        return torch.tensor(ids), torch.tensor([a[0] for a in ans])

    tr, ho = encode(train), encode(hold)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))

    def accuracy(data: tuple[Any, Any]) -> float:
        with torch.no_grad():
            return float((model(data[0]).logits[:, -1].argmax(-1) == data[1]).float().mean())

    log(f"train {len(train)} hold {len(hold)} parts {','.join(sorted(parts)) or '-'} "
        f"lora {lora} lr {lr} wd {weight_decay} clip {clip}")
    t0, rows = time.time(), []
    for step in range(steps + 1):
        if step % every == 0:
            a, b = accuracy(tr), accuracy(ho)
            rows.append((step, [a], [b]))
            log(probe_line(step, time.time() - t0, [a], [b]))
        if step < steps:
            loss = torch.nn.functional.cross_entropy(model(tr[0]).logits[:, -1], tr[1])
            if not torch.isfinite(loss):
                log(f"step {step}: loss {float(loss)}; stopped (the run diverged)")
                break
            opt.zero_grad()
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
    log(f"verdict: {verdicts(rows)[0]}")
    return rows


def main(argv: list[str] | None = None) -> int:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--base", type=Path, required=True, help="a local causal LM (a number base)")
    a.add_argument("--op", default="add", help="modular op (default add)")
    a.add_argument("--p", type=int, default=43, help="modulus (default 43)")
    a.add_argument("--canonical", action="store_true", help="only cells with a <= b")
    a.add_argument("--fraction", type=float, default=0.5, help="trained part of the table")
    a.add_argument("--steps", type=int, default=3000, help="full-batch AdamW steps")
    a.add_argument("--train", default="", help=f"parts trained, comma-separated: {','.join(PARTS)}")
    a.add_argument("--reinit", action="store_true",
                   help="redraw the decoder's linears at std 1/sqrt(fan_in) first")
    a.add_argument("--lora", type=int, default=0, help="rank of LoRA on every decoder linear")
    a.add_argument("--lora-init", type=float, default=0.0, help="LoRA init_scale (0: B = 0)")
    a.add_argument("--lr", type=float, default=3e-3)
    a.add_argument("--wd", type=float, default=1.0, help="AdamW weight decay")
    a.add_argument("--beta2", type=float, default=0.98)
    a.add_argument("--clip", type=float, default=0.0, help="gradient norm clipping (0: off)")
    a.add_argument("--every", type=int, default=50, help="steps between probes")
    a.add_argument("--seed", type=int, default=0, help="split, redraw and LoRA seed")
    g = a.parse_args(argv)
    parts = {x for x in g.train.split(",") if x}
    try:
        ablate(g.base.expanduser(), g.op, g.p, g.fraction, g.steps, parts, g.lr, g.wd, g.beta2,
               g.every, g.reinit, g.lora, g.lora_init, g.canonical, g.seed, clip=g.clip or None)
    except EvolveError as e:
        a.error(str(e))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
