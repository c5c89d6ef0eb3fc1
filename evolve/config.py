"""The run configuration: typed dataclasses with a help string per field, validated on creation,
built from plain data (`from_dict`), and `load_config`, the one entry point from files and flags.

Where the plain data comes from is in the modules beside this one: `evolve/config_layers.py` (the
layers: default YAML < `--config FILE` < `--set a.b.0.c=v` < `--base PATH`),
`evolve/config_files.py` (reading YAML, the shipped configs, `evolve tune`'s weights files) and
`evolve/tracking_uri.py` (the tracking URI: `--set tracking.uri` or a config file that sets it >
`$MLFLOW_TRACKING_URI` > `mlflow.yaml`); import their names from them. Every
error is one line naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from common.errors import EvolveError
from evolve.config_files import load_weights_file
from evolve.config_files import need as _need
from evolve.config_layers import layered, tracking_section

MERGE_METHODS = ("linear", "svd", "ties")   # adapter merges (evolve.merge); "none" also configures
DRAW_PLOTS = ("end", "every")


def _f(default: Any, help: str, nested: type | None = None) -> Any:
    """A dataclass field with its help text (shown by docs/config.md) and an optional nested type."""
    meta = {"help": help, "nested": nested}
    if isinstance(default, type):                 # a nested config: built (and validated) lazily
        return field(default_factory=default, metadata=meta)
    if isinstance(default, (dict, list)):
        return field(default_factory=functools.partial(_copy, default), metadata=meta)
    return field(default=default, metadata=meta)


def _copy(v: Any) -> Any:
    return yaml.safe_load(yaml.safe_dump(v, sort_keys=False))   # keep the declared order


def _prob(name: str, v: float) -> None:
    _need(0.0 <= float(v) <= 1.0, f"{name} = {v} is not a probability; set it in [0, 1]")


@dataclass
class TaskConfig:
    """One task family: its items per generation, fixed holdout and fixed never-trained probe set."""

    family: str = _f("modular", "task family name (`evolve ls` lists them)")
    n: int = _f(32, "fresh training items drawn per generation")
    holdout: int = _f(16, "fixed holdout items, probed at every checkpoint, never trained")
    probe: int = _f(16, "fixed never-trained items used only by `assess` (learning speed)")
    params: dict[str, Any] = _f({}, "family parameters (written beside `family` in YAML)")

    def __post_init__(self) -> None:
        import curricula

        curricula.FAMILIES.get(self.family)  # unknown → one line listing the valid families
        _need(int(self.n) >= 1, f"tasks: {self.family}.n = {self.n}; set n to at least 1")
        _need(int(self.holdout) >= 0 and int(self.probe) >= 0,
              f"tasks: {self.family} holdout/probe must be >= 0")
        self.make()  # bad family parameters raise the family's own one-line ValueError

    def make(self) -> Any:
        """The family object, `Family(**params)`."""
        import curricula

        try:
            return curricula.FAMILIES.get(self.family)(**self.params)
        except TypeError as exc:
            raise EvolveError(f"tasks: family {self.family!r} rejects its parameters ({exc}); "
                              f"see docs/curricula.md") from None

    @property
    def total(self) -> int:
        return self.holdout + self.probe


@dataclass
class TrainingConfig:
    batch_size: int = _f(4, "new items per optimiser step per learner")
    checkpoint_every: int = _f(8, "probe every this many new training items (a multiple of batch_size)")
    epochs: int = _f(1, "passes over each generation's items, each re-ordered and probed every "
                        "checkpoint_every items (> 1: the grokking setting, configs/grokking.yaml)")
    probe_passes: int = _f(1, "> 1: probe once every this many passes (and after the last) "
                              "instead of every checkpoint_every items: long grokking runs")
    max_grad_norm: float | None = _f(1.0, "per-learner gradient clipping norm; null = off")
    adam_beta2: float = _f(0.999, "AdamW's second-moment decay (0.98: the grokking papers' value)")
    init_scale: float = _f(0.0, "fresh adapters' start: 0 = PEFT's (B = 0, no update); > 0 = B "
                                "drawn like A and both x init_scale, a large random update that "
                                "weight decay must shrink (Omnigrok; docs/experiments.md, grokking)")
    modules_to_save: list[str] = _f([], "whole modules every learner trains its own copy of besides "
                                        "LoRA (PEFT's modules_to_save): embed, head, norm or module "
                                        "names; [embed, head, norm] lets a never-pretrained base "
                                        "grok (configs/grokking_lora.yaml)")
    spectral: bool = _f(True, "weightwatcher spectral signals at the last checkpoint")
    device: str = _f("auto", "cpu, cuda or auto (cuda when available)")
    max_new_tokens: int = _f(32, "greedy generation budget, in tokens, of key-term items "
                                 "(exact: false, e.g. jsonl): longer answers are cut there")

    def __post_init__(self) -> None:
        _need(self.batch_size >= 1, "training.batch_size must be >= 1")
        _need(0.0 < self.adam_beta2 < 1.0, "training.adam_beta2 must be in (0, 1), e.g. 0.999")
        _need(isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1,
              f"training.max_new_tokens = {self.max_new_tokens!r}; set it to at least 1 (e.g. 32)")
        _need(self.checkpoint_every >= 1 and self.checkpoint_every % self.batch_size == 0,
              f"training.checkpoint_every = {self.checkpoint_every} must be a positive multiple of "
              f"training.batch_size = {self.batch_size}")
        _need(isinstance(self.epochs, int) and self.epochs >= 1,
              f"training.epochs = {self.epochs!r}; set it to an integer >= 1 (1 = each item once)")
        _need(isinstance(self.probe_passes, int) and self.probe_passes >= 1,
              f"training.probe_passes = {self.probe_passes!r}; set it to an integer >= 1 "
              "(1 = probe every checkpoint_every items)")
        _need(self.device in ("cpu", "cuda", "auto"), "training.device must be cpu, cuda or auto")
        _need(isinstance(self.modules_to_save, list)
              and all(isinstance(m, str) and m for m in self.modules_to_save),
              f"training.modules_to_save = {self.modules_to_save!r}; give a list of module names, "
              "e.g. [embed, head, norm]")
        _need(isinstance(self.init_scale, (int, float)) and 0 <= self.init_scale < float("inf"),
              f"training.init_scale = {self.init_scale!r}; set it to a number >= 0 "
              "(0 = PEFT's init, e.g. 2 for a large-norm start)")


@dataclass
class SelectionConfig:
    operator: str = _f("tournament", "selection operator (`evolve ls`): tournament, truncation, ...")
    params: dict[str, Any] = _f({"size": 3}, "the operator's parameters, e.g. {size: 3}")
    elitism: int = _f(1, "best k learners kept unchanged (clone with full state)")
    basis: str = _f("fitness", "what selection and elitism rank: fitness, shuffled (fitness permuted "
                 "within the generation), random (a fresh random value per learner) or outcome "
                 "(assess_gain: the oracle); evolve/arms.py")

    def __post_init__(self) -> None:
        from evolve.arms import BASES, check
        from evolve.operators.registry import SELECTION

        SELECTION.get(self.operator)
        _need(self.elitism >= 0, "selection.elitism must be >= 0")
        _need(self.basis in BASES, f"unknown selection.basis {self.basis!r}; valid: {', '.join(BASES)}")
        problem = check(self.basis, self.operator)
        _need(problem is None, problem or "")


@dataclass
class VariationConfig:
    explore_p: float = _f(0.8, "probability a selected child is perturbed (PBT explore)")
    resample_p: float = _f(0.25, "per gene: probability explore resamples instead of x1.2/x0.8")
    crossover_p: float = _f(0.25, "probability a child has two parents (genome crossover)")
    merge: str = _f("svd", "adapter merge for crossover children: svd, linear, ties or none")
    weight_noise: float = _f(0.0, "std of Gaussian noise added to inherited adapters; 0 = off")
    reseed: bool = _f(True, "a new curriculum seed for every child (re-diversification)")
    categorical_p: float = _f(0.25, "per categorical gene (rank, target_modules, curriculum, "
                              "steps_per_item): probability explore moves it at all")
    rank_change: str = _f("pad", "a child whose rank changed: pad (pad / truncate the inherited "
                          "adapter, keep its AdamW state) or refactorise (SVD to the new rank, "
                          "fresh AdamW state: the earlier rule)")

    def __post_init__(self) -> None:
        for name in ("explore_p", "resample_p", "crossover_p", "categorical_p"):
            _prob(f"variation.{name}", getattr(self, name))
        merges = (*sorted(MERGE_METHODS, key=lambda m: m != "svd"), "none")   # the default first
        _need(self.merge in merges,
              f"unknown variation.merge {self.merge!r}; valid: {', '.join(merges)}")
        _need(self.weight_noise >= 0, "variation.weight_noise must be >= 0")
        _need(self.rank_change in ("pad", "refactorise"),
              f"unknown variation.rank_change {self.rank_change!r}; valid: pad, refactorise")


@dataclass
class FitnessConfig:
    weights: dict[str, float] = _f(
        {"final_accuracy": 0.31, "learned_per_100": 0.27},
        "signal name -> weight of its normalised value (signs are handled by the combiner); "
        "the default: the signals that predicted the children's learning gain in the selection "
        "experiment (docs/results/selection, signal table)")
    weights_file: str | None = _f(None, "YAML from `evolve tune`; its weights REPLACE `weights`")
    normalise: str = _f("rank", "per-generation normalisation: rank or zscore")
    mode: str = _f("weighted", "weighted (scalar sum) or pareto (non-dominated fronts)")
    pareto_signals: list[str] = _f(["meta_learning_window", "final_accuracy"],
                                   "signals for pareto mode (>= 2)")

    def __post_init__(self) -> None:
        if self.weights_file:
            self.weights = load_weights_file(self.weights_file)
        _need(self.normalise in ("rank", "zscore"), "fitness.normalise must be rank or zscore")
        _need(self.mode in ("weighted", "pareto"), "fitness.mode must be weighted or pareto")
        _need(bool(self.weights), "fitness.weights is empty; give at least one {signal: weight}")
        for name, w in self.weights.items():
            check_signal(name, "fitness.weights")
            _need(isinstance(w, (int, float)) and math.isfinite(w),
                  f"fitness.weights.{name} = {w!r} is not a finite number")
        for name in self.pareto_signals:
            check_signal(name, "fitness.pareto_signals")
        _need(self.mode != "pareto" or len(self.pareto_signals) >= 2,
              "fitness.pareto_signals needs at least 2 signals in pareto mode")


@dataclass
class AssessConfig:
    every: int = _f(1, "assess every this many generations (and the last); 0 = never")
    steps: int = _f(16, "training steps on the never-trained probe items per assessment")
    items: int = _f(0, "how many of the fixed probe items to use; 0 = all")
    checkpoints: int = _f(4, "probes during the assessment (plus one before it)")

    def __post_init__(self) -> None:
        _need(min(self.every, self.steps, self.items) >= 0, "assess.every/steps/items must be >= 0")
        _need(self.checkpoints >= 1, "assess.checkpoints must be >= 1")


@dataclass
class TrackingConfig:
    uri: str | None = _f(None, "MLflow tracking URI; null = $MLFLOW_TRACKING_URI, else mlflow.yaml")
    experiment: str | None = _f(None, "MLflow experiment name; null = mlflow.yaml's")
    artifact_location: str | None = _f(None, "artifact root for a new experiment; null = mlflow.yaml's")
    model_name: str = _f("evolve-champion", "registered model name for the last champion")
    draw_plots: str = _f("end", "when the evolution run's plots/ are drawn: end (after the last "
                                "generation) or every (after each generation, 5-10 s each)")

    def __post_init__(self) -> None:
        _need(self.draw_plots in DRAW_PLOTS, f"tracking.draw_plots = {self.draw_plots!r} is "
              f"unknown; set it to {' or '.join(DRAW_PLOTS)}")


@dataclass
class RunConfig:
    seed: int = _f(0, "run seed: every generation/learner seed derives from it")
    population: int = _f(8, "learners per generation (>= 2)")
    generations: int = _f(6, "generations to run")
    base: str | None = _f(None, "base model directory; null = the embedded default base")
    tasks: list[TaskConfig] = _f([], "task families: [{family, n, holdout, probe, ...params}]",
                                 nested=TaskConfig)
    genome: dict[str, Any] = _f({}, "gene space: overrides of evolve.genome.GeneSpace's ranges "
                                "(after validation: every range)")
    training: TrainingConfig = _f(TrainingConfig, "training schedule", nested=TrainingConfig)
    selection: SelectionConfig = _f(SelectionConfig, "selection", nested=SelectionConfig)
    variation: VariationConfig = _f(VariationConfig, "variation", nested=VariationConfig)
    inheritance: str = _f("lamarckian", "lamarckian (adapter+optimiser inherited) or darwinian")
    fitness: FitnessConfig = _f(FitnessConfig, "fitness", nested=FitnessConfig)
    assess: AssessConfig = _f(AssessConfig, "learning-speed assessment", nested=AssessConfig)
    tracking: TrackingConfig = _f(TrackingConfig, "MLflow", nested=TrackingConfig)
    backend: str = _f("local", "local or ray")
    groups: int = _f(2, "learner groups per generation (one training job each; local runs one per "
                     "core at once); more than `population` means one learner per group")
    state_dir: str = _f(".evolve_state", "resume state: <state_dir>/<parent run id>/")

    def __post_init__(self) -> None:
        _need(isinstance(self.population, int) and self.population >= 2,
              f"population {self.population} is below 2; set population >= 2 (--set population=8)")
        _need(self.generations >= 1, "generations must be >= 1 (--set generations=4)")
        _need(bool(self.tasks), "tasks is empty; give at least one {family: NAME}")
        _need(self.inheritance in ("lamarckian", "darwinian"),
              f"unknown inheritance {self.inheritance!r}; valid: lamarckian, darwinian")
        _need(self.backend in ("local", "ray"), f"unknown backend {self.backend!r}; valid: local, ray")
        _need(self.groups >= 1, "groups must be at least 1")
        _need(self.selection.elitism < self.population, "selection.elitism must be below population")
        _need(self.selection.basis != "outcome" or (self.assess.every == 1 and self.assess.steps > 0),
              "selection.basis=outcome selects on assess_gain, measured every generation: set "
              "assess.every=1 and assess.steps > 0")
        self.genome = self.gene_space().to_dict()   # every range, so MLflow records them all

    def gene_space(self) -> Any:
        """The `evolve.genome.GeneSpace` this config describes."""
        from evolve.genome import GeneSpace

        return GeneSpace.from_dict(self.genome or {})

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML/JSON-able); `from_dict(to_dict())` gives an equal config."""
        return _to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def check_signal(name: str, where: str) -> None:
    """An unknown signal name → one line listing the valid ones."""
    import fitness
    from evolve.assess import NAMES

    valid = sorted(set(fitness.SIGNALS.names()) | set(NAMES))
    _need(name in valid, f"unknown signal {name!r} in {where}; valid: {', '.join(valid)}")


# --- building from plain data -------------------------------------------------------------


def _to_dict(obj: Any) -> Any:
    if isinstance(obj, TaskConfig):
        d = {"family": obj.family, "n": obj.n, "holdout": obj.holdout, "probe": obj.probe}
        return {**d, **_copy(obj.params)}
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list):
        return [_to_dict(v) for v in obj]
    return _copy(obj) if isinstance(obj, dict) else obj


def _build(cls: type, data: Any, where: str) -> Any:
    if dataclasses.is_dataclass(data):
        return data
    _need(isinstance(data, dict), f"config key {where or '(top)'} must be a mapping, got {data!r}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    if cls is TaskConfig:
        nested_params = data.get("params") or {}   # `params: {...}` counts as keys beside family
        _need(isinstance(nested_params, dict), f"config key {where}params must be a mapping")
        kwargs["params"] = {**nested_params, **{k: v for k, v in data.items() if k not in names}}
        data = {k: v for k, v in data.items() if k in names and k != "params"}
    for key, value in data.items():
        if key not in names:
            valid = ", ".join(names)
            raise EvolveError(f"unknown config key {where}{key!r}; valid: {valid}")
        nested = names[key].metadata.get("nested")
        if nested is not None and isinstance(value, list):
            value = [_build(nested, v, f"{where}{key}.{i}.") for i, v in enumerate(value)]
        elif nested is not None and value is not None:
            value = _build(nested, value, f"{where}{key}.")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise EvolveError(f"config {where or '(top)'}: {exc}") from None


def from_dict(data: dict[str, Any]) -> RunConfig:
    """Build and validate a `RunConfig` from plain data (unknown keys are errors)."""
    return _build(RunConfig, data, "")


def load_config(path: str | Path | None = None, sets: list[str] | tuple[str, ...] = (),
                base: str | None = None) -> RunConfig:
    """Default YAML < `path` < `--set` overrides < `base`; then the tracking URI precedence."""
    data, explicit_uri = layered(path, sets, base)
    data["tracking"] = tracking_section(data, explicit_uri)
    return from_dict(data)


