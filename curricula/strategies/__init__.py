"""Curriculum strategies: one module each, listed in `curricula.registry.STRATEGIES` (loaded on
first use)."""
