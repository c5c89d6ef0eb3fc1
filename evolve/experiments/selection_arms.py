"""The selection experiment's arms, outcome and planted control: what `selection.py` runs and
`selection_report.py` / `selection_analysis.py` write up (they import this; none imports the
others' module at load)."""

from __future__ import annotations

from evolve.assess import NAMES

KIND = "experiment.selection"        # the summary run's `evolve.kind` tag in MLflow
METRICS = NAMES                       # the assessment's outcomes (evolve.assess)
PRIMARY = "assess_gain"
SECONDARY = "assess_learned_share"
ALPHA = 0.05
ARMS: dict[str, tuple[str, list[str]]] = {
    "fitness": ("fitness-based selection as configured (default: tournament 3 on the default "
                "weights, 1 elite)", []),
    "fitness-tuned": ("the same with the tuned weights of `evolve tune`", []),
    "random": ("the fitness arm's operator and elitism (default: tournament 3, 1 elite) on fresh "
               "uniform random values: the null with the same operator; same variation and "
               "inheritance", ["selection.basis=random"]),
    "random-uniform": ("exploratory, not a null for the fitness arm: parents drawn uniformly and the "
                       "elite a random learner (the old random arm; tournament on random values "
                       "alone beats it, docs/results/selection/main_24)",
                       ["selection.operator=uniform", "selection.params={}",
                        "selection.basis=random"]),
    "shuffled": ("the fitness arm's selection on fitness values permuted within each generation "
                 "(negative control)", ["selection.basis=shuffled"]),
    "oracle": ("the fitness arm's selection on the outcome itself, assess_gain (the ceiling)",
               ["selection.basis=outcome"]),
    "none": ("no selection: every generation restarts from generation 0's genomes with fresh "
             "seeds and fresh adapters",
             ["selection.operator=truncation", "selection.params={quantile: 0.0}",
              "selection.elitism=0", "variation.explore_p=0", "variation.crossover_p=0",
              "variation.reseed=true", "variation.weight_noise=0", "inheritance=darwinian"]),
}
DEFAULT_ARMS = ("fitness", "random", "shuffled", "oracle")
# Holm corrects over the primary contrasts only; the secondary ones are reported uncorrected.
PRIMARY_CONTRASTS = (("fitness", "random"), ("oracle", "random"), ("shuffled", "random"))
SECONDARY_CONTRASTS = (("fitness", "shuffled"), ("fitness", "none"), ("random", "random-uniform"),
                       ("fitness", "random-uniform"), ("shuffled", "random-uniform"))
# The planted positive control: one heritable gene (lr over two decades), every other gene fixed,
# lr moved only by x1.2 / x0.8 (never resampled), no crossover. Its range is where the embedded
# base's assessment gain rises monotonically with lr: the first design's [3e-4, 3e-2] had a flat zero
# below ~2e-3 and a collapse above ~1.4e-2, so selection could buy little (docs/results/selection/
# planted_design.md). It has its own size (more learners and rounds of selection than the main arms):
# PLANTED_SIZE comes after --set (unless --quick) and --planted-set after both.
PLANTED = ["genome.lr=[1.0e-4, 1.0e-2]", "genome.rank=[4]", "genome.alpha=[8.0, 8.0]",
           "genome.weight_decay=[0.0, 0.0]", "genome.dropout=[0.0, 0.0]",
           "genome.curricula=[random]", "genome.rehearsal_ratio=[0.0, 0.0]",
           "genome.steps_per_item=[2, 2]", "genome.fixed=[curriculum_params]",
           "variation.resample_p=0", "variation.crossover_p=0"]
PLANTED_SIZE = ["population=10", "generations=4"]
PLANTED_ARMS = ("fitness", "random", "shuffled", "oracle")


def arm_sets(arm: str, weights: str | None) -> list[str]:
    """The `--set` overrides that make `arm` out of the common config."""
    if arm == "fitness-tuned":
        return [f"fitness.weights_file={weights}"]
    return list(ARMS[arm][1])
