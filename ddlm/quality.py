"""Sample quality without a reference: how repetitive is generated text?

The autoregressive judge (`diffusion.continuation_bits_per_byte`) rewards predictable text,
and a run of spaces is very predictable, so a degenerate sampler can score *better* than
real text. The fraction of distinct byte n-grams exposes it: 1.0 means no n-gram repeats,
a run of spaces scores close to 0. Read the two numbers together.
"""

from __future__ import annotations

from collections.abc import Iterable


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
