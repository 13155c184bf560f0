"""One name for both kinds of model: the training loss, the evaluation and the sampler.

A `DiffusionLM` is either the masked diffusion model or, with `ModelConfig(causal=True)`, its
autoregressive twin. The trainer, its callbacks and the command line go through `loss`,
`evaluate` and `sample`, which pick the diffusion version (`diffusion.diffusion_loss`,
`diffusion.bits_per_byte`, `sampling.generate`; `subbyte.partial_masking_loss` and
`subbyte.subbyte_bits_per_byte` for a model with `subtokens > 1`) or the autoregressive one
(`ar.ar_loss`, `ar.ar_bits_per_byte`, `ar.generate_ar`) from the model's config, so that no
other module needs to ask which kind of model it holds.

Shapes: x0 (B, T) int64 byte ids; data a 1-D uint8 tensor of held-out bytes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .ar import ar_bits_per_byte, ar_loss, generate_ar
from .diffusion import bits_per_byte, diffusion_loss
from .likelihood import BitsPerByte
from .model import DiffusionLM
from .sampler_config import SamplerConfig
from .sampling import generate
from .subbyte import partial_masking_loss, subbyte_bits_per_byte
from .trace import Generation, TraceStep


def is_autoregressive(model: DiffusionLM) -> bool:
    """Whether `model` (or the model inside a DDP wrapper) is the causal twin."""
    return bool(getattr(model, "module", model).config.causal)


def check_diffusion_options(model: DiffusionLM, **options) -> None:
    """Refuse options that only mean something for a diffusion model, given a causal one."""
    used = sorted(k for k, v in options.items() if v)
    if used and is_autoregressive(model):
        raise ValueError(f"{', '.join(used)} apply to diffusion models, not causal ones")


def loss(net: Callable[..., torch.Tensor], model: DiffusionLM, x0: torch.Tensor, **diffusion):
    """The training loss of `model` (called through `net`, e.g. its DDP wrapper) on x0:
    `diffusion_loss(net, x0, **diffusion)`, or next-byte cross-entropy for a causal model
    (which ignores the masking options; a clean prompt means nothing to it)."""
    if is_autoregressive(model):
        check_diffusion_options(model, prompt_len=diffusion.get("prompt_len", 0))
        return ar_loss(net, x0)
    subtokens = getattr(model, "module", model).config.subtokens
    if subtokens > 1:
        return partial_masking_loss(net, x0, subtokens, **diffusion)
    return diffusion_loss(net, x0, **diffusion)


def evaluate(
    model: DiffusionLM,
    data: torch.Tensor,
    seq_len: int,
    max_chunks: int | None = None,
    device: torch.device | str = "cpu",
    **diffusion,
) -> BitsPerByte:
    """Bits per byte of `model` on `data` at windows of `seq_len` bytes: exact for a causal
    model (`ar_bits_per_byte`), the ELBO for a diffusion model (`diffusion.bits_per_byte`,
    which takes the extra keyword arguments: n_samples, estimator, prompt_len, progress)."""
    if is_autoregressive(model):
        return ar_bits_per_byte(model, data, seq_len, max_chunks=max_chunks, device=device)
    if model.config.subtokens > 1:
        if diffusion.pop("prompt_len", 0):
            raise ValueError("prompt_len is not available with subtokens > 1")
        return subbyte_bits_per_byte(
            model, data, seq_len, max_chunks=max_chunks, device=device, **diffusion
        )
    return bits_per_byte(model, data, seq_len, max_chunks=max_chunks, device=device, **diffusion)


def sample(
    model: DiffusionLM,
    prompt: str | bytes,
    length: int,
    config: SamplerConfig | None = None,
    seed: int | None = None,
    callback: Callable[[int, TraceStep], None] | None = None,
) -> Generation:
    """`length` bytes after `prompt`: left to right for a causal model (the config's
    temperature and top_p apply), the reverse process with `config` for a diffusion model."""
    config = config or SamplerConfig()
    if is_autoregressive(model):
        return generate_ar(
            model, prompt, length, config.temperature, seed, callback, top_p=config.top_p
        )
    return generate(model, prompt, length, config, seed=seed, callback=callback)
