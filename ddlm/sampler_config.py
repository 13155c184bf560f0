"""The sampler's options: one frozen, validated `SamplerConfig` that every caller passes.

`generate`, `infill`, `denoise`, `ddlm sample` (one command-line option per field, with the
help text below) and the widgets' sampler panel all take this object; `ddlm.sampling` explains
what each option does to the reverse process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .configs import option

STRATEGIES = ("low_confidence", "random")
CONFIDENCES = ("probability", "margin", "entropy", "pmi")
CACHES = (None, "prefix", "dual")
SAMPLER_PRESETS = ("tiny", "llada")  # classmethods of SamplerConfig; the first is the default


@dataclass(frozen=True)
class SamplerConfig:
    """How to run the reverse process. Validated once, here; everyone else trusts it."""

    steps: int | None = option(None, "network evaluations; None = one per byte to fill")
    strategy: str = option(
        "low_confidence",
        "which masks to reveal: 'low_confidence' (surest first) or 'random'",
        choices=STRATEGIES,
    )
    confidence: str = option(
        "pmi",
        "how sure a guess is, for low_confidence: 'pmi' (the default), its log-probability "
        "less the log-probability the model gives that byte with every byte masked (what the "
        "context adds, so common bytes such as spaces no longer go first; one extra network "
        "evaluation), or its probability (LLaDA's), the margin over the runner-up, or the "
        "negative entropy of the distribution",
        choices=CONFIDENCES,
    )
    block_length: int | None = option(
        None, "decode in blocks of this many bytes, left to right; None = one block"
    )
    temperature: float = option(0.0, "0 = take the most likely byte; > 0 = sample (Gumbel-max)")
    top_p: float = option(
        1.0,
        "with temperature > 0: sample only among the likeliest bytes that together hold this "
        "much probability (nucleus sampling); 1 = all bytes",
    )
    order_bias: float = option(
        0.02,
        "low_confidence: lower each mask's score by this much per mask before it in its "
        "block, a soft left-to-right order (PC-Sampler, arXiv 2508.13021); 0 = off; random "
        "order ignores it (the default 0.02 was chosen with min_gap by bench/short_prompts.py)",
    )
    min_gap: int = option(
        12,
        "keep at least this many positions between bytes revealed in the same step, while "
        "enough masks remain (the surest first, then the surest far enough from those; in "
        "blocks, no more than block_length // k - 1 for k reveals a step, so they fit): "
        "bytes revealed together are drawn independently, and near ones need not agree; 0 = off "
        "(the default 12 was chosen by bench/short_prompts.py; it only acts at 2+ bytes per step)",
    )
    no_repeat: int = option(
        12,
        "never reveal a byte that would complete a run of this many bytes already in the "
        "text, prompt included (no-repeat n-grams, the classic cure for greedy loops such as "
        "'the file of the file of'): the step is decided again without that byte, and after 8 "
        "tries the likeliest byte that makes no copy is written; 0 = off "
        "(the default 12 was chosen by bench/short_prompts.py; set 0 to let a text copy itself)",
    )
    threshold: float | None = option(
        None, "also reveal every mask at least this confident (Fast-dLLM); None = off"
    )
    factor: float | None = option(
        None,
        "Fast-dLLM's factor rule: also reveal the n surest masks, n the largest count with "
        "(n + 1)(1 - c_n) <= factor (c_n: the n-th highest confidence); None = off",
    )
    cache: str | None = option(
        None,
        "'prefix' = reuse the keys/values before the current block; 'dual' = also those after "
        "it (Fast-dLLM's DualCache); None = off",
        choices=CACHES,
    )
    cache_refresh: int | None = option(
        None, "with a cache: recompute it every this many steps; None = once per block"
    )
    remask: int = option(
        0,
        "each step, send back to MASK up to this many bytes revealed at earlier steps of the "
        "block, the least sure when revealed, to be predicted again with more context "
        "(ReMDM, arXiv 2503.00307); never at a block's last step; 0 = revealed bytes stay",
    )
    stop_at_eos: bool = option(
        False, "let the model end the text: after a revealed EOS, the rest is EOS (unshown)"
    )
    min_length: int = option(
        0,
        "with stop_at_eos: bytes to generate before an EOS may come",
    )
    guidance: float = option(
        0.0,
        "classifier-free guidance scale w: logits + w * (logits - logits with the prompt "
        "masked); 0 = off, > 0 leans harder on the prompt (two network passes per step)",
    )

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"SamplerConfig.{name}={getattr(self, name)!r}: {why}")

        if self.steps is not None and (not isinstance(self.steps, int) or self.steps < 1):
            raise bad("steps", "must be a positive integer or None")
        if self.strategy not in STRATEGIES:
            raise bad("strategy", f"choose one of {STRATEGIES}")
        if self.block_length is not None and (
            not isinstance(self.block_length, int) or self.block_length < 1
        ):
            raise bad("block_length", "must be a positive integer or None")
        if self.temperature < 0:
            raise bad("temperature", "must be >= 0")
        if not 0.0 < self.top_p <= 1.0:
            raise bad("top_p", "must be in (0, 1]; 1 = no truncation")
        if self.top_p < 1.0 and self.temperature == 0:
            raise bad("top_p", "truncates what is sampled: set temperature > 0 (greedy ignores it)")
        if self.threshold is not None and not 0.0 < self.threshold <= 1.0:
            raise bad("threshold", "must be in (0, 1] or None")
        if self.factor is not None and (self.factor <= 0 or self.threshold is not None):
            raise bad("factor", "must be positive, and not combined with a threshold")
        if self.cache not in CACHES:
            raise bad("cache", f"choose one of {CACHES}")
        if self.cache_refresh is not None and (self.cache is None or self.cache_refresh < 1):
            raise bad("cache_refresh", "must be a positive number of steps, with a cache")
        if self.order_bias < 0:
            raise bad("order_bias", "must be >= 0 (0 = no positional preference)")
        if not isinstance(self.min_gap, int) or self.min_gap < 0:
            raise bad("min_gap", "must be a non-negative integer (0 = off)")
        if not isinstance(self.no_repeat, int) or self.no_repeat < 0 or self.no_repeat == 1:
            raise bad("no_repeat", "must be 0 (off) or a run length of at least 2 bytes")
        if self.confidence not in CONFIDENCES:
            raise bad("confidence", f"choose one of {CONFIDENCES}")
        if not isinstance(self.remask, int) or self.remask < 0:
            raise bad("remask", "must be a non-negative integer")
        if self.remask and (self.threshold is not None or self.factor is not None):
            raise bad(
                "remask",
                "sends bytes back every step, so a block never ends early: it defeats a "
                "threshold or factor rule; use one or the other",
            )
        if not isinstance(self.min_length, int) or self.min_length < 0:
            raise bad("min_length", "must be a non-negative integer")
        if self.min_length and not self.stop_at_eos:
            raise bad("min_length", "means something only with stop_at_eos=True")
        if self.guidance < 0:
            raise bad("guidance", "must be >= 0 (0 = off)")
        if self.guidance and self.cache is not None:
            raise bad("guidance", "needs the whole sequence each step; use it without a cache")

    def steps_per_block(self, to_fill: int, rows: int = 1) -> int:
        """The steps each block gets when `rows` sequences, the longest with `to_fill`
        positions to generate, are decoded together; raises ValueError if this config cannot
        decode them (the checks that need the input as well as the config)."""
        if to_fill == 0:
            raise ValueError("nothing to fill: `fill` is False everywhere")
        if self.cache is not None and rows > 1:
            raise ValueError(
                f"cache={self.cache!r} decodes one prompt at a time, got {rows} rows; "
                "pass a single prompt"
            )
        steps = self.steps or to_fill
        if steps > to_fill:
            raise ValueError(f"steps={steps} is more than the {to_fill} positions to fill")
        n_blocks = -(-to_fill // self.block_length) if self.block_length else 1
        if steps % n_blocks:
            raise ValueError(
                f"steps={steps} must be a multiple of the number of blocks ({n_blocks})"
            )
        return steps // n_blocks

    @property
    def ranks_by_pmi(self) -> bool:
        """Whether a run needs `byte_prior` (one network evaluation before the first step)."""
        return self.strategy == "low_confidence" and self.confidence == "pmi"

    # ---- named presets ------------------------------------------------------------------

    @classmethod
    def llada(cls, **options) -> SamplerConfig:
        """LLaDA's sampler (arXiv 2502.09992, `generate.py`): reveal the masks whose guess has
        the highest probability, with none of the helpers a tiny model needs (no PMI ranking,
        no gap between one step's reveals, no no-repeat rule, no reading-order bias)."""
        llada = dict(confidence="probability", min_gap=0, no_repeat=0, order_bias=0.0)
        return cls(**{**llada, **options})

    @classmethod
    def tiny(cls, **options) -> SamplerConfig:
        """The shipped default, tuned for the 2.5 M-parameter `tiny` model: LLaDA's loop with
        PMI ranking, one step's reveals 12 positions apart, no 12-byte repeats and a soft
        left-to-right order (notebook 09 derives each). `SamplerConfig()` is the same."""
        return cls(**options)

    @classmethod
    def preset(cls, name: str, **options) -> SamplerConfig:
        """The preset called `name` (one of `SAMPLER_PRESETS`), with some fields changed."""
        if name not in SAMPLER_PRESETS:
            raise ValueError(f"unknown sampler preset {name!r}; choose one of {SAMPLER_PRESETS}")
        return getattr(cls, name)(**options)

    def with_options(self, **options) -> SamplerConfig:
        """A copy with some fields changed (validated again); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown sampler options {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **options)
