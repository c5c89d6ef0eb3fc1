"""The genome (a learner's heritable settings) and the gene space evolution samples and mutates in.

Float genes are kept at 6 significant digits (`round_sig`) so that the value printed in a decision
line (`lr : 3e-4 --- (* 0.8) --> 2.4e-4`) is the exact value in the genome: replaying the log gives
back the same genome bit for bit, and MLflow params read back as the same floats.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from common.errors import EvolveError

if TYPE_CHECKING:
    from learners.population import LearnerSpec

ParamValue = str | float | int
SIG_DIGITS = 6   # 6 significant digits: 1e-6 relative, far below any lr/alpha effect we can measure

FLOAT_GENES = ("lr", "alpha", "weight_decay", "dropout", "rehearsal_ratio")
INT_GENES = ("rank", "steps_per_item", "seed")
GENES = ("lr", "rank", "alpha", "target_modules", "weight_decay", "dropout", "curriculum",
         "curriculum_params", "rehearsal_ratio", "steps_per_item", "seed")


def round_sig(x: float, digits: int = SIG_DIGITS) -> float:
    """`x` rounded to `digits` significant digits (0 and non-finite values unchanged)."""
    if x == 0 or not math.isfinite(x):
        return float(x)
    return float(f"{x:.{digits - 1}e}")


def fmt_value(v: Any) -> str:
    """Compact, exactly round-trippable text for a gene value: 3e-4, 0.05, 8, q_proj,v_proj."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        if v == 0 or not math.isfinite(v):
            return repr(v)
        if abs(v) < 1e-2 or abs(v) >= 1e5:
            for p in range(17):                      # shortest scientific form that round-trips
                s = f"{v:.{p}e}"
                if float(s) == v:
                    mant, exp = s.split("e")
                    return f"{mant}e{int(exp)}"
        return repr(v)
    if isinstance(v, (tuple, list)):
        return ",".join(str(x) for x in v)
    return str(v)


def parse_scalar(text: str) -> ParamValue:
    """Inverse of `fmt_value` for an untyped scalar: int if it looks like one, else float, else str."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_gene(name: str, text: str, curriculum: str | None = None) -> Any:
    """Parse the text of gene `name` (or `curriculum_params.X`) back to its typed value."""
    if name in FLOAT_GENES:
        return float(text)
    if name in INT_GENES:
        return int(text)
    if name == "target_modules":
        return tuple(t for t in text.split(",") if t)
    if name == "curriculum":
        return text
    if name.startswith("curriculum_params."):
        rng = strategy_ranges(curriculum).get(name.split(".", 1)[1]) if curriculum else None
        if rng is not None and rng.kind == "choice":
            for c in rng.choices:
                if fmt_value(c) == text:
                    return c
        value = parse_scalar(text)
        if rng is not None and rng.kind in ("float", "log") and isinstance(value, int):
            return float(value)
        return value
    raise EvolveError(f"unknown gene {name!r}; valid: {', '.join(GENES)}")


def strategy_ranges(name: str | None) -> dict[str, Any]:
    """The curriculum strategy's `mutable` parameter ranges (name -> ParamRange); {} if none."""
    if not name:
        return {}
    from curricula.registry import STRATEGIES

    if name not in STRATEGIES:
        return {}
    return dict(getattr(STRATEGIES.get(name), "mutable", {}) or {})


@dataclass
class Genome:
    """The heritable settings of one learner (its adapter weights are inherited separately)."""

    lr: float = 3e-4                     # AdamW learning rate
    rank: int = 4                        # LoRA rank r
    alpha: float = 8.0                   # LoRA alpha; the update is scaled by alpha / r
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")   # base linear layers that get adapters
    weight_decay: float = 0.0            # AdamW decoupled weight decay
    dropout: float = 0.0                 # LoRA dropout on the adapter input
    curriculum: str = "random"           # a curricula.STRATEGIES name
    curriculum_params: dict[str, ParamValue] = field(default_factory=dict)   # Strategy(**params)
    rehearsal_ratio: float = 0.0         # fraction of each batch replayed from earlier items
    steps_per_item: int = 1              # optimiser steps per training item
    seed: int = 0                        # stream order and adapter init

    def __post_init__(self) -> None:
        self.target_modules = tuple(self.target_modules)
        self.curriculum_params = dict(self.curriculum_params)
        if not self.lr > 0:
            raise EvolveError(f"genome lr must be > 0, got {self.lr}; set a positive learning rate")
        if self.rank < 1:
            raise EvolveError(f"genome rank must be >= 1, got {self.rank}; use e.g. 4")
        if self.steps_per_item < 1:
            raise EvolveError(f"genome steps_per_item must be >= 1, got {self.steps_per_item}")
        if not self.target_modules:
            raise EvolveError("genome target_modules is empty; name at least one, e.g. q_proj,v_proj")

    def to_params(self) -> dict[str, ParamValue]:
        """Flat params for MLflow: `target_modules` as "q_proj,v_proj", `curriculum_params.<k>`."""
        out: dict[str, ParamValue] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "curriculum_params":
                out.update({f"curriculum_params.{k}": p for k, p in sorted(v.items())})
            elif f.name == "target_modules":
                out[f.name] = ",".join(v)
            else:
                out[f.name] = v
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Genome:
        """Inverse of `to_params`; values may be strings (as MLflow returns them)."""
        kw: dict[str, Any] = {}
        cparams: dict[str, ParamValue] = {}
        curriculum = str(params.get("curriculum", cls.curriculum))
        for key, v in params.items():
            if key.startswith("curriculum_params."):
                cparams[key.split(".", 1)[1]] = (parse_gene(key, v, curriculum)
                                                 if isinstance(v, str) else v)
            elif key in GENES:
                kw[key] = parse_gene(key, v) if isinstance(v, str) else v
            else:
                raise EvolveError(f"unknown genome param {key!r}; valid: {', '.join(GENES)}")
        if isinstance(kw.get("target_modules"), list):
            kw["target_modules"] = tuple(kw["target_modules"])
        return cls(**kw, curriculum_params=cparams)

    def to_spec(self) -> LearnerSpec:
        """The learners-side spec of this genome (what `Population` trains)."""
        from learners.population import LearnerSpec

        return LearnerSpec(lr=self.lr, weight_decay=self.weight_decay, rank=self.rank,
                           alpha=self.alpha, dropout=self.dropout, seed=self.seed,
                           target_modules=tuple(self.target_modules))

    def copy(self) -> Genome:
        """A deep-enough copy (the params dict is not shared)."""
        return Genome.from_params(self.to_params())


def _range(name: str, r: Sequence[float], lo_ok: float, hi_ok: float) -> tuple[float, float]:
    if len(r) != 2 or not (lo_ok <= r[0] <= r[1] <= hi_ok):
        raise EvolveError(f"gene space {name} must be [low, high] with {lo_ok} <= low <= high"
                          f" <= {hi_ok}, got {list(r)}")
    return (float(r[0]), float(r[1]))


@dataclass
class GeneSpace:
    """The ranges evolution samples and mutates genes in. YAML lists become tuples."""

    lr: tuple[float, float] = (1e-4, 3e-2)        # log-uniform
    rank: tuple[int, ...] = (2, 4, 8)             # ordered choices; explore moves to a neighbour
    alpha: tuple[float, float] = (2.0, 32.0)      # log-uniform
    target_modules: tuple[tuple[str, ...], ...] = (("q_proj", "v_proj"),)   # choices
    weight_decay: tuple[float, float] = (0.0, 0.1)
    dropout: tuple[float, float] = (0.0, 0.2)
    curricula: tuple[str, ...] = ()               # () = every registered strategy
    rehearsal_ratio: tuple[float, float] = (0.0, 0.5)
    steps_per_item: tuple[int, int] = (1, 3)      # integer range; explore moves by +-1
    seed: tuple[int, int] = (0, 2**31 - 1)
    fixed: tuple[str, ...] = ()                   # genes that explore never changes

    def __post_init__(self) -> None:
        self.lr = _range("lr", self.lr, 1e-12, 10.0)
        if not self.lr[0] > 0:
            raise EvolveError("gene space lr low must be > 0 (it is sampled log-uniformly)")
        self.alpha = _range("alpha", self.alpha, 1e-6, 1e6)
        self.weight_decay = _range("weight_decay", self.weight_decay, 0.0, 10.0)
        self.dropout = _range("dropout", self.dropout, 0.0, 0.99)
        self.rehearsal_ratio = _range("rehearsal_ratio", self.rehearsal_ratio, 0.0, 1.0)
        self.rank = tuple(int(r) for r in self.rank)
        if not self.rank or min(self.rank) < 1 or list(self.rank) != sorted(set(self.rank)):
            raise EvolveError(f"gene space rank must be increasing positive ints, got {self.rank}")
        self.target_modules = tuple(
            tuple(t.split(",")) if isinstance(t, str) else tuple(t) for t in self.target_modules)
        if not self.target_modules or not all(self.target_modules):
            raise EvolveError("gene space target_modules needs >= 1 non-empty module list")
        lo, hi = (int(x) for x in self.steps_per_item)
        if not 1 <= lo <= hi:
            raise EvolveError(f"gene space steps_per_item must be [low, high] >= 1, got {[lo, hi]}")
        self.steps_per_item = (lo, hi)
        self.seed = (int(self.seed[0]), int(self.seed[1]))
        from curricula.registry import STRATEGIES

        valid = STRATEGIES.names()
        self.curricula = tuple(self.curricula) or tuple(valid)
        bad = [c for c in self.curricula if c not in STRATEGIES]
        if bad or not self.curricula:
            raise EvolveError(f"unknown curriculum strategy {', '.join(bad) or '(none)'}; "
                              f"valid: {', '.join(valid) or '(none registered)'}")
        self.fixed = tuple(self.fixed)
        bad = [g for g in self.fixed if g not in GENES]
        if bad:
            raise EvolveError(f"gene space fixed names unknown gene {bad[0]!r}; valid: {', '.join(GENES)}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GeneSpace:
        """Build from a YAML mapping; an unknown key is a one-line error listing the valid ones."""
        names = [f.name for f in fields(cls)]
        bad = [k for k in d if k not in names]
        if bad:
            raise EvolveError(f"unknown gene space key {bad[0]!r}; valid: {', '.join(names)}")
        return cls(**d)

    def contains(self, g: Genome) -> bool:
        """Whether every gene of `g` lies in this space (curriculum params in their strategy's)."""
        ok = (self.lr[0] <= g.lr <= self.lr[1] and g.rank in self.rank
              and self.alpha[0] <= g.alpha <= self.alpha[1]
              and tuple(g.target_modules) in self.target_modules
              and self.weight_decay[0] <= g.weight_decay <= self.weight_decay[1]
              and self.dropout[0] <= g.dropout <= self.dropout[1]
              and g.curriculum in self.curricula
              and self.rehearsal_ratio[0] <= g.rehearsal_ratio <= self.rehearsal_ratio[1]
              and self.steps_per_item[0] <= g.steps_per_item <= self.steps_per_item[1]
              and self.seed[0] <= g.seed <= self.seed[1])
        ranges = strategy_ranges(g.curriculum)
        for k, v in g.curriculum_params.items():
            r = ranges.get(k)
            if r is not None:
                ok = ok and (v in r.choices if r.kind == "choice" else r.low <= v <= r.high)
        return ok


def sample_param(r: Any, rng: random.Random) -> ParamValue:
    """One value from a curricula ParamRange (`kind` float / log / int / choice)."""
    if r.kind == "choice":
        return rng.choice(list(r.choices))
    if r.kind == "int":
        return rng.randint(int(r.low), int(r.high))
    if r.kind == "log":
        return round_sig(math.exp(rng.uniform(math.log(r.low), math.log(r.high))))
    return round_sig(rng.uniform(r.low, r.high))


def sample_curriculum_params(curriculum: str, rng: random.Random) -> dict[str, ParamValue]:
    """Every mutable parameter of `curriculum`, sampled from its range (sorted by name)."""
    return {k: sample_param(r, rng) for k, r in sorted(strategy_ranges(curriculum).items())}


def sample_gene(space: GeneSpace, name: str, rng: random.Random) -> Any:
    """One value of gene `name` drawn from `space` (curriculum params: see sample_curriculum_params)."""
    if name in ("lr", "alpha"):
        lo, hi = getattr(space, name)
        return round_sig(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if name in ("weight_decay", "dropout", "rehearsal_ratio"):
        lo, hi = getattr(space, name)
        return round_sig(rng.uniform(lo, hi))
    if name in ("rank", "target_modules"):
        return rng.choice(list(getattr(space, name)))
    if name == "curriculum":
        return rng.choice(list(space.curricula))
    if name in ("steps_per_item", "seed"):
        return rng.randint(*getattr(space, name))
    raise EvolveError(f"gene {name!r} cannot be sampled alone; valid: {', '.join(GENES)}")


def sample_genome(space: GeneSpace, rng: random.Random) -> Genome:
    """A genome drawn uniformly (log-uniformly for lr and alpha) from `space`."""
    kw = {g: sample_gene(space, g, rng) for g in GENES if g != "curriculum_params"}
    kw["curriculum_params"] = sample_curriculum_params(kw["curriculum"], rng)
    return Genome(**kw)
