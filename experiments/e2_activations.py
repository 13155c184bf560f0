"""Experiment 2: Mish vs SiLU vs GELU in the gated feed-forward network.

The original author: Mish "is slower by quite a bit but makes the network train in much
fewer steps". Same model, same data order, same masks; only the gate's activation changes.
Validation loss is recorded against steps and against training seconds, for several seeds.

    python experiments/e2_activations.py --seeds 3     # ~25 min on one core
"""

import time

from common import corpus, mean_sd, parse_args, recipe, train_run, val_bits, write_result

ACTIVATIONS = ("mish", "silu", "gelu")


def main() -> None:
    s = parse_args(__doc__, default_seeds=3)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    runs = {}
    for act in ACTIVATIONS:
        runs[act] = []
        for seed in s.seeds:
            net, rec = train_run({"ffn_activation": act}, recipe(s, seed=seed), s)
            rec["val_bits"] = val_bits(net, val, s)
            runs[act].append(rec)
    summary = {
        act: {
            "val_bits_per_byte": mean_sd([r["val_bits"]["bits_per_byte"] for r in rs]),
            "train_seconds": mean_sd([r["train_seconds"] for r in rs]),
            "tokens_per_s": mean_sd([r["tokens_per_s"] for r in rs]),
        }
        for act, rs in runs.items()
    }
    for act, row in summary.items():
        print(
            f"{act:5s} val {row['val_bits_per_byte']['mean']:.3f} +- "
            f"{row['val_bits_per_byte']['sd']:.3f} bits/byte, "
            f"{row['train_seconds']['mean']:.0f} s, {row['tokens_per_s']['mean']:.0f} tok/s"
        )
    write_result("e2_activations", s, started, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
