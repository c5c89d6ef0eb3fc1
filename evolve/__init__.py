"""evolve: breed better learners.

`evolve/` orchestrates the three leaf packages: `curricula` (task families and curriculum
strategies), `learners` (the stacked-LoRA population, probes, PEFT in and out, the embedded base)
and `fitness` (trajectories, signals, combining). This file imports nothing heavy.
"""

__version__ = "0.1.0"
