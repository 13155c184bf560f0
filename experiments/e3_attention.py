"""Experiment 3: Multi-Head Latent Attention vs plain multi-head attention, and MLA's
`full` vs `decoupled` RoPE.

The original chose MLA because "a Medium article claimed it was better". MLA's claim is
about *memory*: it caches a low-rank latent instead of full keys and values. Here we
measure parameters, KV-cache elements per token, and validation bits per byte at equal
steps: 1,600 steps (the LONGER recipe, well below the unigram yardstick), three seeds, each
model scored on every 128-byte window of the validation split (ELBO, l-estimator), the
difference to MLA with full RoPE paired by seed with its standard error.

    python experiments/e3_attention.py --jobs 2     # ~25 min on 2 cores (shares E2's Mish runs)
"""

import time

from common import (
    LONGER,
    MICRO,
    UNIGRAM_BITS,
    corpus,
    mean_sd,
    paired_difference,
    parse_args,
    prefetch,
    recipe,
    train_run,
    val_bits,
    write_result,
)

from ddlm import DiffusionLM, ModelConfig

VARIANTS = {
    "MLA, full RoPE": {"attention": "mla", "rope": "full"},
    "MLA, decoupled RoPE": {"attention": "mla", "rope": "decoupled"},
    "MHA": {"attention": "mha"},
}
BASE = "MLA, full RoPE"


def main() -> None:
    s = parse_args(__doc__, default_seeds=3)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    tasks = [
        (name, dict(model=over, train=recipe(s, seed=seed, **LONGER)))
        for name, over in VARIANTS.items()
        for seed in s.seeds
    ]
    prefetch([t for _, t in tasks], s)
    runs = {name: [] for name in VARIANTS}
    for name, task in tasks:
        net, rec = train_run(settings=s, **task)
        rec["val_bits"] = val_bits(net, val, s)
        runs[name].append(rec)
    bits = {name: [r["val_bits"]["bits_per_byte"] for r in rs] for name, rs in runs.items()}
    summary = {}
    for name, over in VARIANTS.items():
        net = DiffusionLM(ModelConfig(**{**MICRO, **over}))
        summary[name] = {
            "params": runs[name][0]["params"],
            "kv_cache_elements_per_token": net.kv_cache_elements_per_token(),
            "flops_per_token": runs[name][0]["flops_per_token"],
            "val_bits_per_byte": mean_sd(bits[name]),
            "below_unigram": 1 - mean_sd(bits[name])["mean"] / UNIGRAM_BITS,
            "minus_base": paired_difference(bits[name], bits[BASE]),
        }
        row = summary[name]
        print(
            f"{name:20s} params {row['params']:,} kv/token {row['kv_cache_elements_per_token']} "
            f"val {row['val_bits_per_byte']['mean']:.3f}; minus {BASE} "
            f"{row['minus_base']['mean']:+.4f} +- {row['minus_base']['se']:.4f}"
        )
    write_result("e3_attention", s, started, {"runs": runs, "summary": summary, "base": BASE})


if __name__ == "__main__":
    main()
