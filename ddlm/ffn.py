"""The gated feed-forward network: w2(act(w1 x) * w3 x).

Shazeer, "GLU Variants Improve Transformer", arXiv 2002.05202 (SwiGLU, GEGLU);
Misra, "Mish: A Self Regularized Non-Monotonic Activation Function", arXiv 1908.08681.

One branch, act(w1 x), decides how much of the other, w3 x, passes through. The
activation is a choice:

    mish(x) = x * tanh(softplus(x))     the original project's choice, our default
    silu(x) = x * sigmoid(x)            SwiGLU, as in LLaMA
    gelu(x) = x * Phi(x)                GEGLU

Hidden size rule: a gated FFN has three matrices instead of two, so to spend the same
parameters as a classic 4*dim FFN we take hidden = 2/3 * 4 * dim = 8/3 * dim, rounded
up to a multiple of 64 (friendly to matrix kernels). `ffn_hidden_size(dim)` computes it.

Shapes: (B, T, dim) -> (B, T, dim).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import fused

ACTIVATIONS = {"mish": F.mish, "silu": F.silu, "gelu": F.gelu}


def ffn_hidden_size(dim: int, multiple_of: int = 64) -> int:
    """8/3 * dim rounded up to a multiple of `multiple_of` (the parameter-matching rule)."""
    return multiple_of * math.ceil(8 * dim / 3 / multiple_of)


class GatedFFN(nn.Module):
    def __init__(self, dim: int, hidden: int, activation: str = "mish", dropout: float = 0.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.act = ACTIVATIONS[activation]
        self.w1 = nn.Linear(dim, hidden, bias=False)  # gate branch
        self.w3 = nn.Linear(dim, hidden, bias=False)  # value branch
        self.w2 = nn.Linear(hidden, dim, bias=False)  # back to the residual stream
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # w1 and w3 read the same x, but two matmuls beat one stacked matmul on a CPU: the
        # halves of a stacked output are strided views, and act(gate) * value runs slower on
        # them than the stacked matmul saves (bench/RESULTS.md, 2026-12-01 sitting 4).
        if self.activation == "mish" and fused.enabled():  # one compiled loop (ddlm.fused)
            return self.dropout(self.w2(fused.mish_gate(self.w1(x), self.w3(x))))
        return self.dropout(self.w2(self.act(self.w1(x)) * self.w3(x)))
