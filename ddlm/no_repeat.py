"""The no-repeat rule: no reveal may complete a run of n bytes the text already holds.

Greedy decoding of a weak model loops ("the file of the file of"): every byte of a loop is
likely given the copy before it. Banning the byte that would complete a copy of n bytes is the
no-repeat n-gram rule of left-to-right decoders (Paulus et al., arXiv 1705.04304), applied here
to whichever positions a diffusion step reveals. `ddlm.sampling.denoise` asks `repeats` which
reveals would copy, bans those bytes and decides the step again; `replace_repeats` is its last
resort. Both walk a row's reveals the same way, left to right (`write_left_to_right`).
Shapes: ids, pred (B, T) int64; reveal (B, T) bool; logits (B, T, V).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .tokenizer import MASK_ID, N_BYTES


def repeats(ids: torch.Tensor, pred: torch.Tensor, reveal: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T) bool: the `reveal` positions whose predicted byte `pred` (B, T) would complete a
    run of n bytes that the row of `ids` (B, T) already holds, the prompt included.

    A run counts only where all its other n - 1 positions hold revealed bytes (no MASK, PAD or
    EOS). The reveals of one step are checked left to right, each against the text with the
    earlier ones written in (a copying one is left out), so that two of them cannot make a copy
    together."""
    written = write_left_to_right(
        ids, reveal, n, lambda b, i: [int(pred[b, i])], lambda b, i: MASK_ID
    )
    return reveal & (written == MASK_ID)


def replace_repeats(
    ids: torch.Tensor, pred: torch.Tensor, reveal: torch.Tensor, logits: torch.Tensor, n: int
) -> torch.Tensor:
    """(B, T) `pred` with each reveal that would complete a copy of n bytes replaced by the
    likeliest byte under `logits` (B, T, V) that completes none.

    The last resort of the no-repeat rule, for a step still choosing copies after a few
    decisions: the reveals are written left to right, each checked against the text with the
    earlier ones in, so no run of n bytes ends up in the text twice. (A position where every
    byte would complete a copy keeps the model's choice; that needs the text to hold more
    than 256 runs sharing one context, longer than any canvas here.)"""

    def likeliest_first(b: int, i: int) -> Iterable[int]:
        yield int(pred[b, i])
        for c in logits[b, i].argsort(descending=True, stable=True).tolist():
            if logits[b, i, c] > float("-inf"):
                yield c

    written = write_left_to_right(ids, reveal, n, likeliest_first, lambda b, i: int(pred[b, i]))
    return torch.where(reveal, written, pred)


def write_left_to_right(
    ids: torch.Tensor,
    reveal: torch.Tensor,
    n: int,
    options: Callable[[int, int], Iterable[int]],
    otherwise: Callable[[int, int], int],
) -> torch.Tensor:
    """(B, T) the id written at each `reveal` position of `ids` (B, T) (MASK_ID elsewhere):
    the row's reveals taken left to right, each the first of `options(b, i)` that completes
    no run of n bytes the row already holds, the earlier reveals written in; where every
    option would, `otherwise(b, i)` (MASK_ID: the position is left unwritten)."""
    out = torch.full_like(ids, MASK_ID)
    for b in torch.nonzero(reveal.any(1)).flatten().tolist():
        row = ids[b].tolist()
        seen = _seen_runs(row, n)
        for i in torch.nonzero(reveal[b]).flatten().tolist():
            for c in options(b, i):
                row[i] = c
                if not _copies(_runs_through(row, i, n), seen):
                    break
            else:
                row[i] = otherwise(b, i)
            seen.update(_runs_through(row, i, n))
            out[b, i] = row[i]
    return out


def _seen_runs(row: list[int], n: int) -> set[tuple[int, ...]]:
    """Every run of n bytes that `row` holds (bytes only: no MASK, PAD or EOS)."""
    runs = (tuple(row[s : s + n]) for s in range(len(row) - n + 1))
    return {r for r in runs if max(r) < N_BYTES}


def _runs_through(row: list[int], i: int, n: int) -> list[tuple[int, ...]]:
    """The runs of n bytes (bytes only) that contain position i: the ones writing it
    completes."""
    first, last = max(0, i - n + 1), min(i, len(row) - n)
    runs = [tuple(row[s : s + n]) for s in range(first, last + 1)]
    return [r for r in runs if max(r) < N_BYTES]


def _copies(runs: list[tuple[int, ...]], seen: set) -> bool:
    """True if one of `runs` is already in `seen`, or occurs twice among them."""
    return any(r in seen for r in runs) or len(set(runs)) < len(runs)
