"""The genome (a learner's heritable settings) and the gene space evolution samples and mutates in.

`GENE_TABLE` is the one table of genes: each row names a gene, the kind of its range (log-uniform
float, float, int, ordered choice, choice: `common.ranges.ParamRange`), how its value is read back
and its help text. Sampling (`sample_genome`), exploring (`evolve.operators.variation.move`),
validation (`GeneSpace`), parsing (`parse_gene`) and the MLflow params (`Genome.to_params`) read it
and branch on the range's kind, never on a gene's name.

Float genes are kept at 6 significant digits (`common.ranges.round_sig`) so that the value printed in a decision
line (`lr : 3e-4 --- (* 0.8) --> 2.4e-4`) is the exact value in the genome: replaying the log gives
back the same genome bit for bit, and MLflow params read back as the same floats.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from common.errors import EvolveError
from common.ranges import CHOICE_KINDS, ParamRange

if TYPE_CHECKING:
    from learners.population import LearnerSpec

ParamValue = str | float | int


def module_list(v: Any) -> tuple[str, ...]:
    """A target-modules value: "q_proj,v_proj" or a list / tuple of names -> a tuple of names."""
    return tuple(t for t in v.split(",") if t) if isinstance(v, str) else tuple(v)


@dataclass(frozen=True)
class Gene:
    """One row of the gene table: a `Genome` field, the kind of its range in `GeneSpace`, how one
    value is read back (from MLflow text or YAML), and its help text (docs/config.md)."""

    name: str                          # the Genome field
    kind: str                          # its range's ParamRange kind (common.ranges)
    value: Callable[[Any], Any]        # one value from text / YAML
    help: str
    space: str = ""                    # the GeneSpace field holding its range ("" = `name`)
    bounds: tuple[float, float] = (-math.inf, math.inf)   # limits of a numeric range / choices
    explore: bool = True               # False: explore leaves it alone (seed: reseed's job)
    strategy: bool = False             # names a curriculum strategy; its `mutable` params follow

    @property
    def field(self) -> str:
        return self.space or self.name


# The gene table: sampling, exploring, validation, parsing and the MLflow params all read it, in
# this order (the order genomes are sampled in, so changing it changes every seeded genome).
# `curriculum_params` is not a row: its ranges are the chosen strategy's `mutable`.
GENE_TABLE: tuple[Gene, ...] = (
    Gene("lr", "log", float, "AdamW learning rate, sampled log-uniformly", bounds=(1e-12, 10.0)),
    Gene("rank", "ordered", int, "LoRA rank r: increasing choices; explore moves to a neighbour",
         bounds=(1, math.inf)),
    Gene("alpha", "log", float, "LoRA alpha (the update is scaled by alpha / r), log-uniform",
         bounds=(1e-6, 1e6)),
    Gene("target_modules", "choice", module_list,
         "choices of base linear layers that get adapters, each a list or \"q_proj,v_proj\""),
    Gene("weight_decay", "float", float, "AdamW decoupled weight decay", bounds=(0.0, 10.0)),
    Gene("dropout", "float", float, "LoRA dropout on the adapter input", bounds=(0.0, 0.99)),
    Gene("curriculum", "choice", str, "curriculum strategies (`evolve ls`); [] = every one",
         space="curricula", strategy=True),
    Gene("rehearsal_ratio", "float", float, "fraction of each batch replayed from earlier items",
         bounds=(0.0, 1.0)),
    Gene("steps_per_item", "int", int, "optimiser steps per training item; explore moves by +-1",
         bounds=(1, math.inf)),
    Gene("seed", "int", int, "stream order and adapter init; only `reseed` changes it",
         bounds=(0, 2**31 - 1), explore=False),
)
GENE = {g.name: g for g in GENE_TABLE}


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
    if name in GENE:
        return GENE[name].value(text)
    if name.startswith("curriculum_params."):
        rng = strategy_ranges(curriculum).get(name.split(".", 1)[1]) if curriculum else None
        if rng is not None and rng.kind in CHOICE_KINDS:
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
            elif isinstance(v, tuple):                 # target_modules: "q_proj,v_proj"
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
            elif key in GENE:
                kw[key] = GENE[key].value(v)
            else:
                raise EvolveError(f"unknown genome param {key!r}; valid: {', '.join(GENES)}")
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


GENES = tuple(f.name for f in fields(Genome))   # the table's genes plus `curriculum_params`


def _g(name: str, default: Any) -> Any:
    """A GeneSpace field: its default range and, as metadata, its row of the gene table."""
    gene = next(g for g in GENE_TABLE if g.field == name)
    return field(default=default, metadata={"help": gene.help, "gene": gene})


@dataclass
class GeneSpace:
    """The ranges evolution samples and mutates genes in: one field per row of `GENE_TABLE`
    (`range(gene)` is its `ParamRange`). YAML lists become tuples. These defaults are the only
    ones: `configs/default.yaml` sets no gene range."""

    # Below lr 1e-3 or with one step per item, a rank-4 LoRA on the 1 M-parameter base learnt
    # almost none of its items within a generation (measured: 0-4 of 24), leaving fitness nothing
    # to rank: hence lr from 1e-3 and 2-4 steps per item (the values every default run used).
    lr: tuple[float, float] = _g("lr", (1e-3, 3e-2))
    rank: tuple[int, ...] = _g("rank", (2, 4, 8))
    alpha: tuple[float, float] = _g("alpha", (2.0, 32.0))
    target_modules: tuple[tuple[str, ...], ...] = _g("target_modules", (("q_proj", "v_proj"),))
    weight_decay: tuple[float, float] = _g("weight_decay", (0.0, 0.1))
    dropout: tuple[float, float] = _g("dropout", (0.0, 0.2))
    curricula: tuple[str, ...] = _g("curricula", ())
    rehearsal_ratio: tuple[float, float] = _g("rehearsal_ratio", (0.0, 0.5))
    steps_per_item: tuple[int, int] = _g("steps_per_item", (2, 4))
    seed: tuple[int, int] = _g("seed", (0, 2**31 - 1))
    fixed: tuple[str, ...] = field(default=(), metadata={
        "help": "genes that explore never changes, e.g. [rank]"})

    def __post_init__(self) -> None:
        for gene in GENE_TABLE:
            setattr(self, gene.field, _checked(gene, getattr(self, gene.field)))
        self.fixed = tuple(self.fixed)
        bad = [g for g in self.fixed if g not in GENES]
        if bad:
            raise EvolveError(f"gene space fixed names unknown gene {bad[0]!r}; valid: {', '.join(GENES)}")

    def range(self, gene: str) -> ParamRange:
        """Gene `gene`'s range in this space."""
        g = GENE[gene]
        v = getattr(self, g.field)
        if g.kind in CHOICE_KINDS:
            return ParamRange(kind=g.kind, choices=tuple(v))
        return ParamRange(v[0], v[1], g.kind)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GeneSpace:
        """Build from a YAML mapping; an unknown key is a one-line error listing the valid ones."""
        names = [f.name for f in fields(cls)]
        bad = [k for k in d if k not in names]
        if bad:
            raise EvolveError(f"unknown gene space key {bad[0]!r}; valid: {', '.join(names)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML data (lists); `from_dict(to_dict())` equals this space."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def contains(self, g: Genome) -> bool:
        """Whether every gene of `g` lies in this space (curriculum params in their strategy's)."""
        ok = all(self.range(gene.name).contains(getattr(g, gene.name)) for gene in GENE_TABLE)
        ranges = strategy_ranges(g.curriculum)
        for k, v in g.curriculum_params.items():
            r = ranges.get(k)
            if r is not None:
                ok = ok and r.contains(v)
        return ok


def _plain(v: Any) -> Any:
    return [_plain(x) for x in v] if isinstance(v, (tuple, list)) else v


def _checked(gene: Gene, v: Any) -> tuple[Any, ...]:
    """A GeneSpace field's value as a valid tuple, or a one-line error naming the gene."""
    lo_ok, hi_ok = gene.bounds
    if gene.kind in ("float", "log", "int"):
        cast: Callable[[Any], Any] = int if gene.kind == "int" else float
        r = tuple(cast(x) for x in v)
        if len(r) != 2 or not lo_ok <= r[0] <= r[1] <= hi_ok:
            raise EvolveError(f"gene space {gene.field} must be [low, high] with {lo_ok:g} <= low "
                              f"<= high <= {hi_ok:g}, got {list(v)}")
        return r
    choices = tuple(gene.value(x) for x in v)
    if gene.strategy:
        return _strategies(choices)
    numeric = all(isinstance(c, (int, float)) for c in choices)
    if (not choices or not all(choices) or len(set(choices)) != len(choices)
            or (numeric and not all(lo_ok <= c <= hi_ok for c in choices))
            or (gene.kind == "ordered" and list(choices) != sorted(choices))):
        rule = "increasing" if gene.kind == "ordered" else "distinct non-empty"
        within = f" in [{lo_ok:g}, {hi_ok:g}]" if numeric else ""
        raise EvolveError(f"gene space {gene.field} must be {rule} choices{within}, got {list(v)}")
    return choices


def _strategies(names: tuple[str, ...]) -> tuple[str, ...]:
    """Curriculum strategy names, () = every registered one; unknown names fail in one line."""
    from curricula.registry import STRATEGIES

    valid = STRATEGIES.names()
    names = names or tuple(valid)
    bad = [c for c in names if c not in STRATEGIES]
    if bad or not names:
        raise EvolveError(f"unknown curriculum strategy {', '.join(bad) or '(none)'}; "
                          f"valid: {', '.join(valid) or '(none registered)'}")
    return names


def sample_curriculum_params(curriculum: str, rng: random.Random) -> dict[str, ParamValue]:
    """Every mutable parameter of `curriculum`, sampled from its range (sorted by name)."""
    return {k: r.sample(rng) for k, r in sorted(strategy_ranges(curriculum).items())}


def sample_genome(space: GeneSpace, rng: random.Random) -> Genome:
    """A genome drawn from `space`, gene by gene in table order (each by its range's kind)."""
    kw = {g.name: space.range(g.name).sample(rng) for g in GENE_TABLE}
    strategy = next(g.name for g in GENE_TABLE if g.strategy)
    kw["curriculum_params"] = sample_curriculum_params(kw[strategy], rng)
    return Genome(**kw)
