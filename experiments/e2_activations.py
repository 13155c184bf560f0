"""Experiment 2: Mish vs SiLU vs GELU in the gated feed-forward network.

The original author: Mish "is slower by quite a bit but makes the network train in much
fewer steps". Same model, same data order, same masks; only the gate's activation changes.
Each model trains for 1,600 steps (the LONGER recipe: about 13 % below the unigram
yardstick, where an activation's effect has room to show) with three seeds. Each is scored
on every 128-byte window of the validation split (the ELBO, l-estimator); the difference to
Mish is paired by seed, with its standard error. Validation loss is also recorded against
steps and training seconds (the trainer's estimate on 8 fixed batches). Speed is not ranked
here: the runs share the machine with each other.

    python experiments/e2_activations.py --jobs 2     # ~35 min on 2 cores
"""

import time

from common import (
    LONGER,
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

ACTIVATIONS = ("mish", "silu", "gelu")


def main() -> None:
    s = parse_args(__doc__, default_seeds=3)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    tasks = [
        dict(model={"ffn_activation": act}, train=recipe(s, seed=seed, **LONGER))
        for act in ACTIVATIONS
        for seed in s.seeds
    ]
    prefetch(tasks, s)
    runs = {act: [] for act in ACTIVATIONS}
    for task in tasks:
        net, rec = train_run(settings=s, **task)
        rec["val_bits"] = val_bits(net, val, s)
        runs[task["model"]["ffn_activation"]].append(rec)
    bits = {act: [r["val_bits"]["bits_per_byte"] for r in rs] for act, rs in runs.items()}
    summary = {
        act: {
            "val_bits_per_byte": mean_sd(bits[act]),
            "below_unigram": 1 - mean_sd(bits[act])["mean"] / UNIGRAM_BITS,
            "minus_mish": paired_difference(bits[act], bits["mish"]),
            "train_seconds": mean_sd([r["train_seconds"] for r in rs]),
        }
        for act, rs in runs.items()
    }
    for act, row in summary.items():
        d = row["minus_mish"]
        print(
            f"{act:5s} val {row['val_bits_per_byte']['mean']:.3f} bits/byte "
            f"({100 * row['below_unigram']:.0f} % below unigram); minus Mish "
            f"{d['mean']:+.4f} +- {d['se']:.4f} (paired, n={d['n']})"
        )
    write_result("e2_activations", s, started, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
