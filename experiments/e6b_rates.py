"""Experiment 6b: which masking rates does a diffusion model learn first?

E6 found the micro diffusion model far behind its causal twin at 400 equal steps. Notebook 10
shows on the shipped pair where a trained diffusion model's bits go: with most neighbours
visible it needs far fewer bits per byte than its AR twin, with few it needs more, and its
bound is the average over every masking rate t. This script watches that curve form. The MICRO
diffusion model and its causal twin train with E6's recipe on the whole training split for
1,600 steps (E2's length). Every 100 steps the diffusion model's bits per masked byte are
measured at ten masking rates (the midpoints 0.05, 0.15, ..., 0.95) on 256 fixed validation
windows of 128 bytes, the length it trains at, with the same masks at every evaluation; the AR
twin's exact bits per byte are measured on the same windows (the last 127 bytes of each). At the
end both are scored on the whole validation split, as in E6. Two seeds.

    python experiments/e6b_rates.py --jobs 2     # ~20 min on 2 cores
"""

import math
import time

import torch
import torch.nn.functional as F
from common import corpus, mean_sd, parse_args, prefetch, recipe, train_run, val_bits, write_result

from ddlm.diffusion import mask_tokens, without_mask_logits
from ddlm.tokenizer import MASK_ID

RATES = [round(0.05 + 0.1 * i, 2) for i in range(10)]  # midpoints of ten equal slices of [0, 1]
N_WINDOWS = 256  # validation windows the rates are measured on (8 with --quick)
WINDOW = 128  # bytes: E6's training length
STEPS, EVAL_EVERY = 1600, 100


def windows(settings) -> torch.Tensor:
    """(N_WINDOWS, WINDOW) validation windows, spread evenly over the split."""
    _, val = corpus(settings.quick)
    whole = val[: len(val) // WINDOW * WINDOW].long().view(-1, WINDOW)
    n = 8 if settings.quick else N_WINDOWS
    return whole[torch.linspace(0, len(whole) - 1, n).long()]


def rates_scorer(settings):
    """A function scoring a model on the fixed windows: for a diffusion model, bits per masked
    byte at each rate in RATES (MASK and PAD left out of the softmax, as a clean byte is never
    either); for a causal model, exact bits per byte. Module-level, so that a worker process can
    build it by name ("e6b_rates:rates_scorer")."""
    x = windows(settings)
    gen = torch.Generator().manual_seed(0)
    masks = [mask_tokens(x, t, gen)[1] for t in RATES]  # the same masks at every evaluation

    def bits(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.transpose(1, 2), target, reduction="none") / math.log(2)

    def score(net) -> dict:
        with torch.no_grad():
            if net.config.causal:
                per_byte = torch.cat([bits(net(b)[:, :-1].float(), b[:, 1:]) for b in x.split(64)])
                return {"ar_bits": per_byte.mean().item()}
            per_rate = []
            for m in masks:
                ids = x.masked_fill(m, MASK_ID)
                b = torch.cat(
                    [
                        bits(without_mask_logits(net(i).float()), t)
                        for i, t in zip(ids.split(64), x.split(64))
                    ]
                )
                per_rate.append(b[m].mean().item())
            return {"rates": RATES, "bits": per_rate}

    return score


def main() -> None:
    s = parse_args(__doc__, default_seeds=2)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    tasks = [
        dict(
            model={"causal": causal},
            train=recipe(s, seed=seed, steps=STEPS, eval_every=EVAL_EVERY),
            tag="e6b rates curve",
            curve_eval="e6b_rates:rates_scorer",
        )
        for seed in s.seeds
        for causal in (False, True)
    ]
    prefetch(tasks, s)
    score = rates_scorer(s)
    runs = {"diffusion": [], "ar": []}
    for task in tasks:
        net, rec = train_run(settings=s, **{**task, "curve_eval": score})
        rec["val_bits"] = val_bits(net, val, s, seq_len=WINDOW)
        kind = "ar" if rec["model"]["causal"] else "diffusion"
        runs[kind].append(rec)
        last = rec["curve"]["eval"][-1]
        shown = last["ar_bits"] if kind == "ar" else " ".join(f"{b:.2f}" for b in last["bits"])
        print(f"seed {rec['train']['seed']} {kind}: at the end {shown}", flush=True)
    steps = runs["diffusion"][0]["curve"]["step"]
    summary = {
        "steps": steps,
        "rates": RATES,
        "n_windows": len(windows(s)),
        "window": WINDOW,
        "diffusion_bits": [  # [step][rate], mean over seeds
            [
                mean_sd([r["curve"]["eval"][i]["bits"][j] for r in runs["diffusion"]])["mean"]
                for j in range(len(RATES))
            ]
            for i in range(len(steps))
        ],
        "ar_bits": [
            mean_sd([r["curve"]["eval"][i]["ar_bits"] for r in runs["ar"]])["mean"]
            for i in range(len(steps))
        ],
        "estimators": {
            "rates": "one fixed mask draw per rate",
            "whole split": "elbo-l, 4 draws; exact-ar",
        },
    }
    write_result("e6b_rates", s, started, {"runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
