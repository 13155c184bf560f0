"""The autoregressive twin: everything that is different for a `causal=True` model.

The same `DiffusionLM` class with `ModelConfig(causal=True)` is a GPT-style byte model of
the same size, the baseline every diffusion number is compared with. This module holds what
it needs: the next-byte loss, exact bits per byte, and left-to-right sampling with a
key/value cache. Which of these or their diffusion counterparts a given model uses is
decided in one place, `objectives`; the AR judge that scores samples lives with the other
sample-quality measures, in `quality`.

Shapes: x0 (B, T) int64 byte ids; logits (B, T, V) float32.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .likelihood import BitsPerByte, chunks
from .model import DiffusionLM, require_arch
from .quality import continuation_bits_per_byte as continuation_bits_per_byte  # notebook 08
from .sampling import pick_bytes
from .tokenizer import MASK_ID, PAD_ID, ByteTokenizer
from .trace import Generation, TraceStep

_tok = ByteTokenizer()


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
