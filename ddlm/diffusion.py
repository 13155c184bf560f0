"""Masked diffusion: the forward process, the training losses and the likelihood bound.

Austin et al., "D3PM", arXiv 2107.03006 (absorbing-state diffusion);
Sahoo et al., "Simple and Effective Masked Diffusion Language Models" (MDLM), arXiv 2406.07524;
Shi et al., "Simplified and Generalized Masked Diffusion", arXiv 2406.04329;
Nie et al., "Large Language Diffusion Models" (LLaDA), arXiv 2502.09992.

Forward process. At time t in [0, 1] every byte is independently replaced by MASK with
probability t (t = 0: clean text, t = 1: all MASK). Masked bytes stay masked as t grows,
so MASK is an absorbing state.

Loss. The network sees x_t and predicts the original byte at every masked position:

    L(theta) = E_{t, x_t} [ (1/t) sum_{i: x_t^i = MASK} -log p_theta(x_0^i | x_t) ] / L

(LLaDA Eq. 3, with L the number of real bytes). Without the 1/t factor this is just
"BERT with a random masking rate"; with it, the sum is the continuous-time ELBO of the
absorbing process, so it bounds the negative log-likelihood from above (see
`elbo_loss`). `diffusion_loss` draws t, masks in one of three modes and weighs the result;
`bits_per_byte` estimates the same bound on held-out text.

Shapes: x0 (B, T) int64 byte ids; attention_mask (B, T) bool; t (B,) float.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .likelihood import BitsPerByte, chunks
from .tokenizer import MASK_ID, PAD_ID

# Default smallest masking rate. LLaDA uses eps = 1e-3 (t ~ U[eps, 1]); the original
# ddlm used 0.075. A small eps keeps the 1/t weight bounded (at most 1/eps) while
# covering almost the whole [0, 1] interval the ELBO integrates over; we follow LLaDA.
Tensor = torch.Tensor
Mask = torch.Tensor | None  # a (B, T) bool attention mask, or None
Gen = torch.Generator | None

DEFAULT_MASK_EPS = 1e-3
MASKINGS = ("rate", "count")  # how many bytes a draw of t masks (rate_masks, count_masks)
WEIGHTINGS = ("elbo", "flat")  # how the masked bytes' losses are weighed (elbo_loss, flat_loss)


def sample_times(
    batch_size: int,
    eps: float = DEFAULT_MASK_EPS,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    power: float = 1.0,
) -> torch.Tensor:
    """Masking rates t in [eps, 1], one per sequence, shape (B,).

    `stratified=True` is MDLM's low-discrepancy sampler: u_b = (U + b / B) mod 1 with a
    single uniform U, so a batch always covers [0, 1] evenly instead of clumping. Each
    u_b is still marginally uniform, so the loss stays unbiased; its variance drops.
    `power != 1` draws t = eps + (1 - eps) u^power instead (importance sampling; the loss
    multiplies by `time_weight` to stay the same bound).
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    if stratified:
        u = (torch.rand(1, generator=generator) + torch.arange(batch_size) / batch_size) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator)
    if power != 1.0:
        u = u**power
    return (eps + (1.0 - eps) * u).to(device)


def time_weight(t: torch.Tensor, eps: float = DEFAULT_MASK_EPS, power: float = 1.0) -> torch.Tensor:
    """The importance weight of each t drawn by `sample_times(..., power=power)`, shape (B,).

    The draw is t = eps + (1 - eps) s with s = u^power, u uniform, so s has density
    p(s) = s^(1/power - 1) / power on [0, 1], and weighting each draw by
    w = 1 / p(s) = power * u^(power - 1) makes E[w f(t)] the uniform-t integral of f that the
    ELBO needs, whatever the power: the same bound, a different spread. power = 2 puts a
    tenth of the draws below s = 0.01 (the uniform draw: a hundredth) and weighs each by
    2u = 2 sqrt(s). power = 1 is the uniform draw, weight 1.
    """
    if power == 1.0:
        return torch.ones_like(t)
    s = ((t - eps) / (1.0 - eps)).clamp_min(1e-12)  # s = u^power; clamped: finite for power < 1
    return power * s ** ((power - 1.0) / power)


def mask_tokens(
    x0: torch.Tensor,
    t: torch.Tensor | float,
    generator: torch.Generator | None = None,
    attention_mask: torch.Tensor | None = None,
    maskable: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward process q(x_t | x_0): mask each real byte with probability t.

    `t` is a float or a (B,) tensor (one rate per sequence). Padding (PAD ids, or False in
    `attention_mask`) is never masked, nor is any position where the optional boolean
    (B, T) `maskable` is False (a prompt). Returns (x_t, masked): x_t (B, T) with MASK_ID
    at the masked positions, and the boolean (B, T) tensor of those positions.
    """
    t = torch.as_tensor(t, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(x0.shape[0])
    if t.shape != (x0.shape[0],):
        raise ValueError(f"t must be a float or shape ({x0.shape[0]},), got {tuple(t.shape)}")
    if bool(((t < 0) | (t > 1)).any()):
        raise ValueError("masking rates t must lie in [0, 1]")
    u = torch.rand(x0.shape, generator=generator).to(x0.device)
    masked = u < t.to(x0.device)[:, None]
    real = x0 != PAD_ID if attention_mask is None else attention_mask
    masked &= real
    if maskable is not None:
        masked &= maskable.to(masked.device)
    return torch.where(masked, torch.full_like(x0, MASK_ID), x0), masked


def clean_prefix_length(
    seq_len: int, prompt_frac: float, clean_prefix_frac: float, generator: torch.Generator
) -> int:
    """Bytes kept clean at the start of each training sequence.

    `prompt_frac` keeps a fixed leading fraction clean. With probability `clean_prefix_frac`
    a batch instead gets a clean prefix of random length k ~ U{0..T-17}: sampling continues a
    prompt, a clean prefix followed by a solid run of MASKs, while plain training at a high
    masking rate leaves clean bytes scattered everywhere, so a model can be good at one and
    poor at the other (LLaDA's supervised stage never masks the prompt). Draws nothing when
    clean_prefix_frac == 0.
    """
    fixed = int(prompt_frac * seq_len)
    if clean_prefix_frac <= 0 or float(torch.rand(1, generator=generator)) >= clean_prefix_frac:
        return fixed
    return int(torch.randint(0, max(1, seq_len - 16), (1,), generator=generator))


def mask_count(
    x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None, maskable: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mask exactly l = ceil(t n) of each row's n maskable positions, chosen uniformly.

    Returns (x_t, masked, share) with share = l / n per row (B,), the loss's divisor. With t
    uniform, l is (nearly) uniform on 1..n, and E[(n / l) sum_masked CE] is LLaDA's Eq. 6
    form of the ELBO.
    """
    n = maskable.sum(1)  # (B,)
    l = (t.to(x0.device) * n).ceil().clamp(min=1).minimum(n.clamp(min=1)).long()
    r = torch.rand(x0.shape, generator=generator).to(x0.device)
    r[~maskable] = 2.0  # never chosen
    masked = (r.argsort(1).argsort(1) < l[:, None]) & maskable
    xt = torch.where(masked, torch.full_like(x0, MASK_ID), x0)
    return xt, masked, l.float() / n.clamp(min=1).float()


def diffusion_loss(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    eps: float = DEFAULT_MASK_EPS,
    stratified: bool = True,
    generator: torch.Generator | None = None,
    prompt_len: int = 0,
    masking: str = "rate",
    t_power: float = 1.0,
    subs: bool = False,
    complementary: bool = False,
    weighting: str = "elbo",
) -> torch.Tensor:
    """The masked-diffusion training loss (LLaDA Eq. 3), a scalar in nats per byte.

    One draw of t per sequence (`sample_times`), one draw of masks in the chosen mode
    (`rate_masks`; `count_masks` for masking="count"; `complementary_masks`), one network
    pass, and the masked bytes' cross-entropy weighed by `elbo_loss` (the bound on the
    likelihood, and why) or `flat_loss`. The other options are explained where they are
    computed: `prompt_len` (`scored_positions`), `t_power` (`sample_times`, `time_weight`),
    `subs` (`without_mask_logits`).
    """
    _check_loss_options(x0.shape, prompt_len, masking, t_power, complementary, weighting)
    B = x0.shape[0]
    # Complementary masks: B / 2 sequences, each twice, so B / 2 rates stratified between them.
    t = sample_times(B // 2 if complementary else B, eps, stratified, generator, x0.device, t_power)
    real = scored_positions(x0, attention_mask, prompt_len)
    if complementary:
        draw = complementary_masks(x0, real, attention_mask, t, eps, generator)
    elif masking == "rate":
        draw = rate_masks(x0, real, attention_mask, t, generator)
    else:
        draw = count_masks(x0, real, attention_mask, t, generator)
    logits = model(draw.xt, draw.attention_mask)  # (B, T, V) float32
    if subs:
        logits = without_mask_logits(logits)
    ce = masked_cross_entropy(logits, draw)
    if weighting == "flat":
        return flat_loss(ce, draw)
    return elbo_loss(ce, draw, eps, t_power)


def _check_loss_options(
    shape: torch.Size,
    prompt_len: int,
    masking: str,
    t_power: float,
    complementary: bool,
    weighting: str,
) -> None:
    """Refuse an unknown mode, a prompt that leaves nothing to score, or complementary masks
    with what they cannot be combined with."""
    if masking not in MASKINGS:
        raise ValueError(f"masking must be one of {MASKINGS}, got {masking!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    B, T = shape
    if not 0 <= prompt_len < T:
        raise ValueError(f"prompt_len must be in [0, {T}) for sequences of {T}, got {prompt_len}")
    if complementary and (B % 2 or masking != "rate" or t_power != 1.0):
        raise ValueError("complementary masks need an even batch, masking='rate', t_power=1")


def scored_positions(
    x0: torch.Tensor, attention_mask: torch.Tensor | None, prompt_len: int
) -> torch.Tensor:
    """The (B, T) bool positions the loss may mask and is per: real bytes after the prompt.

    `prompt_len > 0` keeps the first prompt_len bytes of every sequence clean (LLaDA's
    supervised form, Eq. 5; the original project did not train this way: its loss masks every
    byte of a window, and its prompt exists only at sampling time): only the answer is masked,
    and the loss is per answer byte, a bound on -log p(answer | prompt).
    """
    real = (x0 != PAD_ID) if attention_mask is None else attention_mask.clone()
    if prompt_len:
        real[:, :prompt_len] = False  # the prompt is never masked, nor scored
    return real


class MaskDraw(NamedTuple):
    """One draw of the forward process for a batch: everything the loss scores, all (B, ...)."""

    x0: torch.Tensor  # (B, T) the clean bytes (complementary: the first half, twice)
    real: torch.Tensor  # (B, T) bool, the positions the loss is per (`scored_positions`)
    attention_mask: torch.Tensor | None  # (B, T) bool, or None
    t: torch.Tensor  # (B,) each row's masking rate
    xt: torch.Tensor  # (B, T) x0 with MASK_ID at the masked positions
    masked: torch.Tensor  # (B, T) bool
    share: torch.Tensor  # (B,) the share of `real` masked (in expectation): the ELBO divides by it


def rate_masks(x0: Tensor, real: Tensor, attention_mask: Mask, t: Tensor, gen: Gen) -> MaskDraw:
    """masking="rate": each of a row's `real` bytes masked with probability t (`mask_tokens`);
    t is then the expected share of them masked, the divisor of the ELBO."""
    xt, masked = mask_tokens(x0, t, gen, attention_mask, maskable=real)
    return MaskDraw(x0, real, attention_mask, t, xt, masked, t)


def count_masks(x0: Tensor, real: Tensor, attention_mask: Mask, t: Tensor, gen: Gen) -> MaskDraw:
    """masking="count": the same t, but exactly l = ceil(t n) of a row's n `real` bytes masked
    and the divisor l / n (`mask_count`): the same bound, estimated the way LLaDA's Eq. 6
    evaluates it, without the binomial spread of how many bytes a rate t masks."""
    xt, masked, share = mask_count(x0, t, gen, real)
    return MaskDraw(x0, real, attention_mask, t, xt, masked, share)


def complementary_masks(
    x0: torch.Tensor,
    real: torch.Tensor,
    attention_mask: torch.Tensor | None,
    t: torch.Tensor,
    eps: float,
    generator: torch.Generator | None,
) -> MaskDraw:
    """complementary=True: the first half of a batch twice over, masked where u < t, then
    exactly the other `real` bytes (where u >= t).

    The batch is spent on half as many sequences, each scored at every byte once per step
    (antithetic draws; each copy on its own is still a forward-process draw, so the loss is
    the same bound). t (B / 2,) is mapped to t_1 in [eps, 1 - eps] for the first copies, and
    the second copies get t_2 = 1 - t_1.
    """
    h = x0.shape[0] // 2
    t1 = eps + (1.0 - 2 * eps) * (t[:h] - eps) / (1.0 - eps)
    u = torch.rand(x0[:h].shape, generator=generator).to(x0.device)
    first = (u < t1[:, None]) & real[:h]
    masked = torch.cat([first, ~first & real[:h]])
    x0, real = torch.cat([x0[:h], x0[:h]]), torch.cat([real[:h], real[:h]])
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask[:h], attention_mask[:h]])
    xt = torch.where(masked, torch.full_like(x0, MASK_ID), x0)
    t = torch.cat([t1, 1.0 - t1])
    return MaskDraw(x0, real, attention_mask, t, xt, masked, t)


def without_mask_logits(logits: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits with MASK and PAD at -inf: what the network says about a clean byte.

    `subs=True` in the loss is MDLM's SUBS parameterisation as far as the loss sees it: a
    clean byte is never MASK (nor PAD), so no probability is spent on them (the "carry-over"
    half of SUBS, copying clean bytes through, changes nothing here: only masked positions
    are scored).
    """
    out = logits.clone()
    out[..., MASK_ID] = float("-inf")
    out[..., PAD_ID] = float("-inf")
    return out


def masked_cross_entropy(logits: torch.Tensor, draw: MaskDraw) -> torch.Tensor:
    """(B, T) cross-entropy of each clean byte under `logits` (B, T, V), 0 where not masked."""
    ce = F.cross_entropy(
        logits.transpose(1, 2), draw.x0.clamp_max(logits.shape[-1] - 1), reduction="none"
    )
    return torch.where(draw.masked, ce, 0.0)  # unscored positions may be infinite (PAD, SUBS)


def elbo_loss(ce: torch.Tensor, draw: MaskDraw, eps: float, t_power: float) -> torch.Tensor:
    """weighting="elbo": the continuous-time ELBO, per real byte.

    With the linear schedule (a byte is still clean at time t with probability 1 - t), the
    absorbing process's continuous-time ELBO is

        -log p(x_0) <= int_0^1 (1/t) E_{x_t}[ sum_{i masked} -log p_theta(x_0^i | x_t) ] dt

    (MDLM, arXiv 2406.07524, Eq. 10; Shi et al., arXiv 2406.04329). Each masked position's
    cross-entropy `ce` (B, T) is weighted by 1/t (by its row's share masked, `draw.share`): at
    small t few bytes are masked, and each of them must stand for the whole stretch of the
    trajectory that t represents. Sampling t uniformly gives an unbiased Monte Carlo estimate
    of the integral (with t_power != 1, the importance weight of t keeps it so); dividing by
    the number of real bytes makes it per byte. Restricting t to [eps, 1] drops a sliver of
    the integral, which is why evaluation uses eps = 0 (see `bits_per_byte`).
    """
    share = draw.share
    if t_power != 1.0:  # importance weights of the draw of t (1 for the uniform draw)
        share = share / time_weight(draw.t, eps, t_power)
    weighted = (ce * draw.masked) / share[:, None]  # (B, T)
    return weighted.sum() / draw.real.sum().clamp_min(1)


def flat_loss(ce: torch.Tensor, draw: MaskDraw) -> torch.Tensor:
    """weighting="flat": the mean cross-entropy over every masked byte of the batch, no 1/t.

    A lower-variance objective that gives up the bound: relative to the ELBO it weighs each t
    by t, so the rare lightly masked sequences, whose few bytes carry weights up to 1/eps, no
    longer dominate a step's gradient (BERT's and MaskGIT's loss). It is a weighted ELBO
    (Kingma and Gao, arXiv 2303.00848), not a bound on the likelihood: the value it reports is
    not bits per byte, so models trained with it are still evaluated with the ELBO
    (`bits_per_byte`).
    """
    return ce.sum() / draw.masked.sum().clamp_min(1)


# ---- evaluation: bits per byte ------------------------------------------------------


@torch.no_grad()
def bits_per_byte(
    model: Callable[..., torch.Tensor],
    data: torch.Tensor,
    seq_len: int = 256,
    n_samples: int = 16,
    estimator: str = "l",
    max_chunks: int | None = None,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress: bool = False,
    prompt_len: int = 0,
    context: int | None = None,
) -> BitsPerByte:
    """Estimate validation bits per byte of a diffusion model on `data` (1-D uint8 bytes).

    The data is cut into windows of `seq_len` bytes (`likelihood.chunks`); each window's
    negative log-likelihood is bounded by the ELBO, estimated with `n_samples` Monte Carlo
    draws of masks (`draw_masks`: estimator "t", the training loss with eps = 0, or "l",
    LLaDA's lower-variance form, arXiv 2502.09992 Eq. 6), stratified over the samples so that
    a few samples cover all masking levels. Both are unbiased for the same bound. Result in
    bits per byte (nats / ln 2 / L); the standard error comes from the spread of each window's
    draws, which ignores the stratification and so overstates the error (a conservative
    figure). A clean byte is never MASK or PAD, so the model's distribution is read with those
    two logits at -inf (`without_mask_logits`, MDLM's SUBS): a valid model of the bytes,
    whatever it was trained with, and never a looser bound.

    `prompt_len > 0` scores only the last L - prompt_len bytes of each window given the
    first prompt_len, which stay clean (the conditional form, LLaDA Eq. 6): a bound on
    -log p(answer | prompt) per answer byte. `context=c` (at most prompt_len) shows only the
    prompt's last c bytes; the ones before stay MASK and are not scored: the same answers
    given a short prompt, in a window of the length the model was trained at.
    """
    check_estimator(estimator)
    if not 0 <= prompt_len < seq_len:
        raise ValueError(f"prompt_len must be in [0, {seq_len}), got {prompt_len}")
    context = prompt_len if context is None else context
    if not 0 <= context <= prompt_len:
        raise ValueError(f"context must be in [0, prompt_len={prompt_len}], got {context}")
    windows = chunks(data, seq_len, max_chunks)
    N, L = windows.shape
    A = L - prompt_len  # bytes scored per window

    def nats_of(x0: Tensor, u: Tensor, gen: torch.Generator) -> Tensor:
        masked, weight = draw_masks(u, len(x0), L, prompt_len, estimator, gen)
        return _masked_nats(model, x0, masked, device, prompt_len - context) * weight

    per_draw = bound_draws(windows, nats_of, n_samples, batch_size, seed, progress)
    est, stderr = mean_and_stderr(per_draw / (A * math.log(2)))
    return BitsPerByte(est, stderr, N * A, n_samples, f"elbo-{estimator}")


def check_estimator(estimator: str) -> None:
    if estimator not in ("t", "l"):
        raise ValueError(f"estimator must be 't' or 'l', got {estimator!r}")


def bound_draws(
    windows: Tensor,
    nats_of: Callable[[Tensor, Tensor, torch.Generator], Tensor],
    n_samples: int = 16,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> Tensor:
    """(N, n_samples) float64: `nats_of(x0, u, gen)` for every batch of the N windows and
    every draw, the weighted nats of one draw of masks per window at levels u (b,).

    Each window's s-th draw comes from the s-th of n_samples equal strata of (0, 1), with its
    own jitter: the windows' draws are independent of one another (a shared offset would move
    a whole batch's masking level together and make the standard error several times too
    small)."""
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    N = len(windows)
    gen = torch.Generator().manual_seed(seed)
    per_draw = torch.empty(N, n_samples, dtype=torch.float64)  # nats per window, one per draw
    from tqdm.auto import tqdm

    bar = tqdm(total=N * n_samples, desc="eval", disable=not progress, leave=False)
    for s in range(n_samples):
        for lo in range(0, N, batch_size):
            x0 = windows[lo : lo + batch_size]
            u = (s + torch.rand(len(x0), generator=gen)) / n_samples  # (b,)
            per_draw[lo : lo + len(x0), s] = nats_of(x0, u, gen)
            bar.update(len(x0))
    bar.close()
    return per_draw


def draw_masks(
    u: torch.Tensor, b: int, L: int, prompt_len: int, estimator: str, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw of masks for b windows of L bytes: (masked (b, L), weight (b,) float64) from
    u (b,).

    "t": mask each byte with probability t = u, weight 1/t. "l": draw a number l in 1..A
    (l = ceil(u A)), mask exactly l of the A answer bytes uniformly at random, weight A/l.
    The first prompt_len bytes are never masked.
    """
    A = L - prompt_len
    r = torch.rand(b, L, generator=gen)
    r[:, :prompt_len] = 2.0  # the prompt is never masked (and ranks last)
    if estimator == "t":
        t = u.clamp_min(1e-6)
        return r < t[:, None], 1.0 / t.double()
    n_mask = (u * A).long().clamp(0, A - 1) + 1  # l in 1..A
    ranks = r.argsort(dim=1).argsort(dim=1)
    return ranks < n_mask[:, None], A / n_mask.double()


def _masked_nats(
    model: Callable[..., torch.Tensor],
    x0: torch.Tensor,
    masked: torch.Tensor,
    device,
    hidden: int = 0,
) -> torch.Tensor:
    """Each window's summed cross-entropy (nats) over its `masked` bytes, (b,) float64, read
    with MASK and PAD at -inf (`without_mask_logits`). The first `hidden` bytes of every
    window are MASK too, and not scored."""
    shown = ~masked
    shown[:, :hidden] = False
    xt = torch.where(shown, x0, torch.full_like(x0, MASK_ID))
    logits = without_mask_logits(model(xt.to(device)).float().cpu())
    ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
    return (ce * masked).sum(1).double()


def mean_and_stderr(per_draw: torch.Tensor) -> tuple[float, float]:
    """Mean over windows and draws of per_draw (N windows, S draws), with its standard error.

    The windows are fixed; the randomness is in the draws. Var(mean) = sum_c var_c / (N^2 S),
    with var_c the spread of window c's draws. With one draw per window that spread cannot be
    seen, so we fall back to the spread across all draws (which overstates the error).
    """
    N, S = per_draw.shape
    est = per_draw.mean().item()
    if S > 1:
        return est, math.sqrt(per_draw.var(dim=1, unbiased=True).sum().item() / (N**2 * S))
    return est, (per_draw.flatten().std() / math.sqrt(N)).item() if N > 1 else float("nan")
