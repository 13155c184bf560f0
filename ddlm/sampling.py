"""Sampling: the reverse process, from all-MASK to text, recorded step by step.

Nie et al., "Large Language Diffusion Models" (LLaDA), arXiv 2502.09992, Algorithms 4 and 5
and the semi-autoregressive schedule; Wu et al., "Fast-dLLM", arXiv 2505.22618 (confidence
threshold, prefix cache); Zheng et al., arXiv 2409.02908 (Gumbel noise in low precision).

Start: the prompt, then `length` MASKs. Each step runs the network once (one "NFE"),
predicts a byte for every masked position, and *reveals* some of them; the rest stay masked
("remasked") for later steps. Revealed bytes are never changed again (unless `remask`
asks for ReMDM's revisions: then some are sent back to MASK and predicted anew).

How many to reveal (`reveal_count`). With m positions still masked and r steps left, a step
reveals k = ceil(m / r). Over N steps this is LLaDA's even split: m = 10, N = 4 gives
3, 3, 2, 2. With `block_length`, the answer is cut into blocks decoded left to right
(semi-autoregressive), each block getting steps / n_blocks steps of its own.

Which to reveal (`choose_reveals`, by `SamplerConfig.strategy`):
* "low_confidence" (LLaDA Alg. 5): the k masked positions whose predicted byte the context
  makes most likely, by `confidence`: by default its pointwise mutual information with the
  context (log-probability less the log-probability with nothing known, `byte_prior`: the
  measure that collapses least into spaces in `bench/short_prompts.py`), or LLaDA's
  probability, the margin, the negative entropy. Uncertain positions
  stay masked and are predicted again later, with more context. `order_bias` lowers a
  position's score by its rank among the block's masks, a soft left-to-right order;
  `min_gap` keeps the k of one step apart (`spaced_top_k`; 12 by default), so that no byte is
  drawn beside a neighbour revealed in the same step.
* "random" (LLaDA Alg. 4): k masked positions chosen uniformly. Alg. 4 keeps each masked
  position masked with probability s/t (t = current, s = next time); choosing exactly the
  expected number, as LLaDA's code does, keeps NFE fixed.
* `threshold=tau` (Fast-dLLM): additionally reveal every masked position whose confidence is
  at least tau. Confident steps reveal many bytes, so fewer network evaluations are needed;
  the k above is kept as a floor, so generation still ends within `steps`. `factor=f`
  (Fast-dLLM's factor rule, `factor_count`) reveals the n surest instead, n as large as
  (n + 1)(1 - c_n) <= f allows.

Which byte to write at a revealed position (`pick_bytes`): the likeliest (temperature 0), or
a sample (Gumbel-max at `temperature`, optionally from the nucleus, `top_p`). With
`no_repeat=n`, a chosen reveal whose byte would complete a run of n bytes the text already
holds (`repeats`) is banned from that position and the step decided again; a step still
choosing copies after `_REDECIDE` decisions writes, in each such place, the likeliest byte that
completes none (`replace_repeats`), so no run of n bytes occurs twice (n = 12 by default,
chosen with `min_gap` by `bench/short_prompts.py`). `remask`
(ReMDM, arXiv 2503.00307) sends the least sure earlier reveals of a block back to MASK each
step, and `guidance` (classifier-free guidance) contrasts the prediction with one made
without the prompt; `forward.StepNetwork` runs the passes, with or without a cache.

All of these options live in one validated `SamplerConfig`; `generate`, `infill`, the CLI and
the widgets pass it to `denoise`, the loop itself. Every intermediate state is kept in
`Generation.trace`, which widgets replay without ever re-running the model.

Shapes: ids (B, T) int64; fill (B, T) bool; trace entries (T,) int16 / float16 / bool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch

from .forward import StepNetwork
from .model import require_arch
from .sampler_config import CACHES, CONFIDENCES, STRATEGIES, SamplerConfig
from .tokenizer import EOS_ID, MASK_ID, N_BYTES, PAD_ID, ByteTokenizer
from .trace import Generation, TraceStep, before_eos

# The config and the trace live in their own modules; they are part of this one's interface.
__all__ = [
    "CACHES",
    "CONFIDENCES",
    "STRATEGIES",
    "Generation",
    "SamplerConfig",
    "TraceStep",
    "before_eos",
    "block_index",
    "allowed_logits",
    "certainty",
    "choose_reveals",
    "current_block",
    "denoise",
    "end_at_eos",
    "factor_count",
    "generate",
    "infill",
    "nucleus",
    "pick_bytes",
    "remask_least_sure",
    "repeats",
    "replace_repeats",
    "reveal_count",
]

_tok = ByteTokenizer()
_REDECIDE = 8  # no_repeat: decisions per step before the last resort, `replace_repeats`


# ---- one step's pieces ----------------------------------------------------------------


def allowed_logits(logits: torch.Tensor, eos_ok: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, V) float32 logits where only bytes may be chosen, and EOS where the (B, T) bool
    `eos_ok` says so; every other special id gets -inf. Sampling and ranking both use it,
    so the probabilities they see are the same ones."""
    logits = logits.float().clone()
    eos = logits[..., EOS_ID].clone()
    logits[..., N_BYTES:] = float("-inf")
    if eos_ok is not None:
        logits[..., EOS_ID] = torch.where(eos_ok, eos, float("-inf"))
    return logits


def pick_bytes(
    logits: torch.Tensor,
    temperature: float,
    generator: torch.Generator,
    eos_ok: torch.Tensor | None = None,
    top_p: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Predicted bytes and their probabilities from logits (B, T, V) -> (B, T), (B, T).

    Only byte ids are allowed, and EOS where `eos_ok` says so (`allowed_logits`). With
    temperature > 0 the choice is Gumbel-max: argmax(logits / temperature + g),
    g = -log(-log U), drawn in float64 because Gumbel noise rounded to low precision lowers the
    effective temperature (arXiv 2409.02908). `top_p < 1` first drops the unlikely tail
    (Holtzman et al., arXiv 1904.09751): the fewest bytes whose probability adds up to top_p
    stay, so a sampled byte is never one the model thought almost impossible. The nucleus is
    taken from the model's own distribution (before the temperature), and the returned
    probability is always the model's own (untruncated, untempered) one.
    """
    logits = allowed_logits(logits, eos_ok)
    probs = logits.softmax(-1)
    if temperature > 0:
        if top_p < 1.0:
            logits = logits.masked_fill(~nucleus(probs, top_p), float("-inf"))
        u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).to(logits.device)
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        pred = (logits.double() / temperature + gumbel).argmax(-1)
    else:
        pred = logits.argmax(-1)
    return pred, probs.gather(-1, pred.unsqueeze(-1)).squeeze(-1)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """(..., V) bool: the smallest set of likeliest ids whose probabilities reach top_p.

    An id stays if the mass of the ids strictly likelier than it is below top_p, so the
    likeliest id always stays."""
    sorted_p, order = probs.sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p  # mass strictly ahead of each id
    keep_sorted = before < top_p
    return torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)


def certainty(
    logits: torch.Tensor,
    pred: torch.Tensor,
    measure: str,
    eos_ok: torch.Tensor | None = None,
    prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, T) how sure the model is of the chosen byte `pred` (B, T) at each position, by
    `measure` (SamplerConfig.confidence), from the same distribution `pick_bytes` draws from.

    "probability": of the chosen byte (LLaDA). "margin": its lead over the likeliest *other*
    byte: top-1 minus top-2 for a greedy choice, negative when sampling drew a byte that is not
    the favourite; a position torn between two bytes scores low even when both are likely
    (Kim et al., arXiv 2502.06768). "entropy": minus the entropy of the whole distribution; it
    also sees how the rest of the mass is spread. A space after a word is a likely byte, but
    often not a certain one: the measures differ in how far they trust it.

    "pmi": log p(byte | context) - log p(byte | nothing), with `prior` (V,) the log-probabilities
    of `byte_prior`: how much the unmasked text raised the byte's probability. A weak model is
    surest of the bytes that are common everywhere (spaces, "e"), and revealing those first is
    how a canvas fills with spaces; this measure ranks first the bytes the context decides
    ("n" after "retur"), the ones a reader would write first too.
    """
    p = allowed_logits(logits, eos_ok).softmax(-1)  # (B, T, V)
    chosen = p.gather(-1, pred.unsqueeze(-1)).squeeze(-1)
    if measure == "probability":
        return chosen
    if measure == "margin":
        return chosen - p.scatter(-1, pred.unsqueeze(-1), 0.0).amax(-1)
    if measure == "pmi":
        if prior is None:
            raise ValueError('confidence "pmi" needs the prior from byte_prior()')
        return chosen.clamp_min(1e-30).log() - prior[pred]
    return (p * p.clamp_min(1e-30).log()).sum(-1)  # -H(p) <= 0


@torch.no_grad()
def byte_prior(model, length: int, device: torch.device) -> torch.Tensor:
    """(V,) log-probabilities of each id when nothing is known: the model's prediction for a
    row of `length` MASKs, averaged over positions (one network evaluation). For a model
    trained to the ELBO this is close to the corpus's byte frequencies. EOS stays allowed
    (a text may end); the other specials, never chosen, get log(1e-30), so that no prior is
    -inf (which would make a byte the model never expects infinitely informative)."""
    blank = torch.full((1, length), MASK_ID, dtype=torch.long, device=device)
    eos_ok = torch.ones(1, length, dtype=torch.bool, device=device)
    p = allowed_logits(model(blank), eos_ok).softmax(-1).mean(1)[0]  # (V,)
    return p.clamp_min(1e-30).log()


def end_at_eos(ids: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
    """After a revealed EOS a row's text is over: every later generated position becomes EOS
    (masked ones, and bytes revealed there earlier, which random order can do)."""
    eos = ((ids == EOS_ID) & fill).long()
    after = (eos.cumsum(1) - eos) > 0  # strictly after the row's first EOS
    return torch.where(after & fill, EOS_ID, ids)


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


def choose_reveals(
    score: torch.Tensor,
    conf: torch.Tensor,
    active: torch.Tensor,
    k: torch.Tensor,
    config: SamplerConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """(B, T) bool: the k `active` positions to reveal per row, the surest by `score` (less
    `order_bias` per earlier mask) or at random, spaced by `min_gap` if set (in blocks, by no
    more than the block leaves room for: k reveals fit block_length // k apart); plus, with a
    threshold, every active position whose guess has probability `conf` at least that high,
    or with a factor, the surest `factor_count` of them."""
    if config.strategy == "low_confidence":
        score = score.clone()
        if config.order_bias:  # how many masks of the block lie before each position
            before = active.long().cumsum(1) - active.long()
            score = score - config.order_bias * before
    else:
        score = torch.rand(conf.shape, generator=generator).to(conf.device)
    score[~active] = float("-inf")
    if config.min_gap:
        gap: int | torch.Tensor = config.min_gap
        if config.block_length:  # k reveals fit a block at most block_length // k apart
            gap = (config.block_length // k.clamp(min=1) - 1).clamp(0, config.min_gap)
        reveal = spaced_top_k(score, active, k, gap)
    else:
        rank = score.argsort(1, descending=True).argsort(1)
        reveal = active & (rank < k[:, None])
    if config.threshold is not None:
        reveal |= active & (conf >= config.threshold)
    if config.factor is not None:
        surest = torch.where(active, conf, float("-inf")).argsort(1, descending=True).argsort(1)
        reveal |= active & (surest < factor_count(conf, active, config.factor)[:, None])
    return reveal


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


def _runs_through(row: list[int], i: int, n: int) -> list[tuple[int, ...]]:
    """The runs of n bytes of `row` that contain position i and hold only bytes (no MASK, PAD
    or EOS): the runs that writing position i completes."""
    first, last = max(0, i - n + 1), min(i, len(row) - n)
    runs = [tuple(row[s : s + n]) for s in range(first, last + 1)]
    return [r for r in runs if max(r) < N_BYTES]


def _copies(runs: list[tuple[int, ...]], seen: set) -> bool:
    """True if one of `runs` is already in `seen`, or occurs twice among them."""
    return any(r in seen for r in runs) or len(set(runs)) < len(runs)


def _seen_runs(row: list[int], n: int) -> set:
    """Every run of n bytes (bytes only) that `row` holds."""
    runs = (tuple(row[s : s + n]) for s in range(len(row) - n + 1))
    return {r for r in runs if max(r) < N_BYTES}


def repeats(ids: torch.Tensor, pred: torch.Tensor, reveal: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T) bool: the `reveal` positions whose predicted byte `pred` (B, T) would complete a
    run of n bytes that the row of `ids` (B, T) already holds, the prompt included.

    A run counts only where all its other n - 1 positions hold revealed bytes (no MASK, PAD or
    EOS). Greedy decoding of a weak model loops ("the file of the file of"): every byte of a
    loop is likely given the copy before it. Banning the byte that would complete a copy of n
    bytes is the no-repeat n-gram rule of left-to-right decoders (Paulus et al., arXiv
    1705.04304), applied to whichever positions a step reveals. The reveals of one step are
    checked left to right, each against the text with the earlier ones written in, so that two
    of them cannot make a copy together."""
    out = torch.zeros_like(reveal)
    if ids.shape[1] < n:  # too short to hold a run at all
        return out
    for b in torch.nonzero(reveal.any(1)).flatten().tolist():
        row, guess = ids[b].tolist(), pred[b].tolist()
        seen = _seen_runs(row, n)
        for i in torch.nonzero(reveal[b]).flatten().tolist():
            row[i] = guess[i]
            new = _runs_through(row, i, n)
            if _copies(new, seen):
                out[b, i] = True
                row[i] = MASK_ID  # not written: the step decides it again
            else:
                seen.update(new)
    return out


def replace_repeats(
    ids: torch.Tensor, pred: torch.Tensor, reveal: torch.Tensor, logits: torch.Tensor, n: int
) -> torch.Tensor:
    """(B, T) `pred` with each reveal that would complete a copy of n bytes replaced by the
    likeliest byte under `logits` (B, T, V) that completes none.

    The last resort of the no-repeat rule, for a step still choosing copies after `_REDECIDE`
    decisions: the reveals are written left to right, each checked against the text with the
    earlier ones in, so no run of n bytes ends up in the text twice. (A position where every
    byte would complete a copy keeps the model's choice; that needs the text to hold more
    than 256 runs sharing one context, longer than any canvas here.)"""
    pred = pred.clone()
    if ids.shape[1] < n:
        return pred
    for b in torch.nonzero(reveal.any(1)).flatten().tolist():
        row = ids[b].tolist()
        seen = _seen_runs(row, n)
        for i in torch.nonzero(reveal[b]).flatten().tolist():
            choices = [int(pred[b, i])]
            order = logits[b, i].argsort(descending=True, stable=True)
            choices += [c for c in order.tolist() if logits[b, i, c] > float("-inf")]
            for c in choices:
                row[i] = c
                if not _copies(new := _runs_through(row, i, n), seen):
                    break
            else:  # every byte makes a copy: keep the model's choice
                row[i] = choices[0]
                new = _runs_through(row, i, n)
            pred[b, i] = row[i]
            seen.update(new)
    return pred


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


# ---- the loop ---------------------------------------------------------------------------


@torch.no_grad()
def denoise(
    model,
    ids: torch.Tensor,
    fill: torch.Tensor,
    config: SamplerConfig,
    *,
    attention_mask: torch.Tensor | None = None,
    seed: int | None = None,
    callback: Callable[[int, TraceStep], None] | None = None,
) -> list[Generation]:
    """Run the reverse process on ids (B, T), generating the positions where `fill` is True.

    Whatever `ids` holds at those positions is replaced by MASK first. `attention_mask`
    (B, T) marks real positions (False = padding). `callback(step, state)` is called after
    every step with its number (1, 2, ...; not the network evaluations so far, which PMI's
    prior and guidance's second pass also count) and the first row's new TraceStep (for
    live display). Returns one
    Generation per row.
    """
    require_arch(model, False, "denoise", "ddlm.ar.generate_ar")
    B, T = ids.shape
    longest = int(fill.sum(1).max())
    if longest == 0:
        raise ValueError("nothing to fill: `fill` is False everywhere")
    steps = config.steps or longest
    if steps > longest:
        raise ValueError(f"steps={steps} is more than the {longest} positions to fill")
    n_blocks = -(-longest // config.block_length) if config.block_length else 1
    if steps % n_blocks:
        raise ValueError(f"steps={steps} must be a multiple of the number of blocks ({n_blocks})")
    per_block = steps // n_blocks
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed if seed is not None else _fresh_seed())
    ids = torch.where(fill, MASK_ID, ids).to(device)
    fill = fill.to(device)
    block_of = block_index(fill, config.block_length)
    eos_ok = fill & (fill.long().cumsum(1) > config.min_length) if config.stop_at_eos else None
    given = ~fill if attention_mask is None else ~fill & attention_mask.to(device)
    network = StepNetwork(model, attention_mask, config, given)
    traces = [[TraceStep.start(row)] for row in ids]
    nfe = torch.zeros(B, dtype=torch.long)
    block = torch.zeros(B, dtype=torch.long, device=device)
    used = torch.zeros(B, dtype=torch.long, device=device)  # steps spent in the current block
    sure = torch.full(ids.shape, float("inf"), device=device)  # confidence when revealed
    with _eval_mode(model):
        prior = None
        if config.confidence == "pmi" and config.strategy == "low_confidence":
            prior = byte_prior(model, T, device)
            nfe += 1
        while bool((masked := ids == MASK_ID).any()):
            now = current_block(masked, block_of)
            used = torch.where(now == block, used, torch.zeros_like(used))
            block, live = now, masked.any(1)
            active = masked & (block_of == block[:, None])
            logits = network(ids, block_of == block[:, None])
            k = reveal_count(active.sum(1), per_block - used)
            for _ in range(_REDECIDE if config.no_repeat else 1):
                pred, conf = pick_bytes(logits, config.temperature, gen, eos_ok, config.top_p)
                score = (  # random order draws its own scores
                    certainty(logits, pred, config.confidence, eos_ok, prior)
                    if config.strategy == "low_confidence"
                    else conf
                )
                reveal = choose_reveals(score, conf, active, k, config, gen)
                looping = repeats(ids, pred, reveal, config.no_repeat) if config.no_repeat else None
                if looping is None or not bool(looping.any()):
                    break
                # ban each looping byte at its position, then decide the step again
                ban = torch.zeros_like(logits, dtype=torch.bool)
                ban.scatter_(-1, pred.unsqueeze(-1), looping.unsqueeze(-1))
                logits = logits.masked_fill(ban, float("-inf"))
            else:  # still copying after _REDECIDE decisions: take the likeliest byte that is not
                allowed = allowed_logits(logits, eos_ok)
                pred = replace_repeats(ids, pred, reveal, allowed, config.no_repeat)
                conf = allowed.softmax(-1).gather(-1, pred.unsqueeze(-1)).squeeze(-1)
            ids = torch.where(reveal, pred, ids)
            if config.stop_at_eos:
                ids = end_at_eos(ids, fill)
                reveal = masked & (ids != MASK_ID)
            sure = torch.where(reveal, conf, sure)
            if config.remask:
                earlier = fill & ~masked & (block_of == block[:, None]) & (ids < N_BYTES)
                ids = remask_least_sure(ids, sure, earlier, config.remask, per_block - used > 1)
            used += live.long()
            nfe += live.long().cpu() * network.passes
            # Under a cache only the block was computed: elsewhere there is no guess to show.
            guessed = masked & (block_of == block[:, None]) if network.cache is not None else masked
            shown = torch.where(guessed | ~masked, pred, MASK_ID)
            _record(traces, live, ids, shown, torch.where(guessed, conf, float("nan")), reveal)
            if callback is not None:
                callback(len(traces[0]) - 1, traces[0][-1])
    return [Generation(ids[b].cpu(), fill[b].cpu(), int(nfe[b]), traces[b]) for b in range(B)]


def remask_least_sure(
    ids: torch.Tensor, sure: torch.Tensor, candidates: torch.Tensor, n: int, allowed: torch.Tensor
) -> torch.Tensor:
    """ReMDM's confidence rule, deterministically: in each `allowed` row (B,), turn the n
    `candidates` (B, T) whose confidence `sure` (B, T) was lowest when they were revealed
    back into MASK. The step schedule then spreads the extra masks over the steps left."""
    score = torch.where(candidates & allowed[:, None], sure, float("inf"))
    rank = score.argsort(1).argsort(1)
    return torch.where((rank < n) & torch.isfinite(score), MASK_ID, ids)


def _record(traces, live, ids, pred, conf, reveal) -> None:
    for b in torch.nonzero(live).flatten().tolist():
        traces[b].append(
            TraceStep(
                ids[b].short().cpu(), pred[b].short().cpu(), conf[b].half().cpu(), reveal[b].cpu()
            )
        )


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _fresh_seed() -> int:
    """A seed drawn from torch's global generator: seed=None follows torch.manual_seed."""
    return int(torch.randint(0, 2**62, (1,)).item())


# ---- the two entry points ---------------------------------------------------------------


def _configured(config: SamplerConfig | None, options: dict) -> SamplerConfig:
    if config is not None and not isinstance(config, SamplerConfig):
        raise TypeError(
            f"config must be a SamplerConfig, got {config!r}; pass single options by name, "
            "e.g. steps=32"
        )
    return (config or SamplerConfig()).with_options(**options)


def generate(
    model,
    prompt: str | bytes | Sequence[str | bytes],
    length: int,
    config: SamplerConfig | None = None,
    *,
    seed: int | None = None,
    callback: Callable[[int, TraceStep], None] | None = None,
    **options,
) -> Generation | list[Generation]:
    """Generate `length` bytes after `prompt` with the reverse process (module docstring).

    `config` holds the sampler's options; keyword `options` (steps=, strategy=, ...) change
    single fields of it. `prompt` may be a list of prompts of different lengths: they are
    decoded together in one batch (right-padded). One prompt gives one Generation, a list
    gives a list.
    """
    config = _configured(config, options)
    single = isinstance(prompt, (str, bytes, bytearray))
    prompts = [_tok.encode(p) for p in ([prompt] if single else list(prompt))]
    if not prompts:
        raise ValueError("no prompt given")
    if not isinstance(length, int) or length <= 0:
        raise ValueError(f"length must be a positive integer, got {length!r}")
    if config.block_length is not None and length % config.block_length:
        raise ValueError(f"block_length={config.block_length} must divide length={length}")
    if config.cache is not None and len(prompts) > 1:
        raise ValueError(
            f"cache={config.cache!r} decodes one prompt at a time; pass a single prompt"
        )
    longest = max(len(p) for p in prompts)
    if longest + length > model.config.max_seq_len:
        raise ValueError(
            f"prompt ({longest} bytes) + length ({length}) = {longest + length} exceeds the "
            f"model's context of {model.config.max_seq_len} bytes"
        )
    ids = torch.full((len(prompts), longest + length), PAD_ID, dtype=torch.long)
    fill = torch.zeros(ids.shape, dtype=torch.bool)
    for b, p in enumerate(prompts):
        ids[b, : len(p)] = p
        fill[b, len(p) : len(p) + length] = True
    real = (ids != PAD_ID) | fill
    gens = denoise(
        model,
        ids,
        fill,
        config,
        attention_mask=None if real.all() else real,
        seed=seed,
        callback=callback,
    )
    gens = [g.crop(len(p) + length) for g, p in zip(gens, prompts)]
    return gens[0] if single else gens


def infill(
    model,
    text: str | bytes,
    config: SamplerConfig | None = None,
    *,
    spans: Sequence[tuple[int, int]] | None = None,
    seed: int | None = None,
    callback: Callable[[int, TraceStep], None] | None = None,
    **options,
) -> Generation:
    """Fill the holes of `text`: every `█` (U+2588) stands for exactly one byte to generate.

    Holes may be anywhere: the model uses the text on both sides, which a left-to-right
    model cannot. `spans`, a list of (start, end) byte offsets into the text, marks further
    bytes to regenerate. `steps` defaults to the number of holes (one byte per step).
    `Generation.full_text` is the filled-in text.
    """
    config = _configured(config, options)
    ids = _tok.encode(text, glyph_as_mask=True)
    for start, end in spans or ():
        if not 0 <= start < end <= len(ids):
            raise ValueError(f"span ({start}, {end}) is outside the text's {len(ids)} bytes")
        ids[start:end] = MASK_ID
    fill = ids == MASK_ID
    if not bool(fill.any()):
        raise ValueError(f"nothing to fill in {text!r}: mark each byte to fill with the glyph █")
    if config.stop_at_eos:
        raise ValueError("stop_at_eos ends a continuation; infill's holes have a fixed size")
    if len(ids) > model.config.max_seq_len:
        raise ValueError(
            f"text of {len(ids)} bytes exceeds the model's context of {model.config.max_seq_len}"
        )
    return denoise(model, ids[None], fill[None], config, seed=seed, callback=callback)[0]
