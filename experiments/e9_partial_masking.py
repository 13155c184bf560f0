"""Experiment 9: partial masking (MDM-Prime on bytes) where the data run out.

Chao et al., "Beyond Masked and Unmasked: Discrete Diffusion Models via Partial Masking"
(arXiv 2505.18495), write each token as l digits and mask the digits one by one, so that a
position can be half known. They report their gains at scale, with data reused for many
epochs. `bench/diffusion_gap.py` measured the byte form at nanoGPT's small CPU recipe
(2,000 steps on 2 MB, two seeds): nibbles and bits were both a little worse than whole bytes.
This experiment tries the setting where the papers saw diffusion gain most, E7's: the MICRO
body on a 100 kB slice of the training split for about 41 epochs.

Two models per seed, identical but for `ModelConfig.subtokens`: whole bytes (plain masking)
and nibbles (`subtokens=2`, the better sub-byte form in the bench). Every 100 steps both are
scored on the *whole* validation split at 128-byte windows, the length they train at, with
LLaDA's l-estimator (4 draws a window): over the window's bytes for plain masking
("elbo-l"), over its digits for nibbles ("elbo-l-digits"). Both are upper bounds on
-log2 p of the same validation bytes, so they compare directly. Two seeds, paired: a seed
fixes the data order for both models.

    python experiments/e9_partial_masking.py --jobs 2     # ~25 min on 2 cores
"""

import time

from common import (
    constrained_data,
    mean_sd,
    paired_difference,
    parse_args,
    prefetch,
    recipe,
    train_run,
    whole_val_scorer,
    write_result,
)

SLICE = 100_000  # training bytes, as E7
STEPS = 2000  # x 16 x 128 bytes = 41 epochs of the slice
EVAL_EVERY = 100
VARIANTS = {"whole bytes": {}, "nibbles": {"subtokens": 2}}
BASE = "whole bytes"


def main() -> None:
    s = parse_args(__doc__, default_seeds=2)
    started = time.perf_counter()
    data, val_fraction = constrained_data(s.quick, SLICE)
    train_bytes = round(len(data) * (1 - val_fraction))
    steps = 12 if s.quick else STEPS
    every = 4 if s.quick else EVAL_EVERY
    tasks = [
        (
            name,
            dict(
                model=over,
                train=recipe(
                    s, seed=seed, steps=steps, eval_every=every, val_fraction=val_fraction
                ),
                data=data,
                tag=f"e7 slice {train_bytes} whole-val curve",
                curve_eval="common:whole_val_scorer",
            ),
        )
        for seed in s.seeds
        for name, over in VARIANTS.items()
    ]
    prefetch([t for _, t in tasks], s)
    score = whole_val_scorer(s)
    runs = {name: [] for name in VARIANTS}
    for name, task in tasks:
        _, rec = train_run(settings=s, **{**task, "curve_eval": score})
        tokens = rec["train"]["batch_size"] * rec["train"]["seq_len"]
        rec["epochs"] = [st * tokens / train_bytes for st in rec["curve"]["step"]]
        rec["bits"] = [e["bits_per_byte"] for e in rec["curve"]["eval"]]
        rec["estimator"] = rec["curve"]["eval"][-1]["estimator"]
        runs[name].append(rec)
    final = {name: [r["bits"][-1] for r in rs] for name, rs in runs.items()}
    best = {name: [min(r["bits"]) for r in rs] for name, rs in runs.items()}
    summary = {"train_bytes": train_bytes, "params": {}, "variants": {}, "base": BASE}
    for name, rs in runs.items():
        summary["params"][name] = rs[0]["params"]
        summary["variants"][name] = {
            "estimator": rs[0]["estimator"],
            "final_bits": mean_sd(final[name]),
            "best_bits": mean_sd(best[name]),
            "final_minus_base": paired_difference(final[name], final[BASE]),
            "best_minus_base": paired_difference(best[name], best[BASE]),
            "per_seed_final": final[name],
            "per_seed_best": best[name],
        }
        print(
            f"{name:12} final {', '.join(f'{b:.3f}' for b in final[name])}  best "
            f"{', '.join(f'{b:.3f}' for b in best[name])} bits/byte ({rs[0]['estimator']})",
            flush=True,
        )
    summary["steps"] = runs[BASE][0]["curve"]["step"]
    summary["epochs"] = runs[BASE][0]["epochs"]
    summary["mean_bits"] = {
        name: [sum(col) / len(col) for col in zip(*[r["bits"] for r in rs])]
        for name, rs in runs.items()
    }
    write_result("e9_partial_masking", s, started, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
