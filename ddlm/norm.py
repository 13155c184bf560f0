"""Root-mean-square layer normalisation.

Zhang & Sennrich, "Root Mean Square Layer Normalization", arXiv 1910.07467.

    RMSNorm(x) = x / sqrt(mean(x^2) + eps) * g

No mean subtraction and no bias: cheaper than LayerNorm and just as good in practice.
The statistic is computed in float32 even under autocast, then cast back. With
`ddlm.fused` switched on, the same arithmetic runs as one compiled loop.
Shapes: (..., dim) -> (..., dim).
"""

from __future__ import annotations

import torch
from torch import nn

from . import fused


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))  # the gain g, (dim,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused.enabled():
            return fused.rms_norm(x, self.weight, self.eps)
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)
