"""Do short prompts collapse? Sample quality of diffusion checkpoints from short prompts.

A model trained only on full windows, asked to continue a 10-20 byte prompt, may fill its
canvas with spaces. For each checkpoint: continue 12 short prompts by 128 bytes (64 steps;
by default `generate`'s low-confidence greedy sampler) and report

* collapsed: the share of samples whose second half is more than 75 % spaces,
* dist4: distinct byte 4-grams over all samples (low = repetitive),
* judge: bits per byte that the shipped AR model gives the samples (lower = more corpus-like;
  it rewards runs of spaces, so read it with the other two).

`--settings` compares samplers (strategy:temperature pairs) on each checkpoint.

    python bench/short_prompts.py tiny runs/my-model ...
    python bench/short_prompts.py tiny --settings low_confidence:0 random:0 random:0.8
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm import generate, load_pretrained  # noqa: E402
from ddlm.ar import continuation_bits_per_byte  # noqa: E402
from ddlm.quality import distinct_ngrams  # noqa: E402

PROMPTS = [
    "The assert statement",
    "Return a new",
    "The default is",
    "If the",
    "This module provides",
    "Raise an exception",
    "A list of",
    "When the",
    "The file",
    "Note that",
    "For example,",
    "This function",
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="names or directories")
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument(
        "--settings", nargs="+", default=["low_confidence:0"], help="strategy:temperature pairs"
    )
    a = p.parse_args()
    settings = [(x.split(":")[0], float(x.split(":")[1])) for x in a.settings]
    judge = load_pretrained("tiny-ar")
    print(f"{len(PROMPTS)} prompts, {a.length} bytes, {a.steps} steps, seed 0\n")
    print(
        f"{'checkpoint':28} {'sampler':20} {'collapsed':>9} {'dist4':>6} {'judge':>6} {'s/sample':>8}"
    )
    models = {name: load_pretrained(name) for name in a.checkpoints}  # each read once
    for name, (strategy, temp) in [(c, st) for c in a.checkpoints for st in settings]:
        model = models[name]
        t0 = time.perf_counter()
        gens = generate(
            model, PROMPTS, a.length, steps=a.steps, strategy=strategy, temperature=temp, seed=0
        )
        wall = (time.perf_counter() - t0) / len(PROMPTS)
        conts = [bytes(g.ids[g.fill].tolist()) for g in gens]
        half = a.length // 2
        collapsed = sum(c[half:].count(b" ") > 0.75 * (a.length - half) for c in conts)
        judged = statistics.fmean(
            continuation_bits_per_byte(
                judge, torch.tensor(list(pr.encode())), torch.tensor(list(c))
            )
            for pr, c in zip(PROMPTS, conts)
        )
        print(
            f"{name[-28:]:28} {f'{strategy}, T={temp:g}':20} {collapsed:>6}/{len(PROMPTS)} {distinct_ngrams(conts):>6.3f} "
            f"{judged:>6.3f} {wall:>8.2f}"
        )
        for pr, g in list(zip(PROMPTS, gens))[:3]:
            print(f"    {pr!r} -> {g.text[:90]!r}")


if __name__ == "__main__":
    main()
