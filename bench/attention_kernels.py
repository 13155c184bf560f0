"""Which attention kernel is fastest on this CPU? SDPA's flash kernel, its math kernel,
attention written out (q k^T, softmax, times v) and ddlm's own path (`ddlm.sdpa.attend`: in a
bf16 training step, flash forward with a float32 backward), forward and backward, fp32 and bf16.

Issue 15 asks whether the CPU flash-attention kernel (44 % of a bf16 training step of `seed`)
is the slow part and whether another path would be faster. The shapes are those of training:
`seed` (batch 8, 16 heads, 768 positions, head width 32) and `tiny` (16, 6, 1024, 32). Each
kernel runs a full forward and backward on the same tensors, median of `--repeats`, all in one
process; the ratio printed is each kernel's time over flash's.

    python bench/attention_kernels.py              # both shapes, fp32 and bf16 (about a minute)
    python bench/attention_kernels.py --repeats 3
    python bench/attention_kernels.py --compile    # also the written-out form, torch.compile'd
    python bench/attention_kernels.py --compile --max-autotune   # ... with inductor's own GEMMs

`--compile` asks whether inductor, fusing the softmax (and its backward) into fewer passes over
the T x T scores, makes the written-out form, whose matmuls would run on AMX in bf16, beat the
flash kernel. `--max-autotune` lets inductor also try its C++ GEMM templates (AMX micro-kernels
on a CPU that has them) against ATen's. Compiling takes a minute or two per shape and precision
(TMPDIR must be writable).
"""

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm.sdpa import attend  # noqa: E402

SHAPES = {"seed": (8, 16, 768, 32), "tiny": (16, 6, 1024, 32)}  # (batch, heads, T, head width)


def written_out(q, k, v):  # (B, H, T, d) each -> (B, H, T, d)
    s = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return torch.softmax(s.float(), -1).to(q.dtype) @ v


def flash(q, k, v):
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
        return F.scaled_dot_product_attention(q, k, v)


def math_kernel(q, k, v):
    with sdpa_kernel([SDPBackend.MATH]):
        return F.scaled_dot_product_attention(q, k, v)


KERNELS = {"flash": flash, "math": math_kernel, "written out": written_out, "ddlm": attend}


def compiled_written_out(max_autotune: bool = False):
    """`written_out` under torch.compile (a fresh compile: one graph per shape and dtype)."""
    options = {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}
    return torch.compile(written_out, dynamic=False, options=options if max_autotune else None)


def time_kernels(shape, dtype, repeats: int, kernels: dict | None = None) -> dict[str, float]:
    """Median seconds of forward + backward per kernel, interleaved step by step."""
    kernels = kernels or KERNELS
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape, dtype=dtype)
    times = {name: [] for name in kernels}
    for i in range(repeats + 1):  # the first round warms up (and compiles)
        for name, fn in kernels.items():
            t0 = time.perf_counter()
            fn(q, k, v).backward(grad)
            if i:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--compile", action="store_true", help="also the written-out form compiled")
    p.add_argument("--max-autotune", action="store_true", help="compile with max_autotune")
    p.add_argument(
        "--shapes", default=",".join(SHAPES), help="comma-separated, of " + str(list(SHAPES))
    )
    a = p.parse_args()
    shapes = a.shapes.split(",")
    if unknown := sorted(set(shapes) - set(SHAPES)):
        p.error(f"unknown shapes {unknown}; choose from {sorted(SHAPES)}")
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for preset in shapes:
        for dtype in (torch.float32, torch.bfloat16):
            kernels = dict(KERNELS)
            if a.compile:
                kernels["compiled"] = compiled_written_out(a.max_autotune)
            t = time_kernels(SHAPES[preset], dtype, a.repeats, kernels)
            ratios = "  ".join(f"{n} {t[n] / t['flash']:.2f}x" for n in kernels)
            print(f"{preset:5} {str(dtype):15} flash {t['flash'] * 1e3:6.0f} ms   {ratios}")


if __name__ == "__main__":
    main()
