"""The attention kernel call: `F.scaled_dot_product_attention`, with one CPU exception.

Dao et al., "FlashAttention", arXiv 2205.14135 (the tiled kernel and its backward pass, which
recomputes the T x T probabilities from the saved log-sum-exp instead of storing them).

On a CPU, PyTorch's flash-attention kernel runs its forward pass in bf16 about twice as fast
as in float32, but its bf16 *backward* is slower than its float32 backward (torch 2.13, heads
of 32 at 768 positions: about 140 against 120 ms per layer on an Intel Xeon with AMX;
`bench/train_throughput.py --profile` shows it as the largest op of a bf16 training step).
So for a bf16 training step on a CPU, `attend` keeps the bf16 forward and runs the backward in
float32, on contiguous copies of q, k, v, the output and its gradient, and casts the three
gradients back to bf16. The arithmetic is the kernel's own in both directions; the backward
only skips the rounding to bf16 inside it, so its gradients are closer to the float32 ones
(`tests/test_sdpa.py`), and a bf16 training step of `seed` is 1.05-1.16x faster side by side
(`bench/RESULTS.md`, sitting 12).

Everywhere else (float32, CUDA, inference, a dropout in training) `attend` is exactly
`F.scaled_dot_product_attention`.

Shapes: q (B, H, T, d_qk), k (B, H, S, d_qk), v (B, H, S, d_v) -> (B, H, T, d_v);
mask None or bool, broadcastable to (B, H, T, S), True where a query may attend (every query
row must see at least one key, as `ddlm.attention.build_attention_mask` ensures).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn.functional as F

_FORWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward


_ON = True  # switched off only by `f32_backward(False)`, to measure what it changes


@contextmanager
def f32_backward(on: bool = True):
    """Within the block, take (or, with on=False, never take) the float32-backward path;
    `bench/train_throughput.py` times a step both ways side by side."""
    global _ON
    before, _ON = _ON, on
    try:
        yield
    finally:
        _ON = before


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32, memory_format=torch.contiguous_format)


class _BF16ForwardF32Backward(torch.autograd.Function):
    """The CPU flash kernel forward in bf16, its backward in float32 (module docstring)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, is_causal):
        out, lse = _FORWARD(q, k, v, 0.0, is_causal, attn_mask=mask)  # lse (B, H, T) float32
        ctx.save_for_backward(q, k, v, out, lse, mask)
        ctx.is_causal = is_causal
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, out, lse, mask = ctx.saved_tensors
        with torch.autocast("cpu", enabled=False):
            m32 = None if mask is None else mask.float()
            gq, gk, gv = _BACKWARD(
                _f32(grad_out), _f32(q), _f32(k), _f32(v), _f32(out), lse, 0.0,
                ctx.is_causal, attn_mask=m32,
            )  # fmt: skip
        return gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype), None, None


def uses_f32_backward(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> bool:
    """Whether `attend` takes the bf16-forward, float32-backward path for these inputs."""
    return (
        _ON
        and q.device.type == "cpu"
        and q.dtype == k.dtype == v.dtype == torch.bfloat16
        and dropout == 0.0
        and torch.is_grad_enabled()
        and (q.requires_grad or k.requires_grad or v.requires_grad)
    )


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Scaled dot-product attention with SDPA's default scale 1/sqrt(d_qk); see the module
    docstring for the one case that differs from `F.scaled_dot_product_attention`."""
    if uses_f32_backward(q, k, v, dropout):
        if mask is not None:  # the kernel takes an additive mask of q's dtype, as SDPA makes it
            if mask.dtype != torch.bool:
                raise ValueError(f"mask must be bool (True = may attend), got {mask.dtype}")
            mask = torch.zeros(mask.shape, dtype=q.dtype).masked_fill_(~mask, float("-inf"))
        return _BF16ForwardF32Backward.apply(q, k, v, mask, is_causal)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, is_causal=is_causal, dropout_p=dropout
    )
