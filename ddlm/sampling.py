"""Sampling: the reverse process, from all-MASK to text, recorded step by step.

Nie et al., "Large Language Diffusion Models" (LLaDA), arXiv 2502.09992, Algorithms 4 and 5
and the semi-autoregressive schedule; Wu et al., "Fast-dLLM", arXiv 2505.22618 (confidence
threshold, prefix cache); Zheng et al., arXiv 2409.02908 (Gumbel noise in low precision).

Start: the prompt, then `length` MASKs. Each step runs the network once (one "NFE"),
predicts a byte for every masked position, and *reveals* some of them; the rest stay masked
("remasked") for later steps. Revealed bytes are never changed again (unless `remask`
asks for ReMDM's revisions: then some are sent back to MASK and predicted anew).

How many to reveal (`reveal.reveal_count`). With m positions still masked and r steps left, a
step reveals k = ceil(m / r). Over N steps this is LLaDA's even split: m = 10, N = 4 gives
3, 3, 2, 2. With `block_length`, the answer is cut into blocks decoded left to right
(semi-autoregressive), each block getting steps / n_blocks steps of its own.

Which to reveal (`ranking` orders the masks by `SamplerConfig.strategy`, then
`reveal.choose_reveals` picks):
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
holds (`no_repeat.repeats`) is banned from that position and the step decided again; a step
still choosing copies after `_REDECIDE` decisions writes, in each such place, the likeliest byte
that completes none (`no_repeat.replace_repeats`), so no run of n bytes occurs twice (n = 12
by default, chosen with `min_gap` by `bench/short_prompts.py`). `remask` (ReMDM, arXiv
2503.00307) sends the least sure earlier reveals of a block back to MASK each step, and
`guidance` (classifier-free guidance) contrasts the prediction with one made without the
prompt; `forward.StepNetwork` runs the passes, with or without a cache.

All of these options live in one validated `SamplerConfig`; `generate`, `infill`, the CLI and
the widgets pass it to `denoise`, the loop itself: each step one network pass, `decide` what to
reveal, `write_reveals`, record (`rules` binds the options into the step's functions). Every
intermediate state is kept in `Generation.trace`, which widgets replay without ever re-running
the model.

Shapes: ids (B, T) int64; fill (B, T) bool; trace entries (T,) int16 / float16 / bool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from functools import partial
from typing import NamedTuple

import torch

from .forward import StepNetwork
from .model import require_arch
from .no_repeat import repeats, replace_repeats
from .reveal import (
    Blocks,
    block_index,
    choose_reveals,
    current_block,
    factor_count,
    remask_least_sure,
    reveal_count,
    spaced_top_k,
)
from .sampler_config import CACHES, CONFIDENCES, STRATEGIES, SamplerConfig
from .tokenizer import EOS_ID, MASK_ID, N_BYTES, PAD_ID, ByteTokenizer
from .trace import Generation, TraceStep, before_eos

# The config, the trace, the reveal choice and the no-repeat rule live in their own modules;
# they are part of this one's interface.
__all__ = [
    "CACHES",
    "CONFIDENCES",
    "STRATEGIES",
    "Generation",
    "Rules",
    "SamplerConfig",
    "TraceStep",
    "before_eos",
    "block_index",
    "allowed_logits",
    "certainty",
    "choose_reveals",
    "current_block",
    "decide",
    "denoise",
    "end_at_eos",
    "factor_count",
    "generate",
    "infill",
    "nucleus",
    "pick_bytes",
    "ranking",
    "remask_least_sure",
    "repeats",
    "replace_repeats",
    "reveal_count",
    "rules",
    "spaced_top_k",
    "write_reveals",
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


def ranking(
    strategy: str,
    measure: str,
    order_bias: float,
    prior: torch.Tensor | None,
    eos_ok: torch.Tensor | None,
    generator: torch.Generator,
) -> Callable[..., torch.Tensor]:
    """The strategy (SamplerConfig.strategy), chosen here once: a function
    (logits, pred, conf, active) -> (B, T) score by which a step ranks its masks, the highest
    revealed first.

    "low_confidence" (LLaDA Alg. 5): `certainty` by `measure` (`prior` for "pmi"), less
    `order_bias` per mask of the block before the position, a soft left-to-right order.
    "random" (Alg. 4): a fresh uniform draw each step."""

    def at_random(logits, pred, conf, active):
        return torch.rand(conf.shape, generator=generator).to(conf.device)

    def by_confidence(logits, pred, conf, active):
        score = certainty(logits, pred, measure, eos_ok, prior)
        if order_bias:  # how many masks of the block lie before each position
            before = active.long().cumsum(1) - active.long()
            score = score - order_bias * before
        return score

    return at_random if strategy == "random" else by_confidence


class Rules(NamedTuple):
    """The three choices every step makes, with the run's options bound in (`rules`)."""

    draw: Callable  # logits -> (pred, conf): which byte at each position, `pick_bytes`
    rank: Callable  # (logits, pred, conf, active) -> score: in what order, `ranking`
    choose: Callable  # (score, conf, active, k) -> reveal: which to reveal, `choose_reveals`
    no_repeat: int  # run length no reveal may copy; 0 = off


def rules(
    config: SamplerConfig,
    prior: torch.Tensor | None,
    eos_ok: torch.Tensor | None,
    generator: torch.Generator,
) -> Rules:
    """The one place where `config`'s options become the step's functions, each of which
    then takes them as explicit arguments."""
    c = config
    return Rules(
        partial(
            pick_bytes, temperature=c.temperature, generator=generator, eos_ok=eos_ok, top_p=c.top_p
        ),
        ranking(c.strategy, c.confidence, c.order_bias, prior, eos_ok, generator),
        partial(
            choose_reveals,
            min_gap=c.min_gap,
            block_length=c.block_length,
            threshold=c.threshold,
            factor=c.factor,
        ),
        c.no_repeat,
    )


def decide(
    logits: torch.Tensor, ids: torch.Tensor, active: torch.Tensor, k: torch.Tensor, rules: Rules
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's decision from `logits` (B, T, V) (`allowed_logits`): the bytes `rules.draw`
    predicts and their probabilities, and which of the `active` masks (B, T) to reveal, k (B,)
    per row (`rules.rank`, then `rules.choose`).

    With `no_repeat=n`, a reveal whose byte would complete a run of n bytes the text `ids`
    already holds (`repeats`) is banned at its position and the step decided again; a step
    still copying after `_REDECIDE` decisions writes, in each such place, the likeliest byte
    that completes none (`replace_repeats`)."""
    n = rules.no_repeat
    for _ in range(_REDECIDE if n else 1):
        pred, conf = rules.draw(logits)
        reveal = rules.choose(rules.rank(logits, pred, conf, active), conf, active, k)
        looping = repeats(ids, pred, reveal, n) if n else None
        if looping is None or not bool(looping.any()):
            return pred, conf, reveal
        ban = torch.zeros_like(logits, dtype=torch.bool)  # each looping byte at its position
        ban.scatter_(-1, pred.unsqueeze(-1), looping.unsqueeze(-1))
        logits = logits.masked_fill(ban, float("-inf"))
    pred = replace_repeats(ids, pred, reveal, logits, n)
    return pred, logits.softmax(-1).gather(-1, pred.unsqueeze(-1)).squeeze(-1), reveal


def write_reveals(
    ids: torch.Tensor, pred: torch.Tensor, reveal: torch.Tensor, fill: torch.Tensor, eos: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, reveal): the `reveal` positions of `ids` (B, T) set to `pred`; with `eos`
    (stop_at_eos), every `fill` position after a revealed EOS becomes EOS (`end_at_eos`) and
    counts as revealed if it was masked."""
    masked = ids == MASK_ID
    ids = torch.where(reveal, pred, ids)
    if eos:
        ids = end_at_eos(ids, fill)
        reveal = masked & (ids != MASK_ID)
    return ids, reveal


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

    Whatever `ids` holds there is replaced by MASK first; `attention_mask` (B, T) marks real
    positions (False = padding). `callback(step, state)` gets each step's number (1, 2, ...;
    steps, not network evaluations) and the first row's new TraceStep, for live display."""
    require_arch(model, False, "denoise", "ddlm.ar.generate_ar")
    per_block = config.steps_per_block(int(fill.sum(1).max()), rows=ids.shape[0])
    device = next(model.parameters()).device
    ids, fill = torch.where(fill, MASK_ID, ids).to(device), fill.to(device)
    gen = torch.Generator().manual_seed(seed if seed is not None else _fresh_seed())
    eos_ok = fill & (fill.long().cumsum(1) > config.min_length) if config.stop_at_eos else None
    blocks = Blocks(fill, config.block_length, per_block)
    network = StepNetwork(
        model, attention_mask, fill, config.cache, config.cache_refresh, config.guidance
    )
    sure = torch.full(ids.shape, float("inf"), device=device)  # confidence when revealed
    with _eval_mode(model):
        prior = byte_prior(model, ids.shape[1], device) if config.ranks_by_pmi else None
        step_rules = rules(config, prior, eos_ok, gen)
        record = _Recorder(ids, int(prior is not None), network.passes, callback)
        while bool((masked := ids == MASK_ID).any()):
            in_block, active, k = blocks.next(masked)
            logits = allowed_logits(network(ids, in_block), eos_ok)  # one network pass
            pred, conf, reveal = decide(logits, ids, active, k, step_rules)
            ids, reveal = write_reveals(ids, pred, reveal, fill, config.stop_at_eos)
            sure = torch.where(reveal, conf, sure)
            if config.remask:  # ReMDM: the block's least sure earlier reveals go back to MASK
                earlier = fill & ~masked & in_block & (ids < N_BYTES)
                ids = remask_least_sure(ids, sure, earlier, config.remask, blocks.steps_left() > 1)
            blocks.spend(masked.any(1))
            # Under a cache only the block was computed: elsewhere there is no guess to show.
            record(ids, masked, masked & in_block if config.cache else masked, pred, conf, reveal)
    return record.generations(ids, fill)


class _Recorder:
    """Each row's trace and network evaluations so far; calls `callback` after each step."""

    def __init__(self, ids: torch.Tensor, nfe: int, passes: int, callback: Callable | None):
        self.traces = [[TraceStep.start(row)] for row in ids]
        self.nfe = torch.full((ids.shape[0],), nfe)  # so far: PMI's prior costs one
        self.passes, self.callback = passes, callback  # network evaluations per step

    def __call__(self, ids, masked, guessed, pred, conf, reveal) -> None:
        """Record a step: the rows that still had masks (`masked` (B, T), at its start) ran
        it; the guesses `pred` and their `conf` are shown where it made them (`guessed`)."""
        live = masked.any(1)
        self.nfe += live.long().cpu() * self.passes
        shown = torch.where(guessed | ~masked, pred, MASK_ID)
        conf = torch.where(guessed, conf, float("nan"))
        for b in torch.nonzero(live).flatten().tolist():
            row = (ids[b].short(), shown[b].short(), conf[b].half(), reveal[b])
            self.traces[b].append(TraceStep(*(t.cpu() for t in row)))
        if self.callback is not None:
            self.callback(len(self.traces[0]) - 1, self.traces[0][-1])

    def generations(self, ids: torch.Tensor, fill: torch.Tensor) -> list[Generation]:
        """One Generation per row, on the CPU."""
        return [
            Generation(ids[b].cpu(), fill[b].cpu(), int(self.nfe[b]), trace)
            for b, trace in enumerate(self.traces)
        ]


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
