"""Training throughput and model-FLOPs utilization (MFU), measured side by side in one run.

    python bench/train_throughput.py                     # tiny and seed, fp32 and bf16, eager
    python bench/train_throughput.py --compile           # also torch.compile of the model
    python bench/train_throughput.py --fuse              # also ddlm.fused (TrainConfig.fuse)
    python bench/train_throughput.py --sdpa-bwd          # also bf16 with SDPA's bf16 backward
    python bench/train_throughput.py --presets tiny --steps 10
    python bench/train_throughput.py --precisions fp32   # a CPU without native bf16 (below)

On a CPU without native bf16 (no AVX512_BF16 or AMX in /proc/cpuinfo) bf16 autocast can be
two orders of magnitude slower than float32 (a 2048^3 matmul at about 1 GFLOP/s on an AMD EPYC
with AVX2 only, bench/RESULTS.md): there `--amp auto` trains in float32, and bf16 is worth
timing only with `--precisions fp32,bf16 --presets tiny`. To time such a CPU on one that has
them, limit the instruction sets PyTorch's kernels may use (`isa_limits`; the output says so):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python bench/train_throughput.py --presets seed

(an emulation: the caches, memory and clocks stay this machine's).

MFU = flops_per_token() * tokens/s / peak, where the peak is a 2048x2048 matmul measured in
this same run in the same precision (fp32, and under bf16 autocast), before and after the
steps, the better of the two (on a shared virtual machine one measurement can be 20 % low).
The step timed is a full training step: masking, forward, diffusion loss, backward, AdamW.

`--profile` prints where one step's time goes, op by op, and two bounds. The first is the MFU
the step would reach if everything but the matrix multiplies and the attention kernel took no
time at all. The second asks what the attention kernel alone allows: it times one layer's
attention (forward and backward, `ddlm.sdpa.attend`, the model's own path) at the preset's
shapes, and adds every matmul of the step at the measured 2048^3 peak and nothing else. No
step with this kernel can beat that bound on this machine, however well the rest is fused.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm.diffusion import diffusion_loss  # noqa: E402
from ddlm.fused import fused  # noqa: E402
from ddlm.model import DiffusionLM, ModelConfig  # noqa: E402
from ddlm.precision import autocast, cpu_has_native_bf16, dtype_name, resolve_amp  # noqa: E402
from ddlm.sdpa import attend, f32_backward  # noqa: E402

SHAPES = {"tiny": (16, 256), "seed": (8, 768), "small": (8, 512)}  # (batch, context)


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, with its family and model numbers (two CPUs
    can share a name), or what `platform` knows elsewhere."""
    name, family, model = platform.processor() or platform.machine(), "", ""
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name":
                name = value
            elif key == "cpu family":
                family = value
            elif key == "model":
                model = value
            elif not line.strip():
                break
    except OSError:
        pass
    name = f"{name} (family {family} model {model})" if family else name
    return name + isa_limits()


# Environment variables that restrict the instruction sets PyTorch's kernels use: ATen's
# vectorised kernels, oneDNN (bf16 matmuls, some convolutions) and MKL (float32 matmuls). All
# three at AVX2 make an AVX512/AMX machine time like a CPU with AVX2 alone (bench/RESULTS.md).
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def _isa_settings() -> list[str]:
    """The ISA_VARIABLES set in this environment, as KEY=value."""
    return [f"{k}={os.environ[k]}" for k in ISA_VARIABLES if os.environ.get(k)]


def command_line() -> str:
    """This process's command as one shell line, with any instruction-set limits in front."""
    return " ".join([*_isa_settings(), "python", shlex.join(sys.argv)])


def isa_limits() -> str:
    """', instruction sets limited by ...' naming the variables set, or ''."""
    settings = _isa_settings()
    return f", instruction sets limited by {' '.join(settings)}" if settings else ""


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


# fused: ddlm.fused; compiled: torch.compile(model); sdpa-bwd: eager with SDPA's own bf16
# backward instead of ddlm.sdpa's float32 one (what every bf16 step ran before it)
MODES = ("eager", "fused", "compiled", "sdpa-bwd")
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")
ATTENTION = "scaled_dot_product"  # the SDPA kernels' names contain this


def _setup(preset: str, mode: str):
    torch.manual_seed(0)
    batch, ctx = SHAPES[preset]
    model = DiffusionLM(ModelConfig.preset(preset))
    net = torch.compile(model) if mode == "compiled" else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randint(0, 256, (batch, ctx))

    def step(dtype):
        with fused(mode == "fused"), f32_backward(mode != "sdpa-bwd"):
            with autocast(torch.device("cpu"), dtype):
                loss = diffusion_loss(net, x0)
            loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, step


def measure(preset: str, dtype, mode: str, steps: int) -> dict:
    batch, ctx = SHAPES[preset]
    model, step = _setup(preset, mode)
    times = []
    for _ in range(steps + 2):  # two warm-up steps (compilation happens there)
        t0 = time.perf_counter()
        step(dtype)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times[2:])
    tok_s = batch * ctx / step_s
    return {"tok_s": tok_s, "flops": model.flops_per_token(ctx) * tok_s, "step_s": step_s}


def profile(preset: str, prec: str, dtype, mode: str, mfu: float, top: int = 12) -> None:
    """Self CPU time per op over one training step (after two warm-ups), largest first, and
    the MFU bound when only matmuls and attention took time (`mfu` scaled by their share)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    _, step = _setup(preset, mode)
    step(dtype), step(dtype)
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        step(dtype)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    attn = sum(e.self_cpu_time_total for e in events if ATTENTION in e.key)
    print(f"\n{preset} {prec} {mode}: one step, {total / 1e6:.2f} s of self CPU time")
    for e in events[:top]:
        share = e.self_cpu_time_total / total
        print(f"  {e.key:<52} {e.self_cpu_time_total / 1e6:7.3f} s {share:6.1%} x{e.count}")
    print(
        f"  matmuls {mm / total:.0%}, attention {attn / total:.0%}, the rest "
        f"{1 - (mm + attn) / total:.0%}: with the rest free, MFU <= {mfu * total / (mm + attn):.2f}"
    )


def attention_bound(preset: str, dtype, peak: float, repeats: int = 5) -> tuple[float, float]:
    """(seconds of attention per training step, the MFU bound it allows): one layer's kernel
    forward and backward at the preset's shapes times the layer count, plus every matmul of
    the step at `peak`, with nothing else taking time."""
    batch, ctx = SHAPES[preset]
    model = DiffusionLM(ModelConfig.preset(preset))
    cfg, attn = model.config, model.blocks[0].attn
    d_qk = cfg.head_dim + getattr(attn, "q_rope_dim", 0)
    store = torch.bfloat16 if dtype is not None else torch.float32
    shape = (batch, cfg.n_heads, ctx)
    q, k = (torch.randn(*shape, d_qk, dtype=store, requires_grad=True) for _ in range(2))
    v = torch.randn(*shape, cfg.head_dim, dtype=store, requires_grad=True)
    grad = torch.randn(*shape, cfg.head_dim, dtype=store)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        attend(q, k, v).backward(grad)
        times.append(time.perf_counter() - t0)
    attn_s = statistics.median(times[1:]) * cfg.n_layers
    tokens = batch * ctx
    matmul_s = 3 * 2 * model.matmul_params() * tokens / peak
    return attn_s, model.flops_per_token(ctx) * tokens / (attn_s + matmul_s) / peak


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", default="tiny,seed")
    p.add_argument("--steps", type=int, default=4, help="timed steps per configuration")
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument("--fuse", action="store_true", help="also measure ddlm.fused (TrainConfig.fuse)")
    p.add_argument(
        "--sdpa-bwd",
        action="store_true",
        help="also measure bf16 steps with SDPA's own bf16 attention backward (ddlm.sdpa off)",
    )
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

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
        f"{cpu_name()}"
    )
    auto = dtype_name(resolve_amp("auto", torch.device("cpu")))
    print(
        f"native bf16 (AVX512_BF16 or AMX): {'yes' if native else 'no'}; --amp auto trains in {auto}"
    )

    # without native bf16 a 2048^3 bf16 matmul can take a minute: its peak is taken smaller
    def peaks_now():
        return {
            x: matmul_peak(dtypes[x], n=2048 if x == "fp32" or native else 512) for x in precisions
        }

    first = peaks_now()
    results = {}
    modes = ["eager"] + ["fused"] * args.fuse + ["compiled"] * args.compile
    modes += ["sdpa-bwd"] * args.sdpa_bwd
    for preset in args.presets.split(","):
        for prec in precisions:
            for mode in modes:
                if mode == "sdpa-bwd" and prec == "fp32":
                    continue  # float32 steps never take ddlm.sdpa's other path
                results[(preset, prec, mode)] = measure(preset, dtypes[prec], mode, args.steps)
    last = peaks_now()
    peaks = {x: max(first[x], last[x]) for x in precisions}

    def measured(preset: str, prec: str) -> list[str]:  # sdpa-bwd has no float32 row
        return [m for m in modes if (preset, prec, m) in results]

    print(
        "matmul peak (before / after the steps; MFU uses the better): "
        + ", ".join(f"{x} {first[x] / 1e9:.0f} / {last[x] / 1e9:.0f} GFLOP/s" for x in precisions)
    )
    print()
    header = f"{'preset':<6} {'B x T':>8} {'precision':>9} {'mode':>8} {'tokens/s':>10} {'GFLOP/s':>9} {'MFU':>6}"
    print(header)
    print("-" * len(header))
    for (preset, prec, mode), r in results.items():
        r["mfu"] = r["flops"] / peaks[prec]
        b, t = SHAPES[preset]
        print(
            f"{preset:<6} {f'{b}x{t}':>8} {prec:>9} {mode:>8} {r['tok_s']:>10.0f} "
            f"{r['flops'] / 1e9:>9.1f} {r['mfu']:>6.2f}"
        )
    print()
    for preset in args.presets.split(","):
        if {"fp32", "bf16"} <= set(precisions):
            fp32, bf16 = results[(preset, "fp32", "eager")], results[(preset, "bf16", "eager")]
            print(f"{preset}: bf16/fp32 tokens/s ratio {bf16['tok_s'] / fp32['tok_s']:.2f}")
        for prec in precisions:
            for mode in measured(preset, prec)[1:]:
                c, e = results[(preset, prec, mode)], results[(preset, prec, "eager")]
                print(f"{preset}: {mode}/eager {prec} tokens/s ratio {c['tok_s'] / e['tok_s']:.2f}")
    if args.profile:
        for preset in args.presets.split(","):
            for prec in precisions:
                # compiled ops hide in kernels
                for mode in [m for m in measured(preset, prec) if m != "compiled"]:
                    mfu = results[(preset, prec, mode)]["mfu"]
                    profile(preset, prec, dtypes[prec], mode, mfu)
                attn_s, bound = attention_bound(preset, dtypes[prec], peaks[prec])
                print(
                    f"{preset} {prec}: the attention kernel takes {attn_s:.2f} s of a step "
                    f"(forward and backward, every layer); with every matmul at the {prec} "
                    f"peak and nothing else taking time, MFU <= {bound:.2f}"
                )
    if "seed" in args.presets.split(","):
        for prec, goal in (("fp32", 0.8), ("bf16", 0.7)):
            if prec == "bf16" and not native:
                print("target seed bf16 MFU >= 0.7: does not apply (no native bf16 here)")
            elif prec in precisions:
                for mode in measured("seed", prec):
                    m = results[("seed", prec, mode)]["mfu"]
                    met = "met" if m >= goal else "not met"
                    print(f"target seed {prec} MFU >= {goal} ({mode}): {m:.2f} {met}")


if __name__ == "__main__":
    main()
