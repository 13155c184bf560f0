"""Partial masking: a byte read as digits, each masked on its own (MDM-Prime on bytes).

Chao et al., "Beyond Masked and Unmasked: Discrete Diffusion Models via Partial Masking",
arXiv 2505.18495; binary digits for a vocabulary of 2^k values: arXiv 2603.16077.

A byte has 8 bits. With `subtokens = s` (1, 2, 4 or 8) we read it as s digits of w = 8 / s
bits each, in base b = 2^w: one byte (s = 1), two nibbles, four bit pairs, or eight bits.
The forward process masks every digit independently with probability t, so a position can be
partly known ("the high nibble is 6, the low one is masked"). Digit j holds bits
[w j, w (j + 1)) of the byte.

What the network sees. One id per position, as always: `ddlm.digits` gives every partly
masked byte an id of its own above the specials, and whole bytes and MASK keep theirs. With
s = 1 there are no partial ids: the plain model.

What it predicts. Still a distribution over the 256 bytes. Bytes that disagree with the
visible digits get probability zero, and each masked digit is scored by its marginal:

    p(digit_j = v | y_t) = sum of p(x | y_t) over the bytes x that agree with the visible
                           digits and have digit j equal to v.

The bound. The digits of a window are a sequence of L s units, masked independently with
probability t: the absorbing process of `ddlm.diffusion`, one level down. Its continuous-time
ELBO, with the linear schedule, is

    -log p(x_0) <= int_0^1 (1/t) E_{y_t}[ sum over masked digits k of -log p(y_0^k | y_t) ] dt

and since a byte and its digits are the same information, it bounds the bytes' negative
log-likelihood too: divided by L ln 2 it is bits per byte, comparable with every other
number we publish. With exact conditionals the bound is tight (the any-order identity over
the L s digits); `exact_elbo` computes it by enumeration for the tests.

Specials. PAD is never masked and never scored. EOS is refused: a position that may hold EOS
is not made of 8 bits, and masking EOS whole beside bytes digit by digit would make the total
reverse rate at a fully masked position depend on the model, an extra term in the bound.

Shapes: x0 (B, T) int64 ids; visible (B, T) int64, a bit mask (0..255) of the bits shown;
logits (B, T, V) with V >= 256; t (B,).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .diffusion import (
    DEFAULT_MASK_EPS,
    bound_draws,
    check_estimator,
    draw_masks,
    mean_and_stderr,
    sample_times,
    scored_positions,
)
from .digits import ALL_BITS, digit_code
from .likelihood import BitsPerByte, chunks
from .tokenizer import EOS_ID, PAD_ID

# ---- the forward process ----------------------------------------------------------------


def mask_digits(
    x0: torch.Tensor,
    t: torch.Tensor,
    subtokens: int,
    generator: torch.Generator | None = None,
    maskable: torch.Tensor | None = None,
) -> torch.Tensor:
    """q(y_t | y_0): hide each digit of each byte with probability t (one t per row, (B,)).

    Returns `visible` (B, T): the bits still shown. Positions that are not bytes (PAD), or
    False in the optional boolean `maskable`, keep all 8 bits. EOS is refused (module
    docstring).
    """
    if bool((x0 == EOS_ID).any()):
        raise ValueError("partial masking (subtokens > 1) does not model EOS; train with eos=False")
    code = digit_code(subtokens)
    u = torch.rand((*x0.shape, code.s), generator=generator).to(x0.device)
    kept = u >= t.to(x0.device)[:, None, None]  # (B, T, s)
    visible = (kept * code.digit_bits.to(x0.device)).sum(-1)
    fixed = x0 >= 256 if maskable is None else (x0 >= 256) | ~maskable.to(x0.device)
    return torch.where(fixed, ALL_BITS, visible)


# ---- the loss ---------------------------------------------------------------------------


def digit_nll(logits: torch.Tensor, x0: torch.Tensor, visible: torch.Tensor, subtokens: int):
    """(B, T) nats: the sum over each position's masked digits of -log p(digit | y_t).

    The network's distribution over the 256 bytes is restricted to the bytes that agree with
    the visible bits (x ^ x0 is zero on them); a masked digit's probability is the share of
    that restricted mass on the bytes whose digit also agrees. Fully visible positions and
    non-bytes score 0.
    """
    code = digit_code(subtokens)
    lb = logits[..., :256].float()
    x = x0.clamp_max(255)
    diff = x[..., None] ^ torch.arange(256, device=x0.device)  # (B, T, 256)

    def log_mass(shown: torch.Tensor) -> torch.Tensor:  # over bytes agreeing on `shown` bits
        agree = (diff & shown[..., None]) == 0
        return torch.logsumexp(lb.masked_fill(~agree, float("-inf")), -1)

    total = log_mass(visible)
    nll = torch.zeros_like(total)
    for bits in code.digit_bits.tolist():
        hidden = ((visible & bits) == 0) & (x0 < 256)
        nll = nll + torch.where(hidden, total - log_mass(visible | bits), 0.0)
    return nll


def subbyte_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    t: torch.Tensor,
    subtokens: int,
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    maskable: torch.Tensor | None = None,
) -> torch.Tensor:
    """The partial-masking training loss, nats per byte: the ELBO's integrand at rates t (B,),
    each masked digit's -log marginal weighted by 1/t, summed, divided by the bytes that may
    be masked (`maskable`, (B, T) bool; by default every real byte)."""
    code = digit_code(subtokens)
    real = (x0 != PAD_ID) if attention_mask is None else attention_mask
    real = real if maskable is None else real & maskable
    visible = mask_digits(x0, t, subtokens, generator, maskable=real)
    logits = model(code.input_ids(x0, visible), attention_mask)
    nll = digit_nll(logits, x0, visible, subtokens)  # (B, T)
    return (nll / t.to(nll.device)[:, None]).sum() / real.sum().clamp_min(1)


def partial_masking_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    subtokens: int,
    attention_mask: torch.Tensor | None = None,
    eps: float = DEFAULT_MASK_EPS,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    prompt_len: int = 0,
    **plain_only,
) -> torch.Tensor:
    """The training loss of a model with `subtokens` digits per byte: one draw of t per row
    (`ddlm.diffusion.sample_times`), then `subbyte_loss`. `prompt_len` keeps a clean prompt
    as in `diffusion_loss`. The options of plain masking that change how bytes are masked or
    weighed (masking, t_power, subs, complementary, weighting) are refused unless at their
    defaults: none of them is derived for digits."""
    defaults = dict(masking="rate", t_power=1.0, subs=False, complementary=False, weighting="elbo")
    changed = sorted(k for k, v in plain_only.items() if k not in defaults or v != defaults[k])
    if changed:
        raise ValueError(f"{', '.join(changed)}: not available with subtokens={subtokens}")
    t = sample_times(x0.shape[0], eps, stratified, generator, x0.device)
    real = scored_positions(x0, attention_mask, prompt_len)
    return subbyte_loss(model, x0, t, subtokens, attention_mask, generator, maskable=real)


# ---- the bound by enumeration (for tests) ------------------------------------------------


def exact_elbo(nll_of: Callable[[torch.Tensor], torch.Tensor], n_units: int) -> float:
    """The continuous-time ELBO in nats, by enumerating every set M of masked units.

    `nll_of(hidden)` takes a boolean (n_units,) mask and returns the summed -log p of the
    hidden units' true values given the shown ones. With each unit hidden with probability t,

        int_0^1 (1/t) t^m (1 - t)^(N - m) dt = Beta(m, N - m + 1) = (m-1)! (N-m)! / N!

    for |M| = m >= 1, so the bound is a finite sum over the 2^N sets.
    """
    total = 0.0
    for code in range(1, 2**n_units):
        hidden = torch.tensor([(code >> k) & 1 == 1 for k in range(n_units)])
        m = int(hidden.sum())
        w = math.exp(math.lgamma(m) + math.lgamma(n_units - m + 1) - math.lgamma(n_units + 1))
        total += w * float(nll_of(hidden))
    return total


# ---- evaluation: bits per byte --------------------------------------------------------------


@torch.no_grad()
def subbyte_bits_per_byte(
    model: Callable[..., torch.Tensor],
    data: torch.Tensor,
    seq_len: int = 256,
    estimator: str = "l",
    max_chunks: int | None = None,
    device: torch.device | str = "cpu",
    **draws,
) -> BitsPerByte:
    """The partial-masking ELBO on `data` (1-D uint8 bytes), in bits per byte.

    The same estimators as `ddlm.diffusion.bits_per_byte`, over the N = L s digits of each
    window of L bytes instead of its L bytes: "t" hides each digit with probability t and
    weighs by 1/t; "l" hides exactly l of the N digits, l stratified over 1..N, and weighs by
    N/l. Both are unbiased for the bound of the module docstring; dividing by L ln 2 makes it
    bits per byte of the same bytes every other estimate scores. `draws` (n_samples,
    batch_size, seed, progress) are those of `ddlm.diffusion.bound_draws`.
    """
    check_estimator(estimator)
    s = int(model.config.subtokens)
    code = digit_code(s)
    windows = chunks(data, seq_len, max_chunks)
    N, L = windows.shape

    def nats_of(x0: torch.Tensor, u: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        hidden, weight = draw_masks(u, len(x0), L * s, 0, estimator, gen)  # over the digits
        visible = ((~hidden).view(len(x0), L, s) * code.digit_bits).sum(-1)
        logits = model(code.input_ids(x0, visible).to(device)).float().cpu()
        return digit_nll(logits, x0, visible, s).sum(1).double() * weight

    per_draw = bound_draws(windows, nats_of, **draws)
    est, stderr = mean_and_stderr(per_draw / (L * math.log(2)))
    return BitsPerByte(est, stderr, N * L, per_draw.shape[1], f"elbo-{estimator}-digits")
