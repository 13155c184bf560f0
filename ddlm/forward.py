"""What one sampling step runs: a plain forward pass, a cached one, or a guided pair.

Wu et al., "Fast-dLLM", arXiv 2505.22618 (prefix and dual caches); Ho and Salimans,
"Classifier-Free Diffusion Guidance", arXiv 2207.12598, as Nie et al. 2024 use it for masked
diffusion (guidance). `ddlm.sampling.denoise` asks `StepNetwork` for logits once per step.
Shapes: ids (B, T) int64 -> logits (B, T, V) float32.
"""

from __future__ import annotations

import torch

from .tokenizer import MASK_ID


class StepNetwork:
    """One network evaluation per step: a plain forward pass, or Fast-dLLM's prefix cache.

    Prefix cache (arXiv 2505.22618, "prefix KV cache"; one sequence, no padding): everything
    before the current block (the prompt and finished blocks) is the prefix. At the first
    step of a block, or every `cache_refresh` steps, the whole sequence runs and each layer
    stores what it needs of the prefix (`DiffusionLM.new_cache`); the other steps run only
    the current and later positions. In a bidirectional model the prefix's keys and values
    would change as the block fills in, so this is an approximation; refresh=1 makes it exact.
    Dual cache (the same paper's DualCache): the positions after the block (still masked,
    or given text in an infill) are stored too, and the other steps run the block alone.
    """

    def __init__(
        self,
        model,
        attention_mask: torch.Tensor | None,
        fill: torch.Tensor,
        cache: str | None = None,
        refresh: int | None = None,
        guidance: float = 0.0,
    ):
        """`fill` (B, T) bool marks the positions to generate, `attention_mask` (B, T) the real
        ones; `cache`, `refresh` and `guidance` are SamplerConfig's cache, cache_refresh and
        guidance (which it has checked: a cache decodes one sequence, without guidance)."""
        self.model, self.refresh = model, refresh
        self.cache = cache  # None, "prefix" or "dual"
        given = ~fill  # (B, T) bool: the prompt's bytes
        if attention_mask is not None:
            attention_mask = attention_mask.to(fill.device)
            given = given & attention_mask
        self.attention_mask = attention_mask
        self.layers, self.start, self.age = None, -1, 0
        self.guidance, self.given = guidance, given
        self.passes = 2 if guidance else 1  # network evaluations per step

    def __call__(self, ids: torch.Tensor, in_block: torch.Tensor) -> torch.Tensor:
        if self.guidance:
            return self.guided(ids)
        if self.cache is None:
            return self.model(ids, self.attention_mask)  # (B, T, V)
        # The block's own positions: block_index also files the prompt under block 0.
        where = (in_block[0] & ~self.given[0]).nonzero()
        start = int(where[0, 0])  # first position of the current block
        # Where the suffix starts: after the block for the dual cache, else the end.
        end = int(where[-1, 0]) + 1 if self.cache == "dual" else ids.shape[1]
        if start == 0:  # nothing before the block: no prefix to cache
            return self.model(ids)
        stale = self.layers is None or start != self.start
        if stale or (self.refresh and self.age >= self.refresh):
            suffix_from = end if end < ids.shape[1] else None
            self.layers, self.start, self.age = self.model.new_cache(start, suffix_from), start, 1
            return self.model(ids, cache=self.layers)
        self.age += 1
        for layer in self.layers:
            layer.mode = "use"
        part = self.model(ids[:, start:end], cache=self.layers)  # (1, end - start, V)
        full = part.new_zeros(ids.shape[0], ids.shape[1], part.shape[-1])
        full[:, start:end] = part  # positions outside the block are not revealed now: ignored
        return full

    def guided(self, ids: torch.Tensor) -> torch.Tensor:
        """Classifier-free guidance (Ho & Salimans 2022; for masked diffusion, Nie et al.
        2024, "Scaling up Masked Diffusion Models on Text", as LLaDA uses it): one batch
        holds the sequence and a copy with the prompt masked,
        the "unconditional" model. Logits c + w (c - u) push away from what the model would
        write without the prompt. The mask predictor was trained on sequences with every
        byte possibly masked, so it already is its own unconditional model."""
        B = ids.shape[0]
        unconditional = torch.where(self.given, MASK_ID, ids)
        both = torch.cat([ids, unconditional])  # (2B, T)
        mask = None if self.attention_mask is None else self.attention_mask.repeat(2, 1)
        logits = self.model(both, mask).float()  # (2B, T, V)
        c, u = logits[:B], logits[B:]
        return c + self.guidance * (c - u)
