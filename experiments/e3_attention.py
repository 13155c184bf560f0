"""Experiment 3: Multi-Head Latent Attention vs plain multi-head attention, and MLA's
`full` vs `decoupled` RoPE.

The original chose MLA because "a Medium article claimed it was better". MLA's claim is
about *memory*: it caches a low-rank latent instead of full keys and values. Here we
measure parameters, KV-cache elements per token, validation bits per byte at equal steps,
and the loss against training seconds (equal compute).

    python experiments/e3_attention.py --seeds 2     # ~20 min on one core
"""

import time

from common import corpus, mean_sd, parse_args, recipe, train_run, val_bits, write_result

VARIANTS = {
    "MLA, full RoPE": {"attention": "mla", "rope": "full"},
    "MLA, decoupled RoPE": {"attention": "mla", "rope": "decoupled"},
    "MHA": {"attention": "mha"},
}


def main() -> None:
    s = parse_args(__doc__, default_seeds=2)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    runs, summary = {}, {}
    for name, over in VARIANTS.items():
        runs[name] = []
        for seed in s.seeds:
            net, rec = train_run(over, recipe(s, seed=seed), s)
            rec["val_bits"] = val_bits(net, val, s)
            runs[name].append(rec)
        summary[name] = {
            "params": runs[name][0]["params"],
            "kv_cache_elements_per_token": net.kv_cache_elements_per_token(),
            "flops_per_token": runs[name][0]["flops_per_token"],
            "val_bits_per_byte": mean_sd([r["val_bits"]["bits_per_byte"] for r in runs[name]]),
            "tokens_per_s": mean_sd([r["tokens_per_s"] for r in runs[name]]),
        }
        row = summary[name]
        print(
            f"{name:20s} params {row['params']:,} kv/token {row['kv_cache_elements_per_token']} "
            f"val {row['val_bits_per_byte']['mean']:.3f} +- {row['val_bits_per_byte']['sd']:.3f} "
            f"{row['tokens_per_s']['mean']:.0f} tok/s"
        )
    write_result("e3_attention", s, started, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
