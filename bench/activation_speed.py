"""Mish, SiLU and GELU per second: full training steps of the findings' micro model, interleaved.

Experiment 2 (notebook 10) compares the activations per *step*; its runs' wall times are not a
speed measurement (they ran two at a time, sharing memory bandwidth with whatever ran beside
them). This bench times them alone: the micro model of `experiments/common.py` (dim 128, 4
layers, 4 heads, batch 16 x 128 bytes, float32), one full training step at a time (masking,
forward, diffusion loss, backward, AdamW), the three activations taking turns step after step
(round-robin, so that a change in the machine's load hits all three alike), `--repeats` rounds
after warm-up. It prints the median step time of each and its ratio to Mish, for one thread
(as the experiments train) and for all threads.

    python bench/activation_speed.py                   # ~1 min on 2 cores
    python bench/activation_speed.py --repeats 50 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm.diffusion import diffusion_loss  # noqa: E402
from ddlm.model import DiffusionLM, ModelConfig  # noqa: E402

MICRO = dict(dim=128, n_layers=4, n_heads=4, kv_latent_dim=32, max_seq_len=256)
ACTIVATIONS = ("mish", "silu", "gelu")


def make_step(activation: str, batch: int, seq_len: int):
    """A closure that runs one training step of a fresh micro model with `activation`."""
    torch.manual_seed(0)
    model = DiffusionLM(ModelConfig(**MICRO, ffn_activation=activation))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x0 = torch.randint(0, 256, (batch, seq_len))

    def step() -> float:
        t0 = time.perf_counter()
        loss = diffusion_loss(model, x0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    return step


def race(threads: int, repeats: int, batch: int, seq_len: int) -> dict[str, float]:
    """Median seconds per step of each activation, the three interleaved step by step."""
    torch.set_num_threads(threads)
    steps = {a: make_step(a, batch, seq_len) for a in ACTIVATIONS}
    for _ in range(3):  # warm-up: allocator, kernels, AdamW state
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {a: [] for a in ACTIVATIONS}
    for _ in range(repeats):
        for a, step in steps.items():
            times[a].append(step())
    return {a: statistics.median(t) for a, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--repeats", type=int, default=30, help="timed rounds of the three")
    p.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 and all")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=128)
    a = p.parse_args()
    if a.repeats < 1:
        p.error("--repeats must be at least 1")
    every = torch.get_num_threads()
    threads = a.threads or sorted({1, every})
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    print(f"torch {torch.__version__}, {os.cpu_count()} cores, {cpu}")
    print(f"micro model, batch {a.batch} x {a.seq_len}, float32, median of {a.repeats} interleaved")
    print(f"{'threads':>7} " + " ".join(f"{x:>14}" for x in ACTIVATIONS))
    for n in threads:
        med = race(n, a.repeats, a.batch, a.seq_len)
        cells = [f"{med[x] * 1e3:6.1f} ms {med[x] / med['mish']:4.2f}x" for x in ACTIVATIONS]
        print(f"{n:>7} " + " ".join(f"{c:>14}" for c in cells))
    print("(ratio = step time / Mish's step time; below 1 = faster than Mish)")


if __name__ == "__main__":
    main()
