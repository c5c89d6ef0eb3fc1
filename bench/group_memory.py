"""Peak RSS of one batched process of 16 SmolLM2 learners (P = 32 over two cores, as
bench/population.py's batched_proc_per_core worker), its embedded-base workload (16 pairs of 24-digit
prompts), 3 train steps; ROOT is a checkout of the code to measure (compare two commits).

    python bench/group_memory.py ROOT
"""

from __future__ import annotations

import json
import resource
import sys
import time

root = sys.argv[1] if len(sys.argv) > 1 else "."
sys.path[:0] = [root, root + "/bench"]
import _common as c  # noqa: E402
from population import specs, stream  # noqa: E402

from learners.population import Population  # noqa: E402

model, tok = c.load(c.resolve_bench_base("smollm2"), 1)
pop = Population(model, tok, specs(0, 16), target_modules=("q_proj", "v_proj"))
data = [stream(j, 3) for j in range(16)]
t = time.process_time()
for s in range(3):
    pop.train_step([d[s] for d in data])
cpu = time.process_time() - t
tokens = getattr(pop, "tokens", None)
out = {"code": root, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
       "cpu_s_per_step": round(cpu / 3, 2),
       "learners_per_pass": pop._group([d[0] for d in data]),
       "tokens_per_sequence": tokens([d[0] for d in data]) if tokens else None}
print(json.dumps(out))
