"""The autoregressive twin: everything that is different for a `causal=True` model.

The same `DiffusionLM` class with `ModelConfig(causal=True)` is a GPT-style byte model of
the same size, the baseline every diffusion number is compared with. This module holds what
it needs: the next-byte loss, exact bits per byte, left-to-right sampling with a key/value
cache, and the AR judge that scores samples. Three dispatchers, `loss`, `evaluate` and
`sample`, pick the diffusion or the autoregressive version from the model's config, so no
other module needs to ask which kind of model it holds.

Shapes: x0 (B, T) int64 byte ids; logits (B, T, V) float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .data import chunks
from .diffusion import BitsPerByte, bits_per_byte, diffusion_loss
from .model import DiffusionLM, require_arch
from .sampling import Generation, SamplerConfig, TraceStep, generate, pick_bytes
from .tokenizer import MASK_ID, PAD_ID, ByteTokenizer

_tok = ByteTokenizer()


def is_autoregressive(model: DiffusionLM) -> bool:
    return bool(getattr(model, "module", model).config.causal)


# ---- training and likelihood ------------------------------------------------------------


def ar_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Next-byte cross-entropy for a causal model (nats per predicted byte).

    Position i predicts byte i + 1; padding targets are ignored.
    """
    logits = model(x0, attention_mask)[:, :-1]  # (B, T-1, V)
    target = x0[:, 1:].clone()
    if attention_mask is not None:
        target[~attention_mask[:, 1:]] = -100
    target[target == PAD_ID] = -100
    return F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100)


@torch.no_grad()
def ar_bits_per_byte(
    model: Callable[..., torch.Tensor],
    data: torch.Tensor,
    seq_len: int = 256,
    max_chunks: int | None = None,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> BitsPerByte:
    """Exact bits per byte of a causal model: windows of seq_len + 1 bytes, the last
    seq_len of each predicted from what precedes it within the window."""
    windows = chunks(data, seq_len + 1, max_chunks)
    total, count = 0.0, 0
    for lo in range(0, len(windows), batch_size):
        x0 = windows[lo : lo + batch_size]
        logits = model(x0[:, :-1].to(device)).float().cpu()
        total += F.cross_entropy(logits.transpose(1, 2), x0[:, 1:], reduction="sum").item()
        count += x0[:, 1:].numel()
    return BitsPerByte(total / count / math.log(2), 0.0, count, 1, "exact-ar")


@torch.no_grad()
def continuation_bits_per_byte(
    judge: Callable[..., torch.Tensor], prompt: torch.Tensor, continuation: torch.Tensor
) -> float:
    """Bits per byte that a causal model assigns to `continuation` given `prompt` (1-D ids).

    The AR judge: lower means the continuation reads more like the corpus to an independent
    autoregressive model. It also rewards runs of spaces (very predictable), so read it
    beside `quality.distinct_ngrams`.
    """
    if len(prompt) == 0 or len(continuation) == 0:
        raise ValueError("prompt and continuation must both be non-empty")
    ids = torch.cat([prompt, continuation]).long()[None]
    device = next(judge.parameters()).device
    logits = judge(ids[:, :-1].to(device)).float().cpu()[0, len(prompt) - 1 :]
    return F.cross_entropy(logits, continuation.long(), reduction="mean").item() / math.log(2)


# ---- sampling ---------------------------------------------------------------------------


@torch.no_grad()
def generate_ar(
    model: DiffusionLM,
    prompt: str | bytes,
    length: int,
    temperature: float = 0.0,
    seed: int | None = None,
    callback: Callable[[int, TraceStep], None] | None = None,
    top_p: float = 1.0,
) -> Generation:
    """Left-to-right sampling from a causal model, one byte per network evaluation.

    A key/value cache keeps what every earlier position contributes to attention (for MLA,
    its small latent), so each step runs the network on one new byte instead of the whole
    sequence: the baseline every speed comparison is made against. Returns a `Generation`
    with a trace, so it can sit beside a diffusion sample; `callback(step, state)` sees each
    step as it is made.
    """
    require_arch(model, True, "generate_ar", "generate or infill")
    if not isinstance(length, int) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    p = _tok.encode(prompt)
    if len(p) == 0:
        raise ValueError("generate_ar needs a non-empty prompt (the first byte has no context)")
    T = len(p) + length
    if T > model.config.max_seq_len:
        raise ValueError(
            f"prompt + length = {T} exceeds the model's context of {model.config.max_seq_len}"
        )
    gen = torch.Generator().manual_seed(
        seed if seed is not None else int(torch.randint(0, 2**62, (1,)))
    )
    device = next(model.parameters()).device
    ids = torch.cat([p, torch.full((length,), MASK_ID, dtype=torch.long)]).to(device)
    trace = [TraceStep.start(ids)]
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache(len(p))  # records the prompt's keys and values
        logits = model(ids[None, : len(p)], cache=cache)[:, -1:]  # (1, 1, V)
        for layer in cache:
            layer.mode = "extend"  # from now on: read the cache, then append to it
        for i in range(len(p), T):
            pred, conf = pick_bytes(logits, temperature, gen, top_p=top_p)
            ids[i] = pred[0, 0]
            trace.append(_ar_step(ids, i, conf[0, 0]))
            if callback is not None:
                callback(len(trace) - 1, trace[-1])
            if i + 1 < T:
                logits = model(ids[None, i : i + 1], cache=cache)  # (1, 1, V): the next byte
    finally:
        model.train(was_training)
    fill = torch.zeros(T, dtype=torch.bool)
    fill[len(p) :] = True
    return Generation(ids.cpu(), fill, length, trace)


def _ar_step(ids: torch.Tensor, i: int, conf: torch.Tensor) -> TraceStep:
    T = ids.shape[0]
    revealed = torch.zeros(T, dtype=torch.bool)
    revealed[i] = True
    c = torch.full((T,), float("nan"), dtype=torch.float16)
    c[i] = conf.half().cpu()
    return TraceStep(ids.short().cpu(), ids.short().cpu(), c, revealed)


# ---- one name for both kinds ---------------------------------------------------------------


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
