"""Sample quality without a reference text: the AR judge and how repetitive the text is.

The autoregressive judge (`continuation_bits_per_byte`) scores a continuation by the bits per
byte an independent causal model (`ModelConfig(causal=True)`, the AR twin) assigns to it: it
rewards predictable text, and a run of spaces is very predictable, so a degenerate sampler can
score *better* than real text. The fraction of distinct byte n-grams (`distinct_ngrams`)
exposes it: 1.0 means no n-gram repeats, a run of spaces scores close to 0. Read the two
numbers together (as the findings do, with the share of real words beside them).

Shapes: prompt and continuation are 1-D int64 byte ids (T,); samples are bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F


@torch.no_grad()
def continuation_bits_per_byte(
    judge: Callable[..., torch.Tensor], prompt: torch.Tensor, continuation: torch.Tensor
) -> float:
    """Bits per byte that a causal model assigns to `continuation` given `prompt` (1-D ids).

    The AR judge: lower means the continuation reads more like the corpus to an independent
    autoregressive model. It also rewards runs of spaces (very predictable), so read it
    beside `distinct_ngrams`.
    """
    if len(prompt) == 0 or len(continuation) == 0:
        raise ValueError("prompt and continuation must both be non-empty")
    ids = torch.cat([prompt, continuation]).long()[None]
    device = next(judge.parameters()).device
    logits = judge(ids[:, :-1].to(device)).float().cpu()[0, len(prompt) - 1 :]
    return F.cross_entropy(logits, continuation.long(), reduction="mean").item() / math.log(2)


def distinct_ngrams(samples: Iterable[bytes], n: int = 4) -> float:
    """Distinct byte n-grams / all byte n-grams, pooled over `samples` (0 when none)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    seen, total = set(), 0
    for b in samples:
        b = bytes(b)
        for i in range(len(b) - n + 1):
            seen.add(b[i : i + n])
            total += 1
    return len(seen) / total if total else 0.0
