"""Experiment 4: a prompt longer than the answer.

The original project trained on plain windows (its loss masks every non-PAD byte of a window,
so any byte may be hidden) and used a prompt longer than the answer only when it sampled for
validation (prompts of 256-768 bytes, answers of 128-256). Its author asked what happens when
the prompt is longer than the answer. Two questions, as the author meant them:

1. Does a model trained on plain windows continue well after a prompt longer than its
   answer? Score the last third of every validation window given the first two thirds (the
   conditional ELBO, `bits_per_byte(..., prompt_len=...)`) against the same model's bits per
   byte on whole windows, and judge its continuations of such prompts. A control: the same
   answers with only the SHORT = 16 prompt bytes before them shown and the rest of the prompt
   left MASK (`context=SHORT`, in a window of the trained length). If the long prompt is
   used, the answers cost more with the short one.
2. Does training with clean prefixes help? Two variants of the same recipe: half the batches
   keep a clean prefix of random length (`clean_prefix_frac=0.5`), or every window keeps its
   first two thirds clean (`prompt_frac=2/3`, the original's validation ratio, which never
   trains the prompt region). Differences to plain windows are paired by seed, with their
   standard errors.

All models: the LONGER recipe (1,600 steps, shared with E2 and E3), three seeds, every
128-byte window of the validation split. Samples: 16 validation prompts of 85 bytes continued
by 43 (one byte per step), judged by the shipped `tiny-ar` (bits per byte; it also rewards
runs of spaces) and by distinct byte 4-grams.

    python experiments/e4_prompt_ratio.py --jobs 2     # ~30 min on 2 cores (after E2)
"""

import time

import torch
from common import (
    LONGER,
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

from ddlm import generate, load_pretrained
from ddlm.diffusion import bits_per_byte
from ddlm.quality import continuation_bits_per_byte, distinct_ngrams

VARIANTS = {
    "plain windows": {},
    "clean prefix, half the batches": {"clean_prefix_frac": 0.5},
    "clean prompt, 2/3 of every window": {"prompt_frac": 2 / 3},
}
BASE = "plain windows"
SHORT = 16  # prompt bytes shown in the short-prompt control


@torch.no_grad()
def sample_quality(net, judge, val: torch.Tensor, seq_len: int, n: int) -> dict:
    """Continue `n` validation prompts (2/3 of a window) and judge the continuations."""
    p = 2 * seq_len // 3
    starts = torch.linspace(0, len(val) - seq_len - 1, n).long().tolist()
    prompts = [bytes(val[s : s + p].tolist()) for s in starts]
    gens = generate(net, prompts, seq_len - p, steps=seq_len - p, seed=0)
    judged, texts = [], []
    for prompt, g in zip(prompts, gens):
        cont = g.ids[g.fill]
        judged.append(continuation_bits_per_byte(judge, torch.tensor(list(prompt)), cont))
        texts.append(bytes(cont.tolist()))
    return {
        "judge_bits_per_byte": mean_sd(judged),
        "distinct_4grams": distinct_ngrams(texts, 4),
        "examples": [
            {
                "prompt_end": pr[-40:].decode("utf-8", "replace"),
                "sample": t.decode("utf-8", "replace"),
            }
            for pr, t in zip(prompts[:4], texts[:4])
        ],
    }


def main() -> None:
    s = parse_args(__doc__, default_seeds=3)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    judge = load_pretrained("tiny-ar")
    chunks = 8 if s.quick else None
    tasks = [
        (name, dict(model={}, train=recipe(s, seed=seed, **LONGER, **over)))
        for name, over in VARIANTS.items()
        for seed in s.seeds
    ]
    prefetch([t for _, t in tasks], s)
    runs = {name: [] for name in VARIANTS}
    for name, task in tasks:
        net, rec = train_run(settings=s, **task)
        L = task["train"]["seq_len"]
        rec["val_bits"] = val_bits(net, val, s, seq_len=L)
        rec["answer_bits"] = bits_per_byte(
            net, val, seq_len=L, n_samples=4, max_chunks=chunks, prompt_len=2 * L // 3,
            batch_size=64,
        ).to_dict()  # fmt: skip
        rec["answer_bits_short_prompt"] = bits_per_byte(
            net, val, seq_len=L, n_samples=4, max_chunks=chunks, prompt_len=2 * L // 3,
            context=SHORT, batch_size=64,
        ).to_dict()  # fmt: skip
        rec["samples"] = sample_quality(net, judge, val, L, 4 if s.quick else 16)
        runs[name].append(rec)
    pick = {
        "whole": lambda r: r["val_bits"]["bits_per_byte"],
        "answer": lambda r: r["answer_bits"]["bits_per_byte"],
        "answer_short": lambda r: r["answer_bits_short_prompt"]["bits_per_byte"],
        "judge": lambda r: r["samples"]["judge_bits_per_byte"]["mean"],
        "distinct4": lambda r: r["samples"]["distinct_4grams"],
    }
    summary = {}
    for name, rs in runs.items():
        row = {k: mean_sd([f(r) for r in rs]) for k, f in pick.items()}
        row["answer_minus_whole"] = paired_difference(
            [pick["answer"](r) for r in rs], [pick["whole"](r) for r in rs]
        )
        row["short_minus_long"] = paired_difference(
            [pick["answer_short"](r) for r in rs], [pick["answer"](r) for r in rs]
        )
        row["minus_plain"] = {
            k: paired_difference([f(r) for r in rs], [f(r) for r in runs[BASE]])
            for k, f in pick.items()
        }
        summary[name] = row
        print(
            f"{name:34} whole {row['whole']['mean']:.3f}  answer|prompt {row['answer']['mean']:.3f}"
            f"  answer|{SHORT} bytes {row['answer_short']['mean']:.3f}"
            f"  judge {row['judge']['mean']:.3f}  dist4 {row['distinct4']['mean']:.2f}",
            flush=True,
        )
    write_result(
        "e4_prompt_ratio",
        s,
        started,
        {"runs": runs, "summary": summary, "base": BASE, "short_prompt": SHORT},
        shipped=("tiny-ar",),
    )


if __name__ == "__main__":
    main()
