"""Experiment 8: diffusion and its AR twin at four sizes, each trained for the same wall time.

Nie et al., "Scaling up Masked Diffusion Models on Text", arXiv 2410.18514, fit scaling laws
for both kinds up to 1 B parameters and find masked diffusion needs more compute for the
same loss, a gap that stays roughly constant in compute factor as both grow; MDLM
(arXiv 2406.07524) reports diffusion within about 9 % of AR in nats at 1 M+ steps. What does
the gap look like at 0.2-5 M parameters on a CPU?

Four bodies from 0.2 M to 4.6 M parameters, each trained twice (masked diffusion, and its
causal twin) for the same number of steps of 16 x 128 bytes. The steps are set so that a
run takes `--minutes` on this machine: a short probe times one step of each (size, kind),
and both kinds of a size get the steps the slower one can do in that time, so the two see
the same bytes and the same compute (their FLOPs per token are the same). Bigger models
therefore see fewer bytes: this is the trade a fixed CPU budget forces. The learning rate
shrinks with width (3e-3 x sqrt(128 / dim)). Each model is scored on the whole validation
split at 128-byte windows: exact for AR, the ELBO (l-estimator, 4 draws) for diffusion.

    python experiments/e8_scaling.py --jobs 2     # ~30 min on 2 cores (6 min per run)
"""

import argparse
import math
import sys
import time

import torch
from common import (
    MICRO,
    corpus,
    mean_sd,
    parse_args,
    prefetch,
    recipe,
    train_run,
    val_bits,
    write_result,
)

from ddlm import DiffusionLM, ModelConfig
from ddlm.diffusion import diffusion_loss

# name -> body (attention: MLA with a latent of a third to a quarter of the width)
SIZES = {
    "0.2M": dict(dim=64, n_layers=3, n_heads=2, kv_latent_dim=16),
    "0.8M": dict(dim=128, n_layers=4, n_heads=4, kv_latent_dim=32),
    "2.5M": dict(dim=192, n_layers=6, n_heads=6, kv_latent_dim=64),
    "4.6M": dict(dim=256, n_layers=6, n_heads=8, kv_latent_dim=64),
}


def minutes_option() -> float:
    """--minutes (training time per run), read before common's parser sees the rest."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--minutes", type=float, default=6.0)
    known, rest = p.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    return known.minutes


def seconds_per_step(body: dict, causal: bool, batch: int, seq_len: int) -> float:
    """Median time of a training step (forward, loss, backward, AdamW) after two warm-ups."""
    torch.manual_seed(0)
    model = DiffusionLM(ModelConfig(**{**MICRO, **body, "causal": causal}))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (batch, seq_len))
    times = []
    for i in range(7):
        t0 = time.perf_counter()
        if causal:
            logits = model(x)[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:])
        else:
            loss = diffusion_loss(model, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main() -> None:
    minutes = minutes_option()
    s = parse_args(__doc__, default_seeds=1)
    started = time.perf_counter()
    _, val = corpus(s.quick)
    base = recipe(s)
    B, T = base["batch_size"], base["seq_len"]
    budget = 3.0 if s.quick else 60.0 * minutes  # seconds of training per run
    plan, tasks = {}, []
    for name, body in SIZES.items():
        probe = {kind: seconds_per_step(body, kind == "ar", B, T) for kind in ("diffusion", "ar")}
        steps = max(4, int(budget / max(probe.values())))
        lr = 3e-3 * math.sqrt(128 / body["dim"])
        plan[name] = {"seconds_per_step": probe, "steps": steps, "lr": lr}
        print(f"{name}: {probe} s/step -> {steps} steps at lr {lr:.2e}", flush=True)
        for seed in s.seeds:
            for causal in (False, True):
                train = recipe(s, seed=seed, lr=lr, warmup_steps=max(2, steps // 20))
                train.update(steps=steps, eval_every=0, log_every=max(1, steps // 20))
                tasks.append(dict(model={**body, "causal": causal}, train=train, tag="e8"))
    prefetch(tasks, s)
    runs = {name: {"diffusion": [], "ar": []} for name in SIZES}
    for name, task in zip([n for n in SIZES for _ in s.seeds for _ in range(2)], tasks):
        net, rec = train_run(settings=s, **task)
        rec["val_bits"] = val_bits(net, val, s, seq_len=T)
        rec["train_flops"] = rec["flops_per_token"] * rec["train"]["steps"] * B * T
        runs[name]["ar" if rec["model"]["causal"] else "diffusion"].append(rec)
    table = []
    for name, kinds in runs.items():
        d = [r["val_bits"]["bits_per_byte"] for r in kinds["diffusion"]]
        a = [r["val_bits"]["bits_per_byte"] for r in kinds["ar"]]
        row = {
            "size": name,
            "params": kinds["diffusion"][0]["params"],
            "steps": plan[name]["steps"],
            "train_bytes": plan[name]["steps"] * B * T,
            "train_flops": kinds["diffusion"][0]["train_flops"],
            "train_seconds": {
                k: mean_sd([r["train_seconds"] for r in kinds[k]]) for k in ("diffusion", "ar")
            },
            "diffusion_bits": mean_sd(d),
            "ar_bits": mean_sd(a),
            "ratio": mean_sd([x / y for x, y in zip(d, a)]),
        }
        table.append(row)
        print(
            f"{name:5} {row['params']:>9,} params {row['steps']:>5} steps: diffusion "
            f"{row['diffusion_bits']['mean']:.3f}, AR {row['ar_bits']['mean']:.3f}, ratio "
            f"{row['ratio']['mean']:.3f}",
            flush=True,
        )
    payload = {
        "minutes_per_run": minutes,
        "sizes": SIZES,
        "plan": plan,
        "runs": runs,
        "table": table,
        "estimators": {"diffusion": "elbo-l, 4 draws", "ar": "exact-ar"},
    }
    write_result("e8_scaling", s, started, payload)


if __name__ == "__main__":
    main()
