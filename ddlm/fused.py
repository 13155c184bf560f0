"""Fused elementwise work: RMSNorm and the Mish gate as one compiled loop each (opt-in).

In eager PyTorch every elementwise op is its own pass over memory. RMSNorm is about seven
of them (cast, square, mean, rsqrt, two multiplies, cast back), and the gate of the
feed-forward network, mish(w1 x) * (w3 x), runs three transcendental functions per element
(mish(x) = x tanh(softplus(x)): an exp, a log1p and a tanh), then a multiply, and its
backward pass evaluates them again. On a CPU whose matrix units make the matmuls cheap
(bf16 on AMX), that elementwise work becomes a large share of a training step
(`python bench/train_throughput.py --profile`).

Two changes, both exact up to rounding:

* `torch.compile` each function on its own (not the model), so that each becomes one loop
  forward and one backward, vectorised C++ on a CPU; and
* write Mish with a single exp. With n = e^x,

      tanh(softplus(x)) = tanh(log(1 + n)) = ((1 + n)^2 - 1) / ((1 + n)^2 + 1)
                        = n (n + 2) / (n (n + 2) + 2),

  so mish(x) = x * w / (w + 2) with w = n (n + 2). For x > 20 the ratio is 1 to float32
  precision and n^2 would overflow, so mish(x) = x there.

Both compute in float32 and round once at the end, which is at least as accurate as the
eager path. `with fused():` switches them on for the block it wraps (the trainer runs its loop
inside it for `TrainConfig.fuse`; `enabled()` says whether they are on); the first call
compiles (some seconds), and a new shape or dtype compiles again, after which torch.compile
goes dynamic. Shapes: (..., dim) -> (..., dim).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

_ENABLED = False
_COMPILED: dict[str, object] = {}


def enabled() -> bool:
    """Whether RMSNorm and the Mish gate run through the fused functions."""
    return _ENABLED


@contextmanager
def fused(on: bool = True):
    """Run the block with the fused functions switched on (or off), then restore."""
    global _ENABLED
    before, _ENABLED = _ENABLED, on
    try:
        yield
    finally:
        _ENABLED = before


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) * g in float32, cast back to x's dtype."""
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * weight.float()).to(x.dtype)


def mish_gate_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mish(a) * b with Mish's single-exp form (module docstring), in float32."""
    a32 = a.float()
    n = torch.exp(a32.clamp(max=20.0))
    w = n * (n + 2.0)
    mish = torch.where(a32 > 20.0, a32, a32 * w / (w + 2.0))
    return (mish * b.float()).to(torch.promote_types(a.dtype, b.dtype))


def _compiled(name: str, fn):
    if name not in _COMPILED:
        _COMPILED[name] = torch.compile(fn)
    return _COMPILED[name]


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm as one compiled loop (see `rms_norm_reference` for the arithmetic)."""
    return _compiled("rms_norm", rms_norm_reference)(x, weight, eps)


def mish_gate(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mish(a) * b as one compiled loop (see `mish_gate_reference`)."""
    return _compiled("mish_gate", mish_gate_reference)(a, b)
