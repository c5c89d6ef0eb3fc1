"""Do the trivia file's recorded priors describe the model as `evolve run` asks it?

    python bench/trivia_priors.py [--base smollm2] [--instruction TEXT] [--tokens N] [--json]

Asks the untrained base every question of `curricula/data/trivia.jsonl` through the engine's own
key-term probe path (`learners.probe.generate_greedy`: chat template, left-padded batched greedy
`generate()`, stopped at the end of turn or eos) as question + `--instruction` (default the
families' INSTRUCTION) with `--tokens` new tokens (default PRIOR_TOKENS), judges every answer by
its key terms, and counts how many verdicts agree with the recorded `prior_correct`.
"""

from __future__ import annotations

import argparse
import time

from _common import emit


def main() -> None:
    from curricula.families.trivia import DATA, INSTRUCTION, PRIOR_TOKENS, load_facts
    from curricula.items import key_terms_match

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="smollm2", help="the model the priors were recorded on")
    ap.add_argument("--instruction", default=INSTRUCTION, help="appended to each question")
    ap.add_argument("--tokens", type=int, default=PRIOR_TOKENS, help="new tokens per answer")
    ap.add_argument("--json", action="store_true", help="print JSON")
    a = ap.parse_args()
    import torch

    from learners.base import load_base, one_torch_thread
    from learners.probe import generate_greedy
    from learners.resolve import resolve

    one_torch_thread()
    model, tok = load_base(resolve(a.base))
    facts = load_facts(DATA)
    t = time.perf_counter()
    texts = generate_greedy(model, tok, 1, [f.question + a.instruction for f in facts], a.tokens,
                            1 << 18, torch.device("cpu"))[0]
    right = [key_terms_match(f.key_terms, x) for f, x in zip(facts, texts, strict=True)]
    known = [bool(f.prior_correct) for f in facts]
    editable = [k and f.cf_answer is not None for f, k in zip(facts, known, strict=True)]
    emit({"base": a.base, "instruction": a.instruction, "tokens": a.tokens,
          "questions": len(facts), "seconds": round(time.perf_counter() - t, 1),
          "right": sum(right), "agree_with_recorded": sum(r == k for r, k in zip(right, known, strict=True)),
          "known": sum(known), "known_right": sum(r and k for r, k in zip(right, known, strict=True)),
          "known_editable": sum(editable),
          "known_editable_right": sum(r and e for r, e in zip(right, editable, strict=True)),
          "unknown_right": sum(r and not k for r, k in zip(right, known, strict=True)),
          "same_text_as_recorded": sum(x.strip() == (f.prior_answer or "").strip()
                                       for f, x in zip(facts, texts, strict=True))}, a.json)


if __name__ == "__main__":
    main()
