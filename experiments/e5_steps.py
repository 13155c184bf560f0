"""Experiment 5: how many denoising steps?

The original project samples with 64 steps, in random order with the argmax byte. With the shipped `tiny` model we continue
validation prompts (64 bytes) by 256 bytes with steps in {8, 16, 32, 64, 128, 256}, for
LLaDA's low-confidence remasking (greedy), the nearest to the original's sampler (random
order, greedy), random order with temperature 0.8, and ddlm's default sampler, and score each
setting by
* the bits per byte that the shipped autoregressive model `tiny-ar` assigns to the
  continuation (lower = reads more like the corpus), and
* the fraction of distinct byte 4-grams (low = repetitive: the judge alone *rewards* runs
  of spaces, so the two are read together);
plus wall time. The corpus's own continuations are scored the same way as a reference.

    python experiments/e5_steps.py     # ~15 min on one core
"""

import dataclasses
import time

import torch
from common import corpus, mean_sd, parse_args, write_result

from ddlm import SamplerConfig, generate, load_pretrained
from ddlm.quality import continuation_bits_per_byte, distinct_ngrams

STEPS = (8, 16, 32, 64, 128, 256)
# name -> SamplerConfig fields, each spelled out (so a change of ddlm's defaults cannot change
# them), plus ddlm's own default sampler as it is when the script runs.
SETTINGS = {
    # LLaDA's low-confidence remasking, greedy.
    "low-confidence, greedy": dict(strategy="low_confidence", confidence="probability"),
    # The nearest to the original project's sampler: random order, the argmax byte (the
    # original keeps each mask with probability s/t, a random count with the same mean).
    "random order, greedy (the original's)": dict(strategy="random"),
    # Random order, sampling at temperature 0.8.
    "random order, T=0.8": dict(strategy="random", temperature=0.8),
    "ddlm's default": None,
}
# LLaDA's sampler under every row but the default: no gap, no-repeat rule or order bias
PLAIN = SamplerConfig.llada()


def config_of(name: str) -> SamplerConfig:
    over = SETTINGS[name]
    return SamplerConfig() if over is None else PLAIN.with_options(**over)


def main() -> None:
    s = parse_args(__doc__)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    model, judge = load_pretrained("tiny"), load_pretrained("tiny-ar")
    n_prompts, prompt_len = (2, 32) if s.quick else (8, 64)
    length = 32 if s.quick else 256
    steps_grid = [k for k in STEPS if k <= length]
    starts = torch.linspace(0, len(val) - prompt_len - length - 1, n_prompts).long().tolist()
    prompts = [bytes(val[a : a + prompt_len].tolist()) for a in starts]
    truths = [val[a + prompt_len : a + prompt_len + length] for a in starts]

    def judge_all(conts: list[torch.Tensor]) -> dict:
        bits = [
            continuation_bits_per_byte(judge, torch.tensor(list(p)), c.long())
            for p, c in zip(prompts, conts)
        ]
        return {
            "judge_bits_per_byte": mean_sd(bits),
            "distinct_4grams": distinct_ngrams([bytes(c.tolist()) for c in conts], 4),
        }

    reference = judge_all(truths)
    rows = []
    for name in SETTINGS:
        config = config_of(name)
        for steps in steps_grid:
            t0 = time.perf_counter()
            gens = generate(model, prompts, length, config, steps=steps, seed=0)
            wall = time.perf_counter() - t0
            conts = [g.ids[g.fill] for g in gens]
            row = {
                "setting": name,
                "config": dataclasses.asdict(config.with_options(steps=steps)),
                "strategy": config.strategy,
                "temperature": config.temperature,
                "steps": steps,
                "seconds_per_sample": wall / len(prompts),
                "nfe": gens[0].nfe,
                **judge_all(conts),
                "example": bytes(conts[0].tolist()).decode("utf-8", "replace"),
            }
            rows.append(row)
            print(
                f"{name:38s} steps {steps:4d}: judge {row['judge_bits_per_byte']['mean']:.3f} "
                f"dist4 {row['distinct_4grams']:.3f} {row['seconds_per_sample']:.2f} s/sample",
                flush=True,
            )
    write_result(
        "e5_steps",
        s,
        started,
        {
            "prompt_bytes": prompt_len,
            "length": length,
            "n_prompts": n_prompts,
            "reference": reference,
            "rows": rows,
            "prompt_example": prompts[0].decode("utf-8", "replace"),
        },
        shipped=("tiny", "tiny-ar"),
    )


if __name__ == "__main__":
    main()
