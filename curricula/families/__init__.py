"""Task families: one module each, listed in `curricula.registry.FAMILIES` (loaded on first use)."""
