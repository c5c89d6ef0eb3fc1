"""The selection experiment's arms and outcome: what `selection.py` runs and `selection_report.py`
writes up (both import this; neither imports the other's module at load)."""

from __future__ import annotations

KIND = "experiment.selection"        # the summary run's `evolve.kind` tag in MLflow
METRICS = ("assess_auc", "assess_learned_per_100", "assess_half_life", "assess_final_accuracy")
PRIMARY = "assess_auc"
ALPHA = 0.05
ARMS: dict[str, tuple[str, list[str]]] = {
    "fitness": ("fitness-based selection as configured (default: tournament 3 on the default "
                "weights, 1 elite)", []),
    "fitness-tuned": ("the same with the tuned weights of `evolve tune`", []),
    "random": ("parents drawn uniformly, fitness ignored; same variation and inheritance",
               ["selection.operator=uniform", "selection.params={}", "selection.elitism=0"]),
    "none": ("no selection: every generation restarts from generation 0's genomes with fresh "
             "seeds and fresh adapters",
             ["selection.operator=truncation", "selection.params={quantile: 0.0}",
              "selection.elitism=0", "variation.explore_p=0", "variation.crossover_p=0",
              "variation.reseed=true", "variation.weight_noise=0", "inheritance=darwinian"]),
}
CONTROLS = ("random", "none")


def arm_sets(arm: str, weights: str | None) -> list[str]:
    """The `--set` overrides that make `arm` out of the common config."""
    if arm == "fitness-tuned":
        return [f"fitness.weights_file={weights}"]
    return list(ARMS[arm][1])
