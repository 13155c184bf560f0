"""Which attention kernel is fastest on this CPU? SDPA's flash kernel, its math kernel, and
attention written out (q k^T, softmax, times v), forward and backward, fp32 and bf16.

Issue 15 asks whether the CPU flash-attention kernel (44 % of a bf16 training step of `seed`)
is the slow part and whether another path would be faster. The shapes are those of training:
`seed` (batch 8, 16 heads, 768 positions, head width 32) and `tiny` (16, 6, 1024, 32). Each
kernel runs a full forward and backward on the same tensors, median of `--repeats`, all in one
process; the ratio printed is each kernel's time over flash's.

    python bench/attention_kernels.py              # both shapes, fp32 and bf16 (about a minute)
    python bench/attention_kernels.py --repeats 3
"""

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

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


KERNELS = {"flash": flash, "math": math_kernel, "written out": written_out}


def time_kernels(shape, dtype, repeats: int) -> dict[str, float]:
    """Median seconds of forward + backward per kernel, interleaved step by step."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(3))
    grad = torch.randn(shape, dtype=dtype)
    times = {name: [] for name in KERNELS}
    for i in range(repeats + 1):  # the first round warms up
        for name, fn in KERNELS.items():
            t0 = time.perf_counter()
            fn(q, k, v).backward(grad)
            if i:
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    for preset, shape in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            t = time_kernels(shape, dtype, a.repeats)
            ratios = "  ".join(f"{n} {t[n] / t['flash']:.2f}x" for n in KERNELS)
            print(f"{preset:5} {str(dtype):15} flash {t['flash'] * 1e3:6.0f} ms   {ratios}")


if __name__ == "__main__":
    main()
