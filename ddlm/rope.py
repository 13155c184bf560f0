"""Rotary position embedding (RoPE), in real arithmetic.

Su et al., "RoFormer: Enhanced Transformer with Rotary Position Embedding", arXiv 2104.09864.

Split the first `rot_dim` features of a head into `rot_dim / 2` pairs. Pair i at
position m is rotated by the angle m * theta_i, with theta_i = base^(-2i / rot_dim).
Because rotations compose, <R(m) q, R(n) k> = <q, R(n - m) k>: the attention score
depends only on the offset m - n, the query's position minus the key's, never on absolute
positions.

We pair feature i with feature i + rot_dim/2 (the "half split" layout): it is the
complex formulation z_i = x_i + j x_{i + rot_dim/2}, z_i * e^{j m theta_i}, written
with cos and sin so that it runs in any dtype (bf16 included) and under torch.compile.
Features beyond `rot_dim` pass through unrotated ("partial rotary").

Shapes: tables are (T, rot_dim / 2); `apply_rope` takes and returns (B, H, T, D).
"""

from __future__ import annotations

import torch
from torch import nn


def rope_frequencies(rot_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """The rot_dim/2 angular frequencies theta_i = theta^(-2i/rot_dim), float64."""
    if rot_dim <= 0 or rot_dim % 2:
        raise ValueError(f"rot_dim must be a positive even number, got {rot_dim}")
    return theta ** (-torch.arange(0, rot_dim, 2, dtype=torch.float64) / rot_dim)


def rope_tables(
    rot_dim: int,
    seq_len: int,
    theta: float = 10000.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    offset: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables, each (seq_len, rot_dim/2), for positions offset..offset+seq_len-1.

    Angles are computed in float64 and rounded once to `dtype`, so long positions do
    not lose precision before the cosine.
    """
    pos = torch.arange(offset, offset + seq_len, dtype=torch.float64)
    angles = torch.outer(pos, rope_frequencies(rot_dim, theta))  # (T, rot_dim/2)
    return angles.cos().to(device=device, dtype=dtype), angles.sin().to(device=device, dtype=dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2 * cos.shape[-1] features of x (B, H, T, D) by position.

    cos, sin: (T, r) with 2r <= D. Returns a tensor shaped like x.
    """
    r = cos.shape[-1]
    if 2 * r > x.shape[-1]:
        raise ValueError(f"rotary dimension {2 * r} exceeds the head dimension {x.shape[-1]}")
    x1, x2, rest = x[..., :r], x[..., r : 2 * r], x[..., 2 * r :]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    # (x1 + j x2) * (cos + j sin) = (x1 cos - x2 sin) + j (x1 sin + x2 cos)
    rotated = torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated


class RotaryEmbedding(nn.Module):
    """Holds the frequency schedule and caches cos/sin tables per (device, dtype).

    Calling it with a length T (and an optional position offset) returns the two
    (T, rot_dim/2) tables; tables are computed once for `max_seq_len` and sliced.
    """

    def __init__(self, rot_dim: int, max_seq_len: int, theta: float = 10000.0):
        super().__init__()
        rope_frequencies(rot_dim, theta)  # validates rot_dim
        self.rot_dim, self.max_seq_len, self.theta = rot_dim, max_seq_len, theta
        self._cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def forward(
        self,
        seq_len: int,
        device: torch.device,
        dtype: torch.dtype = torch.float32,
        offset: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if offset + seq_len > self.max_seq_len:
            raise ValueError(
                f"positions up to {offset + seq_len} exceed max_seq_len={self.max_seq_len}"
            )
        key = (torch.device(device), dtype)
        if key not in self._cache:
            self._cache[key] = rope_tables(
                self.rot_dim, self.max_seq_len, self.theta, device=device, dtype=dtype
            )
        cos, sin = self._cache[key]
        return cos[offset : offset + seq_len], sin[offset : offset + seq_len]
