"""Training throughput and model-FLOPs utilization (MFU), measured side by side in one run.

    python bench/train_throughput.py                     # tiny and seed, fp32 and bf16, eager
    python bench/train_throughput.py --compile           # also torch.compile
    python bench/train_throughput.py --presets tiny --steps 10
    python bench/train_throughput.py --precisions fp32   # a CPU without native bf16 (below)

On a CPU without native bf16 (no AVX512_BF16 or AMX in /proc/cpuinfo) bf16 autocast can be
two orders of magnitude slower than float32 (a 2048^3 matmul at about 1 GFLOP/s on an AMD EPYC
with AVX2 only, bench/RESULTS.md): there `--amp auto` trains in float32, and bf16 is worth
timing only with `--precisions fp32,bf16 --presets tiny`.

MFU = flops_per_token() * tokens/s / peak, where the peak is a 2048x2048 matmul measured in
this same run in the same precision (fp32, and under bf16 autocast). The step timed is a full
training step: masking, forward, diffusion loss, backward, AdamW.
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
from ddlm.precision import autocast, cpu_has_native_bf16, dtype_name, resolve_amp  # noqa: E402

SHAPES = {"tiny": (16, 256), "seed": (8, 768), "small": (8, 512)}  # (batch, context)


def matmul_peak(dtype: torch.dtype | None, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n matmul, fp32 or under autocast(dtype); best of `repeats`."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    dev = torch.device("cpu")
    times = []
    for _ in range(repeats + 2):
        t0 = time.perf_counter()
        with autocast(dev, dtype):
            (a @ b).sum().item()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times[2:])


def measure(preset: str, dtype, compiled: bool, steps: int) -> dict:
    torch.manual_seed(0)
    batch, ctx = SHAPES[preset]
    model = DiffusionLM(ModelConfig.preset(preset))
    net = torch.compile(model) if compiled else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randint(0, 256, (batch, ctx))
    dev = torch.device("cpu")
    times = []
    for _ in range(steps + 2):  # two warm-up steps (compilation happens there)
        t0 = time.perf_counter()
        with autocast(dev, dtype):
            loss = diffusion_loss(net, x0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    step = statistics.median(times[2:])
    tok_s = batch * ctx / step
    return {"tok_s": tok_s, "flops": model.flops_per_token(ctx) * tok_s, "step_s": step}


def profile(preset: str, prec: str, dtype, top: int = 12) -> None:
    """Self CPU time per op over one training step (after two warm-ups), largest first."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.manual_seed(0)
    batch, ctx = SHAPES[preset]
    model = DiffusionLM(ModelConfig.preset(preset))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randint(0, 256, (batch, ctx))
    dev = torch.device("cpu")

    def step():
        with autocast(dev, dtype):
            loss = diffusion_loss(model, x0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(), step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"\n{preset} {prec}: one step, {total / 1e6:.2f} s of self CPU time")
    for e in events[:top]:
        share = e.self_cpu_time_total / total
        print(f"  {e.key:<52} {e.self_cpu_time_total / 1e6:7.3f} s {share:6.1%} x{e.count}")


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", default="tiny,seed")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument(
        "--profile",
        action="store_true",
        help="also print where the time of one training step goes, op by op (torch.profiler)",
    )
    p.add_argument(
        "--precisions",
        default=None,
        help="comma-separated, of fp32 and bf16 (default: both on a CPU with native bf16, "
        "fp32 alone on one without, where bf16 is far too slow to time)",
    )
    args = p.parse_args()
    native = cpu_has_native_bf16()
    precisions = (args.precisions or ("fp32,bf16" if native else "fp32")).split(",")
    if not precisions or any(x not in ("fp32", "bf16") for x in precisions):
        p.error(f"--precisions takes fp32 and/or bf16, not {args.precisions!r}")
    dtypes = {"fp32": None, "bf16": torch.bfloat16}

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, {cpu}"
    )
    auto = dtype_name(resolve_amp("auto", torch.device("cpu")))
    print(
        f"native bf16 (AVX512_BF16 or AMX): {'yes' if native else 'no'}; --amp auto trains in {auto}"
    )
    # without native bf16 a 2048^3 bf16 matmul can take a minute: its peak is taken smaller
    peaks = {
        x: matmul_peak(dtypes[x], n=2048 if x == "fp32" or native else 512) for x in precisions
    }
    print("matmul peak: " + ", ".join(f"{x} {v / 1e9:.1f} GFLOP/s" for x, v in peaks.items()))
    print()
    header = f"{'preset':<6} {'B x T':>8} {'precision':>9} {'mode':>8} {'tokens/s':>10} {'GFLOP/s':>9} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    results = {}
    modes = [False, True] if args.compile else [False]
    for preset in args.presets.split(","):
        for prec in precisions:
            dtype = dtypes[prec]
            for compiled in modes:
                r = measure(preset, dtype, compiled, args.steps)
                mfu = r["flops"] / peaks[prec]
                results[(preset, prec, compiled)] = {**r, "mfu": mfu}
                b, t = SHAPES[preset]
                mode = "compiled" if compiled else "eager"
                print(
                    f"{preset:<6} {f'{b}x{t}':>8} {prec:>9} {mode:>8} {r['tok_s']:>10.0f} "
                    f"{r['flops'] / 1e9:>9.1f} {mfu:>6.2f}"
                )
    print()
    for preset in args.presets.split(","):
        if {"fp32", "bf16"} <= set(precisions):
            fp32, bf16 = results[(preset, "fp32", False)], results[(preset, "bf16", False)]
            print(f"{preset}: bf16/fp32 tokens/s ratio {bf16['tok_s'] / fp32['tok_s']:.2f}")
        if args.compile:
            for prec in precisions:
                c, e = results[(preset, prec, True)], results[(preset, prec, False)]
                print(
                    f"{preset}: compiled/eager {prec} tokens/s ratio {c['tok_s'] / e['tok_s']:.2f}"
                )
    if args.profile:
        for preset in args.presets.split(","):
            for prec in precisions:
                profile(preset, prec, dtypes[prec])
    if "seed" in args.presets.split(","):
        for prec, goal in (("fp32", 0.8), ("bf16", 0.7)):
            if prec == "bf16" and not native:
                print("target seed bf16 MFU >= 0.7: does not apply (no native bf16 here)")
            elif prec in precisions:
                m = results[("seed", prec, False)]["mfu"]
                print(
                    f"target seed {prec} MFU >= {goal}: {m:.2f} {'met' if m >= goal else 'not met'}"
                )


if __name__ == "__main__":
    main()
