"""Attention: the plain multi-head baseline and Multi-Head Latent Attention (MLA).

Vaswani et al., "Attention Is All You Need", arXiv 1706.03762 (multi-head attention);
DeepSeek-AI, "DeepSeek-V2", arXiv 2405.04434 (MLA with decoupled RoPE).

Multi-head attention (MHA) projects every token to per-head queries, keys and values.
An autoregressive decoder must keep every past token's keys and values: 2 * H * d_h
numbers per token per layer.

MLA compresses keys and values through a low-rank latent:

    c_kv = RMSNorm(W_dkv x)            (kv_latent_dim numbers per token: all we must keep)
    [k_C ; v] = W_ukv c_kv             per-head keys and values, decompressed on the fly

and optionally queries through a latent of their own (q_latent_dim). Two RoPE modes:

* "full": rotate the decompressed per-head q and k (what the original project did). The
  cache stays the latent, but the rotated keys must be recomputed from it.
* "decoupled" (DeepSeek-V2): RoPE is position-dependent, so it cannot be folded into W_ukv.
  Each head gets `rope_dim` extra query features, and ONE extra rotated key of `rope_dim`
  features, k_R = RoPE(W_kr x), is shared by all heads:

      q_h = [q_C,h ; RoPE(q_R,h)],   k_h = [k_C,h ; k_R],   score = q_h . k_h / sqrt(d_h + rope_dim)

  The cache is c_kv plus k_R: kv_latent_dim + rope_dim numbers per token.

Both are bidirectional by default (a mask predictor sees the whole sequence); `causal=True`
gives the autoregressive baseline. The kernel is `F.scaled_dot_product_attention`, called
through `ddlm.sdpa.attend` (on a CPU in bf16 training it runs the kernel's backward in float32).

Prefix cache (used by the sampler, `generate(..., cache="prefix")`): with a `LayerCache` in
"record" mode a full forward pass stores what the layer needs from the first `prefix_len`
positions; in "use" mode the input holds only the positions after the prefix, and the stored
prefix stands in for the rest. "extend" mode is the autoregressive decoder's key/value cache:
like "use", and the new positions are appended to the stored prefix. MHA stores rotated keys
and values (2 * H * d_h numbers per token); MLA stores only its latent c_kv (plus the shared
rotary key k_R when decoupled) and decompresses keys and values from it at each use, which is
where its small cache pays off. With `suffix_from`, a dual cache (Fast-dLLM's DualCache): the
positions from there to the end are stored as well, and "use" mode takes only the positions
between prefix and suffix, the stored ones standing in on both sides.

Shapes: x (B, T, dim) -> (B, T, dim); attention_mask (B, T) bool, True on real tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .norm import RMSNorm
from .rope import RotaryEmbedding, apply_rope
from .sdpa import attend


def build_attention_mask(
    attention_mask: torch.Tensor | None, causal: bool, seq_len: int
) -> torch.Tensor | None:
    """Turn a (B, T) key-padding mask into the boolean mask SDPA takes, or None.

    Returns None when nothing is padded, so that SDPA can take its fast path (with
    `is_causal` for causal models). Otherwise (B, 1, T, T) or (B, 1, 1, T), True where a
    query may attend. A query row with no visible key would give NaN, so such rows
    (only possible for a sequence that is all padding) are opened up.
    """
    if attention_mask is None:
        return None
    if attention_mask.dtype != torch.bool:
        raise ValueError(
            f"attention_mask must be bool (True = real token), got {attention_mask.dtype}"
        )
    if bool(attention_mask.all()):
        return None
    mask = attention_mask[:, None, None, :]  # (B, 1, 1, T)
    if causal:
        tril = torch.ones(seq_len, seq_len, dtype=torch.bool, device=mask.device).tril()
        mask = mask & tril  # (B, 1, T, T)
    return mask | ~mask.any(-1, keepdim=True)


@dataclass
class LayerCache:
    """One layer's share of a prefix cache (see the module docstring)."""

    prefix_len: int  # number of cached positions at the start of the sequence
    mode: str = "record"  # "record": store the prefix; "use": read it; "extend": read, append
    state: tuple[torch.Tensor, ...] = field(default_factory=tuple)  # what the layer stored
    # Dual cache (Fast-dLLM's DualCache): also keep the positions from `suffix_from` on, so
    # that "use" mode runs only the positions prefix_len..suffix_from-1 between the two.
    suffix_from: int | None = None
    suffix: tuple[torch.Tensor, ...] = field(default_factory=tuple)

    def record(self, *full: torch.Tensor, dim: int) -> None:
        """In "record" mode, keep the prefix (and the suffix) of each tensor along `dim`."""
        self.state = tuple(t.narrow(dim, 0, self.prefix_len) for t in full)
        if self.suffix_from is not None:
            self.suffix = tuple(
                t.narrow(dim, self.suffix_from, t.shape[dim] - self.suffix_from) for t in full
            )

    def around(self, *new: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
        """In "use" or "extend" mode: each stored prefix, then the new positions, then the
        stored suffix (if any), joined along `dim`."""
        if self.suffix:
            return tuple(
                torch.cat((p, n, q), dim=dim) for p, n, q in zip(self.state, new, self.suffix)
            )
        return tuple(torch.cat((p, n), dim=dim) for p, n in zip(self.state, new))

    def extend(self, *state: torch.Tensor) -> None:
        """In "extend" mode, keep the prefix plus the new positions (an AR decoder's cache)."""
        if self.mode == "extend":
            self.state, self.prefix_len = state, state[0].shape[-2]

    def numel_per_token(self) -> int:
        """Numbers stored per cached token (per sequence in the batch)."""
        # MHA stores (B, H, T, hd) per tensor, MLA (B, T, features)
        return sum(t.shape[-1] * (t.shape[1] if t.dim() == 4 else 1) for t in self.state)

    def cached_positions(self) -> int:
        """How many positions the cache holds (prefix, plus suffix for a dual cache)."""
        if not self.state:
            return 0
        time_dim = 2 if self.state[0].dim() == 4 else 1
        return sum(t.shape[time_dim] for t in (self.state[0], *self.suffix[:1]))


def _check_cache(cache: LayerCache | None, attention_mask) -> None:
    if cache is not None and attention_mask is not None:
        raise ValueError("the prefix cache does not support padding; use prompts of equal length")


class _AttentionBase(nn.Module):
    """What both attention variants share: the mask handling and the SDPA call."""

    def __init__(self, dim: int, n_heads: int, causal: bool, dropout: float):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"dim={dim} is not divisible by n_heads={n_heads}")
        self.dim, self.n_heads, self.head_dim = dim, n_heads, dim // n_heads
        self.causal, self.dropout = causal, dropout

    def _mask(self, attention_mask: torch.Tensor | None, seq_len: int) -> torch.Tensor | None:
        # A 2-D (B, T) padding mask is converted here; DiffusionLM converts it once and
        # passes the prepared 4-D mask to every layer.
        if attention_mask is not None and attention_mask.dim() == 2:
            return build_attention_mask(attention_mask, self.causal, seq_len)
        return attention_mask

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: LayerCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, dim) -> (B, T, dim). Each variant makes its queries, keys and values
        (`_qkv`, reading and writing `cache`); the attention itself is shared."""
        _check_cache(cache, attention_mask)
        P = cache.prefix_len if cache is not None and cache.mode != "record" else 0
        q, k, v = self._qkv(x, cache, P)  # P: the position of x's first token
        return self.out(self._attend(q, k, v, self._mask(attention_mask, x.shape[1])))

    def _attend(self, q, k, v, mask):  # (B, H, T, *) each -> (B, T, H * d_v)
        T, S = q.shape[-2], k.shape[-2]
        if self.causal and mask is None and S != T:
            # Queries are the last T of S positions (a cached prefix precedes them): query i
            # may see keys 0..S-T+i. SDPA's is_causal would align them top-left instead.
            mask = torch.ones(T, S, dtype=torch.bool, device=q.device).tril(diagonal=S - T)
        y = attend(
            q,
            k,
            v,
            mask,
            is_causal=self.causal and mask is None,
            dropout=self.dropout if self.training else 0.0,
        )
        B, H, T, dv = y.shape
        return y.transpose(1, 2).reshape(B, T, H * dv)


class MultiHeadAttention(_AttentionBase):
    """Plain multi-head attention with RoPE on the first `rope_dim` features of each head."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        max_seq_len: int,
        rope_dim: int | None = None,
        rope_theta: float = 10000.0,
        causal: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__(dim, n_heads, causal, dropout)
        self.rope_dim = rope_dim or self.head_dim
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)  # q, k, v in one matrix
        self.out = nn.Linear(dim, dim, bias=False)
        self.rotary = RotaryEmbedding(self.rope_dim, max_seq_len, rope_theta)

    def _qkv(self, x: torch.Tensor, cache: LayerCache | None, P: int):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = self.rotary(T, x.device, q.dtype, offset=P)  # each (B, H, T, hd)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if cache.mode == "record":
                cache.record(k, v, dim=2)
            else:
                k, v = cache.around(k, v, dim=2)  # (B, H, P + T [+ suffix], hd)
                cache.extend(k, v)
        return q, k, v

    def kv_cache_elements_per_token(self) -> int:
        """Numbers a decoder keeps per token per layer: a key and a value for every head."""
        return 2 * self.n_heads * self.head_dim


class LatentAttention(_AttentionBase):
    """Multi-Head Latent Attention: keys and values decompressed from a low-rank latent."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        max_seq_len: int,
        kv_latent_dim: int,
        q_latent_dim: int | None = None,
        rope: str = "full",
        rope_dim: int | None = None,
        rope_theta: float = 10000.0,
        causal: bool = False,
        dropout: float = 0.0,
        norm_eps: float = 1e-6,
    ):
        super().__init__(dim, n_heads, causal, dropout)
        if rope not in ("full", "decoupled"):
            raise ValueError(f"rope must be 'full' or 'decoupled', got {rope!r}")
        H, hd = n_heads, self.head_dim
        self.rope, self.kv_latent_dim, self.q_latent_dim = rope, kv_latent_dim, q_latent_dim
        self.rope_dim = rope_dim or (hd if rope == "full" else hd // 2)
        # Extra per-head query features for the decoupled rotary path (0 in "full" mode).
        self.q_rope_dim = self.rope_dim if rope == "decoupled" else 0
        q_out = H * (hd + self.q_rope_dim)
        if q_latent_dim:
            self.wq_down = nn.Linear(dim, q_latent_dim, bias=False)
            self.q_norm = RMSNorm(q_latent_dim, norm_eps)
            self.wq_up = nn.Linear(q_latent_dim, q_out, bias=False)
        else:
            self.wq = nn.Linear(dim, q_out, bias=False)
        # One matrix makes the latent c_kv and, when decoupled, the shared rotary key k_R.
        self.k_rope_dim = self.rope_dim if rope == "decoupled" else 0
        self.wkv_down = nn.Linear(dim, kv_latent_dim + self.k_rope_dim, bias=False)
        self.kv_norm = RMSNorm(kv_latent_dim, norm_eps)
        self.wkv_up = nn.Linear(kv_latent_dim, H * 2 * hd, bias=False)  # latent -> [k_C ; v]
        self.out = nn.Linear(dim, dim, bias=False)
        self.rotary = RotaryEmbedding(self.rope_dim, max_seq_len, rope_theta)

    def _project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (B, T, H * (hd + r)) and the down-projection [c_kv ; k_R] of x (B, T, dim).

        Two matrix multiplies. Both read the same x, and stacking the two weights into one
        matmul was tried: on a 2-core CPU it was slower, not faster (the stacked weight is
        copied every step, and the split outputs are strided views that make the elementwise
        work after them slower; bench/RESULTS.md, 2026-12-01 sitting 4)."""
        if self.q_latent_dim:
            return self.wq_up(self.q_norm(self.wq_down(x))), self.wkv_down(x)
        return self.wq(x), self.wkv_down(x)

    def _qkv(self, x: torch.Tensor, cache: LayerCache | None, P: int):
        B, T, _ = x.shape
        H, hd = self.n_heads, self.head_dim
        use = cache is not None and cache.mode != "record"
        q, down = self._project(x)  # (B, T, H * (hd + r)), (B, T, kv_latent_dim [+ r])
        q = q.view(B, T, H, hd + self.q_rope_dim).transpose(1, 2)  # (B, H, T, hd + r)
        c_kv = self.kv_norm(down[..., : self.kv_latent_dim])  # (B, T, kv_latent_dim): the cache
        k_r = down[..., self.kv_latent_dim :].unsqueeze(1)  # (B, 1, T, r): shared by heads
        cos, sin = self.rotary(T, x.device, q.dtype, offset=P)
        if self.k_rope_dim:
            k_r = apply_rope(k_r, cos, sin)
        if cache is not None and cache.mode == "record":
            cache.record(c_kv, k_r[:, 0], dim=1)  # both stored as (B, T, *)
        if use:  # keys and values of the prefix are decompressed from its cached latent
            c_kv, k_r = cache.around(c_kv, k_r[:, 0], dim=1)  # (B, S, kv_latent_dim), (B, S, r)
            cache.extend(c_kv, k_r)
            k_r = k_r[:, None]  # (B, 1, S, r)
        S = c_kv.shape[1]  # key positions
        k, v = self.wkv_up(c_kv).view(B, S, H, 2 * hd).transpose(1, 2).split(hd, dim=-1)
        if self.rope == "full":
            cos_k, sin_k = self.rotary(S, x.device, q.dtype) if use else (cos, sin)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos_k, sin_k)
        else:
            q_c, q_r = q.split((hd, self.q_rope_dim), dim=-1)
            q = torch.cat((q_c, apply_rope(q_r, cos, sin)), dim=-1)
            k = torch.cat((k, k_r.expand(B, H, S, self.rope_dim)), dim=-1)
        # SDPA's default scale 1/sqrt(q.shape[-1]) is the full q/k width, hd + r when decoupled.
        return q, k, v

    def kv_cache_elements_per_token(self) -> int:
        """Numbers a decoder keeps per token per layer: the latent, plus k_R when decoupled."""
        return self.kv_latent_dim + self.k_rope_dim
