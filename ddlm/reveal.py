"""Which masked positions a sampling step reveals, and how many.

Nie et al., "Large Language Diffusion Models" (LLaDA), arXiv 2502.09992 (the even split of
reveals over steps, semi-autoregressive blocks); Wu et al., "Fast-dLLM", arXiv 2505.22618
(confidence threshold, factor rule); Wang et al., "ReMDM", arXiv 2503.00307 (remasking).

`ddlm.sampling.denoise` ranks the masked positions by a score (the strategy) and asks this
module which to reveal. Everything here is a pure function of tensors, with no model.
Shapes: score, conf, active, fill (B, T); k, steps (B,); reveal (B, T) bool.
"""

from __future__ import annotations

import torch

from .tokenizer import MASK_ID


def reveal_count(n_masked: torch.Tensor, steps_left: torch.Tensor) -> torch.Tensor:
    """k = ceil(m / r) per row: spread the m masks still to reveal evenly over r steps."""
    r = steps_left.clamp_min(1)
    return torch.div(n_masked + r - 1, r, rounding_mode="floor")


def block_index(fill: torch.Tensor, block_length: int | None) -> torch.Tensor:
    """(B, T) the block of each position: its rank among the row's fill positions // length."""
    if block_length is None:
        return torch.zeros_like(fill, dtype=torch.long)
    return ((fill.long().cumsum(1) - 1) // block_length).clamp_min(0)


def current_block(masked: torch.Tensor, block_of: torch.Tensor) -> torch.Tensor:
    """(B,) the block each row is decoding: the lowest block that still holds a mask."""
    far = torch.iinfo(block_of.dtype).max
    return torch.where(masked, block_of, torch.full_like(block_of, far)).amin(1)


class Blocks:
    """LLaDA's semi-autoregressive schedule: each row decodes its lowest block that still
    holds a mask, with `per_block` steps of its own; `block_length=None` is one block."""

    def __init__(self, fill: torch.Tensor, block_length: int | None, per_block: int):
        self.block_of = block_index(fill, block_length)  # (B, T)
        self.per_block = per_block
        self.block = torch.zeros(fill.shape[0], dtype=torch.long, device=fill.device)  # (B,)
        self.used = torch.zeros_like(self.block)  # steps spent in the current block

    def next(self, masked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For the step about to run: (B, T) the current block's positions, (B, T) its masks
        (the positions this step may reveal), (B,) how many to reveal (`reveal_count`)."""
        now = current_block(masked, self.block_of)
        self.used = torch.where(now == self.block, self.used, torch.zeros_like(self.used))
        self.block = now
        in_block = self.block_of == now[:, None]
        active = masked & in_block
        return in_block, active, reveal_count(active.sum(1), self.steps_left())

    def steps_left(self) -> torch.Tensor:
        """(B,) steps the current block has left, this one included."""
        return self.per_block - self.used

    def spend(self, live: torch.Tensor) -> None:
        """Count a step for the rows (B,) bool that ran it."""
        self.used += live.long()


def choose_reveals(
    score: torch.Tensor,
    conf: torch.Tensor,
    active: torch.Tensor,
    k: torch.Tensor,
    *,
    min_gap: int = 0,
    block_length: int | None = None,
    threshold: float | None = None,
    factor: float | None = None,
) -> torch.Tensor:
    """(B, T) bool: the k `active` positions to reveal per row, the best by `score`, kept
    `min_gap` apart (`reveal_gap`); plus, with a threshold or factor, the positions whose
    guess has probability `conf` high enough (`confident`)."""
    gap = reveal_gap(min_gap, block_length, k)
    return top_k(score, active, k, gap) | confident(conf, active, threshold, factor)


def top_k(
    score: torch.Tensor, active: torch.Tensor, k: torch.Tensor, gap: int | torch.Tensor
) -> torch.Tensor:
    """(B, T) bool: the k best `active` positions per row by `score`, at least `gap` apart
    unless it is 0 (`spaced_top_k`)."""
    score = score.masked_fill(~active, float("-inf"))
    if isinstance(gap, torch.Tensor) or gap:
        return spaced_top_k(score, active, k, gap)
    rank = score.argsort(1, descending=True).argsort(1)
    return active & (rank < k[:, None])


def reveal_gap(min_gap: int, block_length: int | None, k: torch.Tensor) -> int | torch.Tensor:
    """The gap between one step's reveals: `min_gap`, but in blocks no more than the block
    leaves room for (k reveals fit block_length // k apart)."""
    if not min_gap or not block_length:
        return min_gap
    return (block_length // k.clamp(min=1) - 1).clamp(0, min_gap)


def confident(
    conf: torch.Tensor, active: torch.Tensor, threshold: float | None, factor: float | None
) -> torch.Tensor:
    """(B, T) bool: Fast-dLLM's extra reveals. With a threshold, every active position whose
    guess has probability `conf` at least that high; with a factor, the surest
    `factor_count` of them; with neither, none."""
    if threshold is not None:
        return active & (conf >= threshold)
    if factor is not None:
        surest = torch.where(active, conf, float("-inf")).argsort(1, descending=True).argsort(1)
        return active & (surest < factor_count(conf, active, factor)[:, None])
    return torch.zeros_like(active)


def spaced_top_k(
    score: torch.Tensor, active: torch.Tensor, k: torch.Tensor, gap: int | torch.Tensor
) -> torch.Tensor:
    """(B, T) bool: per row the k best `active` positions by `score`, taken one at a time so
    that at least `gap` positions (an int, or (B,) per row) lie between any two of them; when
    too few such positions are left (the end of a block), the best of the rest make up the
    count.

    Two neighbouring masks revealed in one step are each drawn from their own marginal, as if
    the other were still unknown (the factorised reverse step of notebook 06): "t" then "e" may
    each be likely after "th", and "te" not at all. Spacing the reveals lets every byte of a
    step be drawn with its neighbours either known or left for a later step."""
    T = score.shape[1]
    pos = torch.arange(T, device=score.device)
    gap = torch.as_tensor(gap, device=score.device).expand(score.shape[0])  # (B,)
    picked = torch.zeros_like(active)
    free = active.clone()
    for _ in range(int(k.max()) if k.numel() else 0):
        s = score.masked_fill(~free, float("-inf"))
        best = s.argmax(1)  # (B,)
        take = (picked.sum(1) < k) & torch.isfinite(s.gather(1, best[:, None]).squeeze(1))
        picked |= take[:, None] & (pos[None, :] == best[:, None])
        free &= ~(take[:, None] & ((pos[None, :] - best[:, None]).abs() <= gap[:, None]))
    short = k - picked.sum(1)  # rows that ran out of spaced positions
    rest = score.masked_fill(picked | ~active, float("-inf"))
    rank = rest.argsort(1, descending=True).argsort(1)
    return picked | (active & ~picked & (rank < short[:, None]))


def factor_count(conf: torch.Tensor, active: torch.Tensor, factor: float) -> torch.Tensor:
    """(B,) Fast-dLLM's factor rule (arXiv 2505.22618, Sec. 3.3): with the active positions'
    confidences sorted, c_1 >= c_2 >= ..., the largest n with (n + 1)(1 - c_n) <= factor.
    Each of n guesses revealed together is wrong with probability at most 1 - c_n, so by a
    union bound the step goes wrong with probability at most n(1 - c_n); the paper's factor
    n + 1 makes the rule a little stricter. The left side grows with n (c_n falls), so the
    count is the length of the run of n that pass."""
    c = torch.where(active, conf, torch.zeros_like(conf)).sort(1, descending=True).values
    n = torch.arange(1, c.shape[1] + 1, device=c.device)
    ok = ((n + 1) * (1 - c) <= factor) & (c > 0)
    return ok.long().cumprod(1).sum(1)  # the passing run from n = 1 (it is a prefix anyway)


def remask_least_sure(
    ids: torch.Tensor, sure: torch.Tensor, candidates: torch.Tensor, n: int, allowed: torch.Tensor
) -> torch.Tensor:
    """ReMDM's confidence rule, deterministically: in each `allowed` row (B,), turn the n
    `candidates` (B, T) whose confidence `sure` (B, T) was lowest when they were revealed
    back into MASK. The step schedule then spreads the extra masks over the steps left."""
    score = torch.where(candidates & allowed[:, None], sure, float("inf"))
    rank = score.argsort(1).argsort(1)
    return torch.where((rank < n) & torch.isfinite(score), MASK_ID, ids)
