"""The bottom of the import graph: stdlib-only pieces every package may import.

`common` imports nothing of the project (`curricula`, `learners`, `fitness`, `evolve`), and those
packages import only downhill into it (tests/test_import_graph.py checks both):

- `common.registry`: the generic name → object `Registry` with lazy ``"module:object"`` entries;
- `common.errors`: `EvolveError`, the one exception the CLI turns into a one-line error;
- `common.cache`: the cache root (`$EVOLVE_CACHE`, else ``~/.cache/evolve``);
- `common.seeds`: seed derivation (`derive_seed`), stable across processes.
"""
