"""Sampling speed and quality for the shipped model, side by side in one run.

    python bench/sampling.py                  # prompt 256 bytes, 128 generated, 4 prompts
    python bench/sampling.py --prompts 8 --steps 16,64

For each strategy, number of steps and threshold: wall time per sample, network evaluations
(NFE), and quality = bits per byte that the shipped autoregressive model (`tiny-ar`) assigns to
the generated continuation given its prompt (lower reads more like the corpus). The reference
row is the corpus's own continuation of the same prompts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm import generate, load_pretrained  # noqa: E402
from ddlm.data import load_corpus, split  # noqa: E402
from ddlm.diffusion import continuation_bits_per_byte  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--prompt-length", type=int, default=256)
    p.add_argument("--length", type=int, default=128)
    p.add_argument("--prompts", type=int, default=4, help="prompts (from the validation split)")
    p.add_argument("--steps", default="16,32,64,128")
    p.add_argument("--thresholds", default="none,0.9")
    p.add_argument("--strategies", default="low_confidence,random")
    args = p.parse_args()
    torch.manual_seed(0)
    model, judge = load_pretrained("tiny"), load_pretrained("tiny-ar")
    _, val = split(load_corpus("pydoc"))
    span = args.prompt_length + args.length
    starts = torch.linspace(0, len(val) - span - 1, args.prompts).long().tolist()
    pairs = [
        (val[s : s + args.prompt_length], val[s + args.prompt_length : s + span]) for s in starts
    ]
    prompts = [bytes(pr.tolist()) for pr, _ in pairs]
    ref = statistics.mean(continuation_bits_per_byte(judge, pr, c) for pr, c in pairs)
    print(
        f"shipped tiny, prompt {args.prompt_length} bytes, {args.length} generated, {args.prompts} prompts"
    )
    print(f"reference: the corpus's own continuations score {ref:.3f} bits/byte under tiny-ar\n")
    header = f"{'strategy':<15} {'steps':>5} {'threshold':>9} {'NFE':>6} {'NFE/byte':>8} {'s/sample':>8} {'AR bpb':>7}"
    print(header)
    print("-" * len(header))
    rows = {}
    for strategy in args.strategies.split(","):
        for steps in [int(s) for s in args.steps.split(",")]:
            for th in args.thresholds.split(","):
                threshold = None if th == "none" else float(th)
                t0 = time.perf_counter()
                gens = generate(
                    model,
                    prompts,
                    args.length,
                    steps,
                    strategy=strategy,
                    threshold=threshold,
                    seed=0,
                )
                wall = (time.perf_counter() - t0) / len(gens)
                nfe = statistics.mean(g.nfe for g in gens)
                bpb = statistics.mean(
                    continuation_bits_per_byte(judge, pr, g.ids[g.fill])
                    for (pr, _), g in zip(pairs, gens)
                )
                rows[(strategy, steps, th)] = (nfe, wall, bpb)
                print(
                    f"{strategy:<15} {steps:>5} {th:>9} {nfe:>6.1f} {nfe / args.length:>8.3f} "
                    f"{wall:>8.2f} {bpb:>7.3f}"
                )
    base = rows.get(("low_confidence", args.length, "none"))
    if base:
        print(
            f"\nbaseline (low_confidence, steps = length): {base[2]:.3f} bits/byte, {base[0]:.0f} NFE"
        )
        for (strategy, steps, th), (nfe, _, bpb) in rows.items():
            if th != "none" and strategy == "low_confidence" and steps == args.length:
                ok = nfe / args.length <= 0.25 and bpb <= 1.05 * base[2]
                print(
                    f"threshold {th}: {nfe / args.length:.3f} NFE/byte, quality ratio {bpb / base[2]:.3f} "
                    f"(target <= 0.25 NFE/byte within 5%: {'met' if ok else 'not met'})"
                )


if __name__ == "__main__":
    main()
