"""Scoring held-out text: the windows a split is cut into, and the bits-per-byte record.

Both kinds of model are scored the same way, on consecutive windows of the validation bytes,
and report a `BitsPerByte`: the diffusion model its ELBO (`diffusion.bits_per_byte`, an upper
bound, Sahoo et al. arXiv 2406.07524 and Nie et al. arXiv 2502.09992), the autoregressive twin
its exact next-byte likelihood (`ar.ar_bits_per_byte`). This module is what the two share, so
neither has to import the corpus loaders in `data` to cut its windows.

Shapes: data is a 1-D uint8 (or int16) tensor; windows are (N, seq_len) int64.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def chunks(data: torch.Tensor, seq_len: int, max_chunks: int | None = None) -> torch.Tensor:
    """Consecutive windows of `seq_len` bytes, (N, seq_len) int64, for evaluation.

    With `max_chunks`, that many windows evenly spaced over the data (a partial evaluation
    that still covers the whole split); otherwise every whole window.
    """
    n = len(data) // seq_len
    if n == 0:
        raise ValueError(f"need at least {seq_len} bytes to evaluate, got {len(data)}")
    if max_chunks is not None and n > max_chunks:
        starts = torch.linspace(0, (n - 1) * seq_len, max_chunks).long()
    else:
        starts = torch.arange(n) * seq_len
    return torch.stack([data[s : s + seq_len] for s in starts.tolist()]).long()


@dataclass
class BitsPerByte:
    """A likelihood estimate. For diffusion models an upper bound (the ELBO)."""

    bits_per_byte: float  # estimate (exact for AR models)
    stderr: float  # standard error of the Monte Carlo estimate (0 for AR)
    n_bytes: int  # bytes scored
    n_samples: int  # Monte Carlo samples per sequence (1 for AR)
    estimator: str  # "elbo-t", "elbo-l" or "exact-ar"

    def to_dict(self) -> dict:
        return dict(self.__dict__)
