"""The grokking setting: `a+b mod p`, an embedding + MLP trained full batch, and a `Trainer` that
can be advanced, probed, re-tuned (weight decay, learning rate) and continued (warm starts).

Every probe records, on the training and validation pairs: loss, accuracy, the mean probability
of the true answer (`*_conf`), the mean self-confidence (`val_self`: probability of the model's own
argmax answer, DESIGN.md) and its margin (`val_margin`: top-two logit gap), the weight norm, the
current weight decay and learning rate, and (every `alpha_every` probes) the layers' mean
weightwatcher alpha (`fitness.spectral`; None where not fitted at that probe).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.errors import EvolveError

HISTORY = ("step", "train_loss", "train_acc", "train_conf", "val_loss", "val_acc", "val_conf",
           "val_self", "val_margin", "weight_norm", "alpha", "weight_decay", "lr", "seconds")


@dataclass
class GrokConfig:
    """One run. Defaults are the canonical full run (p 97; about 4,000 steps to generalise)."""

    p: int = 97                    # modulus: p*p pairs (a, b)
    train_fraction: float = 0.4    # of the table trained on; the rest is the validation set
    steps: int = 8000              # at most; stops once validation accuracy holds stop_accuracy
    lr: float = 1e-3
    weight_decay: float = 1.0      # AdamW's decoupled decay; ~1 is what makes it grok
    optimizer: str = "adamw"       # adamw | adam (no decay) | sgd (momentum 0.9, coupled decay)
    beta1: float = 0.9
    beta2: float = 0.98
    embed_dim: int = 128           # 2 tokens x 128 -> hidden 512 -> p
    hidden: int = 512
    probe_every: int = 50          # steps between probes
    alpha_every: int = 1           # probes between weightwatcher fits (0: never)
    seed: int = 0
    threshold: float = 0.2         # grokking detector: window-mean jump of validation accuracy
    window: int = 10               # ... over this many probes
    stop_accuracy: float = 0.99    # stop when validation accuracy held this for `window` probes

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise EvolveError(msg)

        need(self.p >= 5, f"--p {self.p} is too small; pass a modulus of at least 5 (97 is canonical)")
        need(0.05 <= self.train_fraction <= 0.95,
             f"--train-fraction {self.train_fraction} is outside [0.05, 0.95]; 0.3-0.7 groks")
        need(self.steps >= 1, f"--steps {self.steps}; pass a positive number of training steps")
        need(self.probe_every >= 1, f"--probe-every {self.probe_every}; pass at least 1 (steps)")
        need(self.weight_decay >= 0, f"--weight-decay {self.weight_decay} < 0; pass 0 or more")
        need(self.lr > 0, f"lr {self.lr} must be > 0")
        need(self.optimizer in ("adamw", "adam", "sgd"),
             f"optimizer {self.optimizer!r}; pass adamw, adam or sgd")
        need(self.window >= 1 and self.threshold > 0, "detector window >= 1 and threshold > 0")


# The small setting every study runs (and the single run of --quick): p 31, lr 1e-2, a 4x
# narrower model; memorised within ~50 steps, generalised after a few hundred to a few thousand
# steps depending on the training fraction and weight decay (a few ms a step on one thread).
SMALL: dict[str, Any] = dict(p=31, train_fraction=0.5, lr=1e-2, embed_dim=64, hidden=128,
                             steps=3000, probe_every=40)


def make_split(cfg: GrokConfig) -> tuple[Any, Any, Any, Any]:
    """All p*p pairs split by the seed: (x_train [N,2] long, y_train [N], x_val [M,2], y_val [M])."""
    import torch

    a, b = torch.meshgrid(torch.arange(cfg.p), torch.arange(cfg.p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % cfg.p
    perm = torch.randperm(cfg.p * cfg.p, generator=torch.Generator().manual_seed(cfg.seed))
    n = int(round(cfg.train_fraction * cfg.p * cfg.p))
    tr, va = perm[:n], perm[n:]
    return x[tr], y[tr], x[va], y[va]


def build_model(cfg: GrokConfig) -> Any:
    """Embedding [p, d] of both operands, concatenated [N, 2d] -> Linear -> ReLU -> Linear [N, p]."""
    import torch
    from torch import nn

    torch.manual_seed(cfg.seed)
    return nn.Sequential(nn.Embedding(cfg.p, cfg.embed_dim), nn.Flatten(1),
                         nn.Linear(2 * cfg.embed_dim, cfg.hidden), nn.ReLU(),
                         nn.Linear(cfg.hidden, cfg.p))


def layer_matrices(model: Any) -> dict[str, Any]:
    """The weight matrices weightwatcher fits: name -> [out, in] (the embedding as [p, d])."""
    return {"embed": model[0].weight.detach().clone(), "fc1": model[2].weight.detach().clone(),
            "fc2": model[4].weight.detach().clone()}


def spectral_alpha(model: Any) -> tuple[float | None, dict[str, float | None]]:
    """(mean alpha, layer name -> alpha) from `fitness.spectral` (the only weightwatcher user)."""
    from fitness.spectral import spectral

    res = spectral(layer_matrices(model))
    return res["mean_alpha"], {name: row["alpha"] for name, row in res["layers"].items()}


def make_optimizer(cfg: GrokConfig, params: Any) -> Any:
    import torch

    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                             betas=(cfg.beta1, cfg.beta2))


Controller = Callable[[dict[str, list[Any]]], dict[str, float] | None]


class Trainer:
    """One model, its optimiser and data, and the probe history; `advance` continues training."""

    def __init__(self, cfg: GrokConfig) -> None:
        import torch

        torch.set_num_threads(1)   # spin-waiting OpenMP threads crawl on a busy box (docs/measurements.md)
        self.cfg = cfg
        self.xtr, self.ytr, self.xva, self.yva = make_split(cfg)
        self.model = build_model(cfg)
        self.opt = make_optimizer(cfg, self.model.parameters())
        self.hist: dict[str, list[Any]] = {k: [] for k in HISTORY}
        self.layer_alpha: list[dict[str, float | None]] = []
        self.step = 0
        self.t0 = time.perf_counter()

    @property
    def parameters(self) -> int:
        return sum(w.numel() for w in self.model.parameters())

    def set_hparams(self, **values: float) -> None:
        """Set `weight_decay` and/or `lr` of every parameter group from the next step on."""
        for group in self.opt.param_groups:
            for key, v in values.items():
                group[key] = float(v)

    def hparam(self, key: str) -> float:
        return float(self.opt.param_groups[0].get(key, 0.0))

    def probe(self) -> None:
        """Append one row to the history (see the module doc)."""
        import torch
        import torch.nn.functional as F

        h = self.hist
        with torch.no_grad():
            for part, x, y in (("train", self.xtr, self.ytr), ("val", self.xva, self.yva)):
                logits = self.model(x)                                # [N, p]
                probs = logits.softmax(-1)
                h[f"{part}_loss"].append(F.cross_entropy(logits, y).item())
                h[f"{part}_acc"].append((logits.argmax(-1) == y).float().mean().item())
                h[f"{part}_conf"].append(probs.gather(1, y[:, None]).mean().item())
                if part == "val":
                    top = logits.topk(2, -1).values
                    h["val_self"].append(probs.max(-1).values.mean().item())
                    h["val_margin"].append((top[:, 0] - top[:, 1]).mean().item())
            h["weight_norm"].append(math.sqrt(sum(float((w * w).sum())
                                                  for w in self.model.parameters())))
        k = len(h["step"])
        every = self.cfg.alpha_every
        if every and k % every == 0:
            mean_alpha, layers = spectral_alpha(self.model)
        else:
            mean_alpha, layers = None, {}
        h["alpha"].append(mean_alpha)
        self.layer_alpha.append(layers)
        h["weight_decay"].append(self.hparam("weight_decay"))
        h["lr"].append(self.hparam("lr"))
        h["step"].append(self.step)
        h["seconds"].append(round(time.perf_counter() - self.t0, 2))

    def advance(self, steps: int, controller: Controller | None = None,
                stop_at: float | None = None, hold: int = 1,
                log: Callable[[str], None] | None = None) -> None:
        """Train `steps` more steps, probing every `probe_every` (and first, on a fresh history).
        `controller(history)` runs after each probe and may return new hyperparameters. Stops once
        validation accuracy >= `stop_at` held for `hold` consecutive probes."""
        import torch.nn.functional as F

        if not self.hist["step"]:
            self.probe()
        held, end = 0, self.step + steps
        while self.step < end:
            loss = F.cross_entropy(self.model(self.xtr), self.ytr)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.step += 1
            if self.step % self.cfg.probe_every and self.step != end:
                continue
            self.probe()
            if controller is not None:
                self.set_hparams(**(controller(self.hist) or {}))
            if log and len(self.hist["step"]) % 10 == 1:
                h = self.hist
                log(f"step {self.step:>6}  train acc {h['train_acc'][-1]:.3f}  val acc "
                    f"{h['val_acc'][-1]:.3f}  self-conf {h['val_self'][-1]:.3f}  "
                    f"{h['seconds'][-1]:.0f}s")
            if stop_at is not None:
                held = held + 1 if self.hist["val_acc"][-1] >= stop_at else 0
                if held >= hold:
                    break

    def layer_alpha_series(self) -> dict[str, list[float | None]]:
        names = sorted({n for row in self.layer_alpha for n in row})
        return {n: [row.get(n) for row in self.layer_alpha] for n in names}


def first_step(hist: dict[str, list[Any]], key: str, level: float) -> int | None:
    """The first probed step where `hist[key]` >= level (None: never)."""
    return next((s for s, v in zip(hist["step"], hist[key], strict=True)
                 if v is not None and v >= level), None)
