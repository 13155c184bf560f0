"""The original project's model and loss, rebuilt for speed comparisons (not part of ddlm).

Written for this benchmark from the design the original project's training script describes
(its CONFIG class, `SimplifiedMLAttention`, `FeedForward`, `RMSNorm`, `TransformerBlock`,
`MaskPredictorLLaDA` and `calculate_masked_diffusion_loss`), keeping what decides its speed:

* 259 byte ids (256 bytes, PAD, MASK, UNK), dim 512, 8 blocks, 16 heads of 32;
* attention: q from a full 512 x 512 matrix; keys and values decompressed by two separate
  128 -> 512 matrices from a 128-wide latent (no norm on the latent); RoPE on the whole head,
  computed as a complex multiply in float32; the padding mask always passed to SDPA as an
  additive float mask (the training batches always carry one); bidirectional;
* RMSNorm as x / (||x|| / sqrt(d) + eps) * g, eps 1e-5, in the input's dtype;
* FFN w2(mish(w1 x) * w3 x), hidden int(2 * 4 * 512 / 3) rounded up to 256: 1536;
* logits cast to float32; the loss is a cross-entropy over every position (reduction none),
  kept where a byte was masked, summed per sequence, divided by t ~ U[0.075, 1], averaged;
* mixed precision only on CUDA (`use_amp = torch.cuda.is_available()`): on a CPU it trains
  in float32.

Only the architecture and the arithmetic are reproduced; nothing here is imported by ddlm.
Shapes: tokens (B, T) -> logits (B, T, 259).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, PAD, MASK = 259, 256, 257


class Norm(nn.Module):
    """x / (rms(x) + eps) * g, the rms from the L2 norm, in the input's dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        rms = x.norm(2, dim=-1, keepdim=True) / math.sqrt(self.dim)
        return self.scale * (x / (rms + self.eps))


def rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """RoPE as a complex product: feature pairs (2i, 2i+1) of x (B, H, T, D) times turns (T, D/2)."""
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(z * turns).flatten(3).type_as(x)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, latent: int):
        super().__init__()
        self.heads, self.hd = heads, dim // heads
        self.q = nn.Linear(dim, dim, bias=False)
        self.down = nn.Linear(dim, latent, bias=False)
        self.k_up = nn.Linear(latent, dim, bias=False)
        self.v_up = nn.Linear(latent, dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x, turns, keep):  # x (B, T, dim), keep (B, T) 1 on real bytes
        B, T, _ = x.shape
        split = lambda t: t.view(B, T, self.heads, self.hd).transpose(1, 2)  # noqa: E731
        c = self.down(x)
        q, k, v = split(self.q(x)), split(self.k_up(c)), split(self.v_up(c))
        q, k = rotate(q, turns), rotate(k, turns)
        bias = (1.0 - keep[:, None, None, :].float()) * torch.finfo(q.dtype).min  # (B, 1, 1, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).contiguous().view(B, T, -1))


class FFN(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.w2(F.mish(self.w1(x), inplace=True) * self.w3(x))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, latent: int, hidden: int):
        super().__init__()
        self.attn_norm, self.attn = Norm(dim), Attention(dim, heads, latent)
        self.ffn_norm, self.ffn = Norm(dim), FFN(dim, hidden)

    def forward(self, x, turns, keep):
        x = x + self.attn(self.attn_norm(x), turns, keep)
        return x + self.ffn(self.ffn_norm(x))


class OriginalDesign(nn.Module):
    """The original's configuration: dim 512, 8 layers, 16 heads, latent 128, FFN 1536."""

    def __init__(self, dim=512, layers=8, heads=16, latent=128, max_len=2048):
        super().__init__()
        hidden = 256 * math.ceil(int(2 * 4 * dim / 3) / 256)
        self.embed = nn.Embedding(VOCAB, dim, padding_idx=PAD)
        self.blocks = nn.ModuleList(Block(dim, heads, latent, hidden) for _ in range(layers))
        self.norm, self.head = Norm(dim), nn.Linear(dim, VOCAB, bias=False)
        hd = dim // heads
        freqs = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), freqs)
        self.register_buffer(
            "turns", torch.polar(torch.ones_like(angles), angles), persistent=False
        )

    def forward(self, tokens, keep):  # (B, T), (B, T) -> (B, T, VOCAB) float32
        x = self.embed(tokens)
        turns = self.turns[: tokens.shape[1]]
        for block in self.blocks:
            x = block(x, turns, keep)
        return self.head(self.norm(x)).float()

    def matmul_params(self) -> int:
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))


def original_loss(model: OriginalDesign, x0: torch.Tensor, min_t: float = 0.075) -> torch.Tensor:
    """Mask each byte with probability t ~ U[min_t, 1]; masked cross-entropy summed per
    sequence, divided by t, averaged over the batch (the original's loss, per sequence)."""
    B, T = x0.shape
    keep = (x0 != PAD).long()
    t = torch.rand(B) * (1.0 - min_t) + min_t
    masked = (torch.rand(B, T) < t[:, None]) & (x0 != PAD)
    logits = model(torch.where(masked, MASK, x0), keep)
    ce = F.cross_entropy(logits.view(-1, VOCAB), x0.view(-1), reduction="none").view(B, T)
    return ((ce * masked.float()).sum(1) / t).mean()
