"""A never-pretrained base for grokking inside evolution: a tiny random Llama whose tokenizer has
one token per number 0..N-1 (the input of the grokking papers), saved as a local causal LM for
`evolve run --base DIR` (or `base: DIR` in configs/grokking.yaml).

    python -m evolve.experiments.grokking.number_base --out ~/.cache/evolve/grok-base

Nothing is pretrained: every weight is random and stays frozen; LoRA learners adapt the linear
layers. The embeddings are drawn with std 1 (the first RMSNorm rescales them) and the output head
with std `out_std`: at the Llama default 0.02 the frozen head bounds every logit by about
hidden * 0.02 = 2.6, too small for the answer to win clearly; 0.1 lets it reach about 13.
Deterministic for a seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
SYMBOLS = tuple("+-*^%=")


def build(out: Path, numbers: int = 128, hidden: int = 128, layers: int = 2, heads: int = 4,
          out_std: float = 0.1, seed: int = 0, linear_std: float = 0.02) -> Path:
    """Write the random model and its number tokenizer to `out`; returns `out`."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    if numbers < 2 or hidden % heads or (hidden // heads) % 2:
        raise ValueError(f"numbers {numbers}, hidden {hidden}, heads {heads}: need numbers >= 2 "
                         "and an even head dim (hidden / heads)")
    vocab = {t: i for i, t in enumerate((*SPECIALS, *SYMBOLS, *map(str, range(numbers))))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\d+|\D"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", bos_token="<s>",
                                  eos_token="</s>", unk_token="<unk>", padding_side="right")
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=heads,
                      num_key_value_heads=heads, max_position_embeddings=16, pad_token_id=0,
                      bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
                      initializer_range=linear_std)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
        with torch.no_grad():
            model.model.embed_tokens.weight.normal_(0.0, 1.0)
            model.lm_head.weight.normal_(0.0, out_std)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="directory to write the base into")
    p.add_argument("--numbers", type=int, default=128, help="tokens 0..N-1 (default 128)")
    p.add_argument("--hidden", type=int, default=128, help="model width (default 128)")
    p.add_argument("--layers", type=int, default=2, help="decoder blocks (default 2)")
    p.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    p.add_argument("--linear-std", type=float, default=0.02,
                   help="std of the frozen linear layers (default 0.02, Llama's)")
    a = p.parse_args(argv)
    if not a.linear_std > 0:
        p.error(f"--linear-std {a.linear_std}: give a number > 0 (at 0 LoRA's gradients vanish)")
    print(build(a.out.expanduser(), a.numbers, a.hidden, a.layers, seed=a.seed,
                linear_std=a.linear_std))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
