"""The watched run: one training run probed throughout, its milestones, the project's grokking
detector, and its confidence-vs-knowledge curve (self-confidence against validation accuracy)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from evolve.experiments.grokking.setting import GrokConfig, Trainer, first_step
from evolve.experiments.grokking.warning import ONSET


def train(cfg: GrokConfig, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train until validation accuracy held `stop_accuracy` for `window` probes (or `steps`)."""
    tr = Trainer(cfg)
    tr.advance(cfg.steps, stop_at=cfg.stop_accuracy, hold=cfg.window, log=log)
    h = tr.hist
    return {"history": h, "layer_alpha": tr.layer_alpha_series(), "stopped_early": tr.step < cfg.steps,
            "last_step": tr.step, "parameters": tr.parameters, "train_size": len(tr.ytr),
            "val_size": len(tr.yva)}


def analyse(run: dict[str, Any], cfg: GrokConfig) -> dict[str, Any]:
    """Milestones (first probed steps), the detector's verdict, and the confidence gap's peak."""
    from fitness.signals.generalisation import detect_grokking, plateau_means

    h = run["history"]
    steps, va = h["step"], h["val_acc"]
    idx = detect_grokking(h["train_acc"], va, cfg.threshold, cfg.window)
    # the window means the detector compared (over probes on the train plateau)
    means = plateau_means(h["train_acc"], va, idx, cfg.window) if idx is not None else (None, None)
    gap = [s - a for s, a in zip(h["val_self"], va, strict=True)]
    k = max(range(len(gap)), key=lambda i: gap[i])
    return {
        "memorised_step": first_step(h, "train_acc", 0.99),
        "onset_step": first_step(h, "val_acc", ONSET),
        "val_95_step": first_step(h, "val_acc", 0.95),
        "detector_step": None if idx is None else steps[idx], "detector_index": idx,
        "val_before": means[0], "val_after": means[1],
        "peak_gap_step": steps[k], "peak_gap": gap[k], "self_confidence_at_peak": h["val_self"][k],
        "val_at_peak_gap": va[k], "val_final": va[-1], "train_final": h["train_acc"][-1],
        "last_step": steps[-1], "confidence_gap": gap,
    }
