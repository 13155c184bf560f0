import math

import pytest
import torch
from helpers import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ddlm
from ddlm.ar import generate_ar
from ddlm.forward import StepNetwork
from ddlm.sampling import (
    SamplerConfig,
    byte_prior,
    certainty,
    current_block,
    denoise,
    factor_count,
    generate,
    infill,
    nucleus,
    pick_bytes,
    reveal_count,
)
from ddlm.tokenizer import EOS_ID, MASK_GLYPH, MASK_ID


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ddlm.DiffusionLM(tiny_config()).eval()


@pytest.fixture(scope="module", params=["mla", "mha"])
def ar_model(request):
    torch.manual_seed(0)
    return ddlm.DiffusionLM(tiny_config(causal=True, attention=request.param)).eval()


# The mechanism tests below use LLaDA's sampler (probability ranking, none of the tiny model's
# helpers), so that every network evaluation is a step; the default, PMI, costs one evaluation
# more (its prior), tested on its own.
LLADA = SamplerConfig.llada()


def check_trace(g, strategy, extra_passes=0):
    """The trace replays to the final ids, and reveals are consistent; one entry per step
    (the start, then one per network evaluation beyond `extra_passes`)."""
    assert torch.equal(g.trace[-1].ids.long(), g.ids)
    assert len(g.trace) == g.nfe - extra_passes + 1
    assert (g.trace[0].ids[g.fill] == MASK_ID).all()
    for prev, cur in zip(g.trace, g.trace[1:]):
        newly = (prev.ids == MASK_ID) & (cur.ids != MASK_ID)
        assert torch.equal(newly, cur.revealed)
        assert cur.revealed.any()
        # A revealed byte never changes again; known bytes never change.
        known = prev.ids != MASK_ID
        assert torch.equal(cur.ids[known], prev.ids[known])
        assert torch.isnan(cur.confidence[known].float()).all()


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prompt=st.binary(min_size=1, max_size=12),
    length=st.integers(1, 24),
    data=st.data(),
    strategy=st.sampled_from(["low_confidence", "random"]),
)
def test_properties(model, prompt, length, data, strategy):
    steps = data.draw(st.integers(1, length))
    threshold = data.draw(st.one_of(st.none(), st.floats(0.01, 1.0)))
    g = generate(model, prompt, length, steps=steps, strategy=strategy, threshold=threshold, seed=1)
    assert g.ids[: len(prompt)].tolist() == list(prompt)  # prompt untouched
    assert not (g.ids == MASK_ID).any()  # every mask filled
    assert len(g.ids) == len(prompt) + length
    # The default ranking (PMI) spends one evaluation on its prior; random order needs none.
    extra = int(strategy == "low_confidence" and SamplerConfig().confidence == "pmi")
    if threshold is None:
        assert g.nfe == steps + extra
    else:
        assert 1 + extra <= g.nfe <= steps + extra
    check_trace(g, strategy, extra_passes=extra)


def test_even_split_schedule(model):
    g = generate(model, "ab", 10, steps=4, seed=0)
    assert [int(s.revealed.sum()) for s in g.trace[1:]] == [3, 3, 2, 2]


def test_blocks_go_left_to_right(model):
    g = generate(model, "ab", 12, LLADA, steps=6, block_length=4, seed=0)
    first_reveal = {}
    for i, s in enumerate(g.trace[1:], 1):
        for p in s.revealed.nonzero().flatten().tolist():
            first_reveal[p] = i
    blocks = [[first_reveal[p] for p in range(2 + 4 * b, 6 + 4 * b)] for b in range(3)]
    assert max(blocks[0]) < min(blocks[1]) and max(blocks[1]) < min(blocks[2])
    assert g.nfe == 6


def test_low_confidence_reveals_the_most_confident(model):
    g = generate(model, "ab", 8, steps=4, seed=0)
    s = g.trace[1]
    conf = s.confidence.float()
    chosen = conf[s.revealed]
    others = conf[(~s.revealed) & ~torch.isnan(conf)]
    assert chosen.min() >= others.max()


def test_same_seed_same_output(model):
    a = generate(model, "x", 16, steps=8, temperature=1.0, seed=7)
    b = generate(model, "x", 16, steps=8, temperature=1.0, seed=7)
    c = generate(model, "x", 16, steps=8, temperature=1.0, seed=8)
    assert torch.equal(a.ids, b.ids)
    assert not torch.equal(a.ids, c.ids)


def test_threshold_one_at_least_one_per_step(model):
    g = generate(model, "x", 8, LLADA, steps=8, threshold=1.0, seed=0)
    assert g.nfe == 8  # nobody is that confident: one per step


def test_threshold_reduces_nfe_on_a_confident_model():
    class Confident(torch.nn.Module):  # always sure the byte is 'a'
        config = tiny_config()

        def __init__(self):
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(1))

        def forward(self, ids, attention_mask=None):
            out = torch.full((*ids.shape, 259), -20.0)
            out[..., 97] = 20.0
            return out

    g = generate(Confident(), "x", 32, LLADA, steps=32, threshold=0.9, seed=0)
    assert g.nfe == 1 and g.text == "a" * 32


def test_batch_of_prompts_of_different_lengths(model):
    gens = generate(model, ["a", "hello there"], 8, LLADA, steps=4, seed=0)
    assert [len(g.ids) for g in gens] == [9, 19]
    single = generate(model, "hello there", 8, LLADA, steps=4, seed=0)
    torch.testing.assert_close(gens[1].ids, single.ids)
    for g in gens:
        check_trace(g, "low_confidence")


def test_infill_fills_holes_only(model):
    text = "ab" + MASK_GLYPH * 3 + "cd" + MASK_GLYPH
    g = infill(model, text, LLADA, seed=0)
    assert g.nfe == 4 and MASK_GLYPH not in g.full_text and len(g.text) == 4
    raw = g.ids.tolist()
    assert raw[:2] == [97, 98] and raw[5:7] == [99, 100] and len(raw) == 8
    check_trace(g, "low_confidence")
    spans = infill(model, "abcdef", LLADA, spans=[(1, 3)], seed=0)
    assert spans.ids[0] == 97 and spans.ids[3:].tolist() == [100, 101, 102]


def test_generate_ar(ar_model):
    g = generate_ar(ar_model, "ab", 6, seed=0)
    assert g.nfe == 6 and len(g.ids) == 8 and g.ids[:2].tolist() == [97, 98]
    check_trace(g, "ar")
    # Greedy AR with its key/value cache equals argmax of the full model, step by step.
    ids = torch.tensor([[97, 98]])
    for _ in range(6):
        nxt = ar_model(ids)[0, -1, :256].argmax()
        ids = torch.cat([ids, nxt.view(1, 1)], 1)
    assert torch.equal(ids[0], g.ids)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(length=0, steps=1), "length"),
        (dict(length=8, steps=0), "steps"),
        (dict(length=8, steps=9), "more than"),
        (dict(length=8, steps=4, block_length=3), "divide"),
        (dict(length=8, steps=3, block_length=4), "multiple"),
        (dict(length=8, steps=4, strategy="top"), "strategy"),
        (dict(length=8, steps=4, threshold=0.0), "threshold"),
        (dict(length=8, steps=4, threshold=1.5), "threshold"),
        (dict(length=60, steps=4), "context"),
    ],
)
def test_bad_input(model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, "hello", **kwargs)


def test_wrong_kind_of_model(model, ar_model):
    with pytest.raises(ValueError, match="generate_ar"):
        generate(ar_model, "a", 4, steps=4)
    with pytest.raises(ValueError, match="generate or infill"):
        generate_ar(model, "a", 4)
    with pytest.raises(ValueError, match="nothing to fill"):
        infill(model, "no holes here")


def test_trace_is_compact(model):
    g = generate(model, "ab", 16, steps=8, seed=0)
    s = g.trace[1]
    assert (
        s.ids.dtype == torch.int16
        and s.confidence.dtype == torch.float16
        and s.revealed.dtype == torch.bool
    )


def test_callback_sees_every_step(model):
    seen = []
    generate(
        model, "ab", 8, LLADA, steps=4, seed=0, callback=lambda i, s: seen.append((i, s.text()))
    )
    assert [i for i, _ in seen] == [1, 2, 3, 4]
    assert seen[0][1].count(MASK_GLYPH) == 6 and MASK_GLYPH not in seen[-1][1]


def test_prefix_cache_refreshed_every_step_is_exact(model):
    a = generate(model, "hello world", 16, steps=8, block_length=4, seed=0)
    b = generate(
        model, "hello world", 16, steps=8, block_length=4, seed=0, cache="prefix", cache_refresh=1
    )
    assert torch.equal(a.ids, b.ids)


@pytest.mark.parametrize("attention", ["mla", "mha"])
def test_dual_cache_refreshed_every_step_is_exact(attention):
    torch.manual_seed(0)
    m = ddlm.DiffusionLM(tiny_config(attention=attention)).eval()
    a = generate(m, "hello world", 16, steps=8, block_length=4, seed=0)
    b = generate(
        m, "hello world", 16, steps=8, block_length=4, seed=0, cache="dual", cache_refresh=1
    )
    assert torch.equal(a.ids, b.ids)


# ---- caches that are read: logits against the exact recomputation ----------------------

# A cache read recomputes only the positions after the prefix (prefix cache) or the block
# alone (dual cache). Read with the sequence it was recorded on, it must give the full pass's
# logits up to float32 rounding (CACHE_EXACT; measured: under 1e-7). Read after the block has
# changed, it holds the keys and values of a prefix that attended to the old block: off from
# the recomputation, but by little (CACHE_STALE, for the tiny random test model, where a byte
# changed moves the logits by 3e-4 to 3e-3), and by more than rounding, which is how the
# tests see that the cache, not a recomputation, was read.
CACHE_EXACT = 1e-5
CACHE_STALE = 2e-2


class _CacheSpy(torch.nn.Module):
    """A DiffusionLM that, at every call reading a cache, also runs the full sequence without
    one and keeps the largest logit difference, with the number of positions computed."""

    def __init__(self, model):
        super().__init__()
        self.inner, self.config = model, model.config
        self.recorded = None  # the sequence the live cache was recorded on
        self.reads = []  # (first, positions computed, max |cached - exact| logit, bytes changed)

    def new_cache(self, *args, **kwargs):
        return self.inner.new_cache(*args, **kwargs)

    def forward(self, ids, attention_mask=None, cache=None):
        out = self.inner(ids, attention_mask, cache)
        if cache is not None and cache[0].mode == "record":
            self.recorded = ids.clone()
        elif cache is not None:
            start, n = cache[0].prefix_len, ids.shape[1]
            full = self.recorded.clone()
            full[:, start : start + n] = ids
            exact = self.inner(full)[:, start : start + n]
            changed = int((full != self.recorded).sum())
            self.reads.append((start, n, float((out - exact).abs().max()), changed))
        return out


@pytest.mark.parametrize("attention", ["mla", "mha"])
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_a_cache_read_steps_later_gives_the_full_pass_logits(attention, cache):
    torch.manual_seed(0)
    spy = _CacheSpy(ddlm.DiffusionLM(tiny_config(attention=attention)).eval())
    ids = torch.tensor([list(b"hello world") + [MASK_ID] * 16])
    fill = ids == MASK_ID
    in_block = (fill.cumsum(1) - 1) // 4 == 1  # the second block of 4: positions 15..18
    net = StepNetwork(spy, None, fill, cache)
    with torch.no_grad():
        exact = spy.inner(ids)
        for _ in range(3):  # records, then reads a cache one and two steps old
            logits = net(ids, in_block)
    end = 19 if cache == "dual" else 27
    assert [(start, n) for start, n, _, _ in spy.reads] == [(15, end - 15)] * 2  # no more ran
    assert all(diff <= CACHE_EXACT for _, _, diff, _ in spy.reads)
    torch.testing.assert_close(logits[:, 15:19], exact[:, 15:19], rtol=0, atol=CACHE_EXACT)


@pytest.mark.parametrize("attention", ["mla", "mha"])
@pytest.mark.parametrize(("cache", "refresh"), [("prefix", None), ("dual", None), ("dual", 2)])
def test_a_stale_cache_is_read_and_stays_near_the_recomputation(attention, cache, refresh):
    torch.manual_seed(0)
    spy = _CacheSpy(ddlm.DiffusionLM(tiny_config(attention=attention)).eval())
    cfg = SamplerConfig.llada(steps=16, block_length=4, cache=cache, cache_refresh=refresh)
    g = generate(spy, "hello world", 16, cfg, seed=0)
    # 4 blocks of 4 steps: a record at each block's first step (and every `refresh` steps),
    # a read at each other step, of a cache recorded before that block's latest reveals
    assert len(spy.reads) == (12 if refresh is None else 8) and g.nfe == 16
    for start, n, diff, changed in spy.reads:
        assert n == (4 if cache == "dual" else 27 - start)  # the uncached positions alone
        assert changed > 0 and CACHE_EXACT < diff <= CACHE_STALE


def test_dual_cache_runs_only_the_block_and_matches_the_full_pass_at_a_refresh(model):
    ids = torch.randint(0, 256, (1, 40))
    cache = model.new_cache(12, suffix_from=20)
    full = model(ids, cache=cache)  # records positions 0..11 and 20..39
    assert all(c.cached_positions() == 12 + 20 for c in cache)
    for c in cache:
        c.mode = "use"
    block = model(ids[:, 12:20], cache=cache)  # the same inputs: the same outputs
    torch.testing.assert_close(block, full[:, 12:20], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="suffix_from"):
        model.new_cache(12, suffix_from=10)


@pytest.mark.parametrize(
    "kw", [dict(), dict(block_length=4), dict(block_length=4, threshold=0.2), dict(factor=1.0)]
)
@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_prefix_cache_fills_everything(model, kw, cache):
    g = generate(model, "hello world", 16, LLADA, steps=8, seed=0, cache=cache, **kw)
    assert not (g.ids == MASK_ID).any() and g.ids[:11].tolist() == list(b"hello world")
    assert g.nfe <= 8
    check_trace(g, "low_confidence")


def test_prefix_cache_errors(model):
    with pytest.raises(ValueError, match="cache"):
        generate(model, "a", 4, steps=4, cache="full")
    with pytest.raises(ValueError, match="one prompt"):
        generate(model, ["a", "b"], 4, steps=4, cache="prefix")
    with pytest.raises(ValueError, match="one prompt"):  # denoise checks in the same place
        denoise(
            model, torch.zeros(2, 4).long(), torch.ones(2, 4).bool(), SamplerConfig(cache="dual")
        )
    with pytest.raises(ValueError, match="cache_refresh"):
        generate(model, "a", 4, steps=4, cache="prefix", cache_refresh=0)


def test_denoising_fills_exactly_the_positions_it_is_given(model):
    ids = torch.tensor([list(b"abcdefgh"), list(b"ABCDEFGH")])
    fill = torch.zeros(2, 8, dtype=torch.bool)
    fill[0, [0, 3, 7]] = True  # either end and the middle: no prompt/answer split needed
    fill[1, 2:5] = True
    gens = denoise(model, ids, fill, LLADA, seed=0)
    for g, row, f in zip(gens, ids, fill):
        assert torch.equal(g.ids[~f], row[~f]) and not (g.ids == MASK_ID).any()
        assert g.nfe == int(f.sum())  # steps=None: one step per byte to fill
        check_trace(g, "low_confidence")
    assert gens[0].prompt_length == 0 and gens[1].prompt_length == 2
    with pytest.raises(ValueError, match="nothing to fill"):
        denoise(model, ids, torch.zeros_like(fill), SamplerConfig())


def test_sampler_config_validates_once_and_names_the_field():
    for bad, field in [
        (dict(steps=0), "steps"),
        (dict(strategy="top"), "strategy"),
        (dict(block_length=0), "block_length"),
        (dict(temperature=-1.0), "temperature"),
        (dict(threshold=0.0), "threshold"),
        (dict(cache="full"), "cache"),
        (dict(cache_refresh=2), "cache_refresh"),  # a refresh without a cache means nothing
    ]:
        with pytest.raises(ValueError, match=f"SamplerConfig.{field}="):
            SamplerConfig(**bad)
    cfg = SamplerConfig(steps=4)
    with pytest.raises(Exception, match="cannot assign"):
        cfg.steps = 5  # frozen
    with pytest.raises(ValueError, match="unknown sampler options"):
        cfg.with_options(step=4)
    assert cfg.with_options(block_length=2) == SamplerConfig(steps=4, block_length=2)
    with pytest.raises(TypeError, match="steps=32"):
        generate(None, "ab", 4, 2)  # the old positional steps gets a clear message


def test_one_prompt_gives_one_generation_and_a_list_gives_a_list(model):
    assert isinstance(generate(model, "ab", 4, seed=0), ddlm.Generation)
    gens = generate(model, ["ab"], 4, seed=0)
    assert isinstance(gens, list) and len(gens) == 1


def test_reveal_count_and_current_block():
    # ceil(m / r): 10 masks over 4 steps reveal 3, 3, 2, 2.
    left, out = torch.tensor([10]), []
    for r in (4, 3, 2, 1):
        k = reveal_count(left, torch.tensor([r]))
        out.append(int(k))
        left = left - k
    assert out == [3, 3, 2, 2]
    masked = torch.tensor([[False, True, True], [False, False, True]])
    block_of = torch.tensor([[0, 1, 2], [0, 1, 2]])
    assert current_block(masked, block_of).tolist() == [1, 2]


class _Scripted(torch.nn.Module):
    """A fake mask predictor with fixed beliefs: `eos_at` = positions where EOS is the surest
    guess (None = everywhere), 'a' elsewhere."""

    config = tiny_config()

    def __init__(self, eos_at=None):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.eos_at = eos_at

    def forward(self, ids, attention_mask=None):
        out = torch.full((*ids.shape, 259), -10.0)
        out[..., 97] = 5.0
        where = slice(None) if self.eos_at is None else self.eos_at
        out[:, where, EOS_ID] = 30.0  # surer of EOS than of any "a"
        return out


def test_a_model_that_always_says_eos_gives_an_empty_continuation():
    g = generate(_Scripted(), "prompt", 16, LLADA, seed=0, stop_at_eos=True)
    assert g.text == "" and g.full_text == "prompt"
    # Each EOS ends the text where it stands: the steps after it are never spent.
    assert g.nfe < 16 and int(g.trace[1].revealed.sum()) > 1
    assert g.ids[:6].tolist() == list(b"prompt")  # the prompt is never cut
    check_trace(g, "low_confidence")
    # Without stop_at_eos the sampler never writes EOS.
    assert generate(_Scripted(), "prompt", 16, LLADA, seed=0).text == "a" * 16


def test_a_sequence_stops_at_its_eos_and_min_length_holds_it_off():
    g = generate(_Scripted(eos_at=[11]), "prompt", 16, seed=0, stop_at_eos=True)
    assert g.text == "aaaaa"  # positions 6..10, then EOS at 11
    assert (g.ids[12:] == EOS_ID).all()  # revealed first, it ended the text there
    g = generate(_Scripted(), "prompt", 16, seed=0, stop_at_eos=True, min_length=3)
    assert g.text == "aaa"
    with pytest.raises(ValueError, match="min_length"):
        SamplerConfig(min_length=3)
    with pytest.raises(ValueError, match="stop_at_eos"):
        infill(_Scripted(), "a" + MASK_GLYPH, stop_at_eos=True)


@pytest.mark.parametrize("measure", ["probability", "margin", "entropy", "pmi"])
def test_confidence_measures_pick_the_surest_positions(model, measure):
    # the plain top-k of the measure (without the default gap, no-repeat rule and order)
    g = generate(model, "ab", 8, SamplerConfig.llada(confidence=measure), steps=4, seed=0)
    check_trace(g, "low_confidence", extra_passes=int(measure == "pmi"))
    assert g.nfe == 4 + (measure == "pmi")  # the prior costs one network evaluation
    logits = model(g.trace[0].ids.long()[None])
    pred, prob = pick_bytes(logits, 0.0, torch.Generator())
    prior = byte_prior(model, logits.shape[1], torch.device("cpu"))
    score = certainty(logits, pred, measure, prior=prior)[0]
    first = g.trace[1].revealed
    masked = g.trace[0].ids == MASK_ID
    assert score[first].min() >= score[masked & ~first].max()


def test_margin_and_entropy_by_hand():
    logits = torch.full((1, 2, 259), -30.0)
    logits[0, 0, [97, 98]] = torch.tensor([1.0, 1.0])  # torn between two bytes
    logits[0, 1, 97] = 1.0  # sure
    pred, _ = pick_bytes(logits, 0.0, torch.Generator())
    margin = certainty(logits, pred, "margin")[0]
    torch.testing.assert_close(margin, torch.tensor([0.0, 1.0]), atol=1e-6, rtol=0)
    entropy = certainty(logits, pred, "entropy")[0]
    torch.testing.assert_close(entropy, torch.tensor([-math.log(2), 0.0]), atol=1e-6, rtol=0)


def test_pmi_by_hand_ranks_what_the_context_decides_above_what_is_common_anyway():
    logits = torch.full((1, 2, 259), -30.0)
    logits[0, 0, [32, 97]] = torch.tensor([math.log(0.9), math.log(0.1)])  # a space, surely
    logits[0, 1, [110, 97]] = torch.tensor([math.log(0.6), math.log(0.4)])  # "n", fairly
    prior = torch.full((259,), math.log(1e-3))
    prior[32], prior[97] = math.log(0.5), math.log(0.1)  # spaces are common everywhere
    pred, _ = pick_bytes(logits, 0.0, torch.Generator())
    assert pred[0].tolist() == [32, 110]
    prob = certainty(logits, pred, "probability")[0]
    pmi = certainty(logits, pred, "pmi", prior=prior)[0]
    assert prob[0] > prob[1] and pmi[1] > pmi[0]  # the two orders disagree
    torch.testing.assert_close(pmi, torch.tensor([math.log(1.8), math.log(600.0)]))
    with pytest.raises(ValueError, match="prior"):
        certainty(logits, pred, "pmi")


def test_byte_prior_is_a_distribution_over_bytes_and_eos(model):
    prior = byte_prior(model, 16, torch.device("cpu"))
    assert prior.shape == (259,)
    torch.testing.assert_close(prior.exp().sum(), torch.tensor(1.0))
    assert torch.isfinite(prior).all() and prior[MASK_ID] < math.log(1e-29) < prior[EOS_ID]


class _PromptReader(torch.nn.Module):
    """A fake mask predictor that writes 'b' when it can see the prompt's first byte and 'a'
    when that byte is masked (its 'unconditional' belief): logits 3 for 'a', 2 (or 4) for 'b'."""

    config = tiny_config()

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, ids, attention_mask=None):
        self.seen.append(ids.clone())
        out = torch.full((*ids.shape, 259), -10.0)
        sees = (ids[:, 0] != MASK_ID)[:, None]  # (B, 1)
        out[..., 97] = 3.0
        out[..., 98] = torch.where(sees, 2.5, 2.0)  # the prompt makes 'b' likelier, not likeliest
        return out


def test_guidance_masks_the_prompt_for_the_unconditional_pass_and_extrapolates():
    # Without guidance 'a' wins (3 > 2.5). With w = 2: a = 3 + 2 (3 - 3) = 3,
    # b = 2.5 + 2 (2.5 - 2) = 3.5, so the prompt's pull decides: 'b'.
    m = _PromptReader()
    assert generate(m, "xy", 4, LLADA, seed=0).text == "aaaa"
    m = _PromptReader()
    g = generate(m, "xy", 4, LLADA, seed=0, guidance=2.0)
    assert g.text == "bbbb"
    assert g.nfe == 2 * 4  # two passes per step, counted
    both = m.seen[0]  # (2, 6): the sequence, then the copy with the prompt masked
    assert both[0, :2].tolist() == list(b"xy") and (both[1, :2] == MASK_ID).all()
    assert torch.equal(both[0, 2:], both[1, 2:])  # the generated part is the same in both
    # Infill: the given text around the hole is what the unconditional pass masks.
    m = _PromptReader()
    assert infill(m, "x" + MASK_GLYPH * 2 + "y", guidance=2.0).full_text == "xbby"
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance=1.0, cache="prefix")
    with pytest.raises(ValueError, match="guidance"):
        SamplerConfig(guidance=-1.0)


def test_bytes_revealed_after_a_later_eos_are_ended_too():
    # Random order reveals positions after the EOS position before the EOS itself; once the EOS
    # is revealed, everything after it is EOS, not left-over bytes.
    g = generate(_Scripted(eos_at=[8]), "prompt", 16, seed=0, stop_at_eos=True,
                 strategy="random", steps=16)  # fmt: skip
    assert g.text == "aa" and (g.ids[9:] == EOS_ID).all()
    revealed_before = [s.ids[9:] for s in g.trace if (s.ids[8] != EOS_ID)]
    assert any((r == ord("a")).any() for r in revealed_before)  # the case this test is about


def test_nucleus_keeps_the_fewest_likeliest_bytes_that_reach_top_p():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    assert nucleus(probs, 0.7).tolist() == [[False, True, False, True]]  # 0.5 + 0.3 >= 0.7
    assert nucleus(probs, 0.5).tolist() == [[False, True, False, False]]  # the likeliest alone
    assert nucleus(probs, 0.81).tolist() == [[False, True, True, True]]
    assert nucleus(probs, 1.0).all()


def test_top_p_never_samples_outside_the_nucleus_and_reports_the_models_probability():
    logits = torch.full((1, 4000, 259), -30.0)
    logits[..., [97, 98, 99]] = torch.tensor([0.5, 0.3, 0.2]).log()
    gen = torch.Generator().manual_seed(0)
    pred, prob = pick_bytes(logits, 1.0, gen, top_p=0.75)
    assert set(pred.unique().tolist()) == {97, 98}  # 'c' (0.2) lies outside 0.5 + 0.3
    share_a = (pred == 97).float().mean().item()
    assert abs(share_a - 0.5 / 0.8) < 0.03  # renormalised over the nucleus
    torch.testing.assert_close(prob[pred == 98], torch.full_like(prob[pred == 98], 0.3))
    # top_p = 1 is plain sampling: the same draws as before the option existed.
    a = pick_bytes(logits, 1.0, torch.Generator().manual_seed(1))[0]
    b = pick_bytes(logits, 1.0, torch.Generator().manual_seed(1), top_p=1.0)[0]
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="top_p"):
        SamplerConfig(top_p=0.0)
    with pytest.raises(ValueError, match="temperature > 0"):
        SamplerConfig(top_p=0.9)  # greedy decoding would ignore it


def test_margin_of_a_sampled_byte_that_is_not_the_favourite_is_negative():
    logits = torch.full((1, 1, 259), -30.0)
    logits[0, 0, [97, 98]] = torch.tensor([0.7, 0.3]).log()
    margin = certainty(logits, torch.tensor([[98]]), "margin")  # sampling chose 'b'
    torch.testing.assert_close(margin, torch.tensor([[0.3 - 0.7]]), atol=1e-5, rtol=0)
    greedy = certainty(logits, torch.tensor([[97]]), "margin")
    torch.testing.assert_close(greedy, torch.tensor([[0.4]]), atol=1e-5, rtol=0)
    # With EOS allowed, the margin is taken in the same distribution the byte was drawn from.
    logits[0, 0, EOS_ID] = torch.tensor(0.2).log()  # now 'a' 0.7/1.2, 'b' 0.3/1.2, EOS 0.2/1.2
    eos_ok = torch.ones(1, 1, dtype=torch.bool)
    with_eos = certainty(logits, torch.tensor([[97]]), "margin", eos_ok)
    torch.testing.assert_close(with_eos, torch.tensor([[0.4 / 1.2]]), atol=1e-5, rtol=0)
    pred, prob = pick_bytes(logits, 0.0, torch.Generator(), eos_ok)
    torch.testing.assert_close(certainty(logits, pred, "probability", eos_ok), prob)


class _Flat(torch.nn.Module):
    """A fake mask predictor equally sure of 'a' everywhere: only a positional preference can
    order its reveals."""

    config = tiny_config()

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids, attention_mask=None):
        out = torch.full((*ids.shape, 259), -10.0)
        out[..., 97] = 5.0
        return out


def test_order_bias_reveals_left_to_right_when_the_model_cannot_tell_positions_apart():
    g = generate(_Flat(), "ab", 12, LLADA, steps=6, seed=0, order_bias=0.01)
    check_trace(g, "low_confidence")
    for step, state in enumerate(g.trace[1:]):
        revealed = state.revealed.nonzero().flatten().tolist()
        assert revealed == [2 + 2 * step, 3 + 2 * step]  # the two leftmost masks, each step
    # random order draws its own scores: the bias (on by default) has nothing to lower
    rand = LLADA.with_options(strategy="random")
    same = [generate(_Flat(), "ab", 12, rand, steps=6, seed=0, order_bias=b) for b in (0, 0.5)]
    assert torch.equal(same[0].ids, same[1].ids)
    assert all(torch.equal(a.revealed, b.revealed) for a, b in zip(*(g.trace for g in same)))
    with pytest.raises(ValueError, match="order_bias"):
        SamplerConfig(order_bias=-1.0)


def test_factor_rule_counts_by_the_union_bound():
    conf = torch.tensor([[0.99, 0.95, 0.9, 0.5, 0.2]])
    active = torch.ones_like(conf, dtype=torch.bool)
    # n = 1: 2 * 0.01 = 0.02; n = 2: 3 * 0.05 = 0.15; n = 3: 4 * 0.1 = 0.4; n = 4: 5 * 0.5
    assert factor_count(conf, active, 0.1).tolist() == [1]
    assert factor_count(conf, active, 0.2).tolist() == [2]
    assert factor_count(conf, active, 0.5).tolist() == [3]
    assert factor_count(conf, active & (conf < 0.96), 0.2).tolist() == [1]  # 0.99 not active
    g = generate(
        _Flat(), "ab", 12, LLADA, steps=12, seed=0, factor=0.5
    )  # sure everywhere: one step
    assert g.nfe == 1 and g.text == "a" * 12
    with pytest.raises(ValueError, match="factor"):
        SamplerConfig(factor=0.5, threshold=0.9)


def test_remask_revises_the_least_sure_earlier_reveals_and_still_finishes(model):
    g = generate(model, "hello world", 16, LLADA, steps=8, seed=0, remask=1)
    assert not (g.ids == MASK_ID).any() and g.nfe == 8
    states = [s.ids for s in g.trace]
    revised = [int(((a != MASK_ID) & (b == MASK_ID)).sum()) for a, b in zip(states[1:], states[2:])]
    assert revised[:-1] and all(r == 1 for r in revised[:-1])  # one byte sent back per step
    assert g.ids[:11].tolist() == list(b"hello world")  # the prompt is never re-masked
    # What a step sends back was revealed at an earlier step, and is not the prompt.
    for before, after in zip(g.trace[1:], g.trace[2:]):
        back = (before.ids != MASK_ID) & (after.ids == MASK_ID)
        assert not (back & ~g.fill).any() and not (back & after.revealed).any()
    with pytest.raises(ValueError, match="remask"):
        SamplerConfig(remask=-1)
    with pytest.raises(ValueError, match="remask"):
        SamplerConfig(remask=1, threshold=0.9)


def test_remask_least_sure_picks_the_lowest_confidence_candidates():
    from ddlm.sampling import remask_least_sure

    ids = torch.tensor([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]])
    sure = torch.tensor([[0.9, 0.2, 0.5, 0.1, 0.8], [0.9, 0.2, 0.5, 0.1, 0.8]])
    cand = torch.tensor([[True, True, True, False, True]] * 2)  # position 3 is not a candidate
    out = remask_least_sure(ids, sure, cand, 2, torch.tensor([True, False]))
    assert out[0].tolist() == [1, MASK_ID, MASK_ID, 4, 5]  # 0.2 and 0.5, not the 0.1 excluded
    assert out[1].tolist() == [1, 2, 3, 4, 5]  # a row at its block's last step keeps all


class _Counting(torch.nn.Module):
    """Wraps a model and records how many positions each forward pass runs."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.config, self.widths = inner, inner.config, []

    def forward(self, ids, attention_mask=None, cache=None):
        self.widths.append(ids.shape[1])
        return self.inner(ids, attention_mask, cache=cache)

    def new_cache(self, *args, **kwargs):
        return self.inner.new_cache(*args, **kwargs)


@pytest.mark.parametrize("cache", ["prefix", "dual"])
def test_caches_skip_the_prompt_from_the_first_block_on(model, cache):
    m = _Counting(model)
    generate(m, "hello world", 16, LLADA, steps=8, seed=0, cache=cache)  # one block: the answer
    assert m.widths == [27] + [16] * 7  # the prompt runs once, then only the answer
    m.widths.clear()
    generate(m, "hello world", 16, LLADA, steps=8, block_length=8, seed=0, cache=cache)
    rest = 16 if cache == "prefix" else 8  # the dual cache keeps the second block too
    assert m.widths == [27] + [rest] * 3 + [27] + [8] * 3


def test_spaced_top_k_keeps_same_step_reveals_apart_and_makes_up_the_count():
    from ddlm.sampling import spaced_top_k

    score = torch.tensor([[0.9, 0.8, 0.1, 0.7, 0.6, 0.5]])
    active = torch.ones(1, 6, dtype=torch.bool)
    two = torch.tensor([2])
    # Plain top-2 would take the neighbours 0 and 1; with a gap of 1, 0 and the best of 2..5.
    assert spaced_top_k(score, active, two, 1).nonzero()[:, 1].tolist() == [0, 3]
    assert spaced_top_k(score, active, two, 2).nonzero()[:, 1].tolist() == [0, 3]
    assert spaced_top_k(score, active, two, 3).nonzero()[:, 1].tolist() == [0, 4]
    # Too few positions far enough apart: the best of the rest make up the count.
    assert spaced_top_k(score, active, torch.tensor([3]), 5).nonzero()[:, 1].tolist() == [0, 1, 3]
    # Rows are independent, and never take an inactive position.
    active2 = torch.tensor([[True] * 6, [False, True, True, True, False, False]])
    got = spaced_top_k(score.expand(2, 6), active2, torch.tensor([2, 3]), 1)
    assert got[0].nonzero().flatten().tolist() == [0, 3]
    assert got[1].nonzero().flatten().tolist() == [1, 2, 3]


def test_min_gap_reveals_no_neighbours_in_one_step():
    g = generate(_Flat(), "ab", 12, LLADA, steps=4, seed=0, min_gap=1, order_bias=0.01)
    check_trace(g, "low_confidence")
    for state in g.trace[1:-1]:  # the last step takes whatever is left
        revealed = state.revealed.nonzero().flatten()
        assert len(revealed) == 3 and bool((revealed.diff() > 1).all())
    assert g.trace[1].revealed.nonzero().flatten().tolist() == [2, 4, 6]  # leftmost, spaced
    with pytest.raises(ValueError, match="min_gap"):
        SamplerConfig(min_gap=-1)


def test_min_gap_in_a_block_spaces_the_reveals_as_widely_as_the_block_allows():
    # Two reveals a step in blocks of 8 cannot be 12 apart; before the gap was capped the
    # second reveal fell back to the first one's neighbour. Now they are 8 // 2 = 4 apart.
    kw = dict(min_gap=12, order_bias=0.01)
    g = generate(_Flat(), "ab", 16, LLADA, steps=8, block_length=8, seed=0, **kw)
    check_trace(g, "low_confidence")
    pairs = [state.revealed.nonzero().flatten().tolist() for state in g.trace[1:]]
    assert pairs == [[p, p + 4] for b in (2, 10) for p in range(b, b + 4)]
    # Without blocks the gap is min_gap itself.
    g = generate(_Flat(), "ab", 32, LLADA, steps=16, seed=0, **kw)
    assert g.trace[1].revealed.nonzero().flatten().tolist() == [2, 15]


def test_repeats_finds_the_reveal_that_would_complete_a_copy():
    from ddlm.sampling import repeats

    ids = torch.tensor([list(b"abcab") + [MASK_ID, MASK_ID]])
    reveal = torch.tensor([[False] * 5 + [True, False]])
    c, d = torch.full((1, 7), ord("c")), torch.full((1, 7), ord("d"))
    assert repeats(ids, c, reveal, 3).tolist() == [[False] * 5 + [True, False]]  # "abc" again
    assert not repeats(ids, d, reveal, 3).any()  # "abd" is new
    assert not repeats(ids, c, reveal, 4).any()  # "babc" is new too
    # A run with a MASK among its other bytes is not a copy yet.
    gap = ids.clone()
    gap[0, 4] = MASK_ID
    assert not repeats(gap, c, reveal, 3).any()
    assert not repeats(ids, c, torch.zeros_like(reveal), 3).any()  # only reveals are checked
    assert not repeats(ids, c, reveal, 8).any()  # a text shorter than the run holds none
    assert generate(_Flat(), "ab", 2, LLADA, steps=2, seed=0, no_repeat=8).text == "aa"


def test_no_repeat_leaves_no_run_twice_in_the_text():
    looping = generate(_Flat(), "ab", 12, LLADA, steps=12, seed=0)
    assert looping.ids[2:].tolist() == [ord("a")] * 12  # the model alone loops
    for steps in (12, 4):  # one reveal per step, and three (checked one after the other)
        g = generate(_Flat(), "ab", 12, LLADA, steps=steps, seed=0, no_repeat=3)
        check_trace(g, "low_confidence")
        runs = [tuple(g.ids[s : s + 3].tolist()) for s in range(len(g.ids) - 2)]
        assert len(set(runs)) == len(runs)  # every 3-byte run occurs once, the prompt's too
        assert (g.ids[2:] == ord("a")).sum() >= 6  # the model's byte is still used where it may
    for bad in (1, -1):
        with pytest.raises(ValueError, match="no_repeat"):
            SamplerConfig(no_repeat=bad)


def _runs_twice(ids: torch.Tensor, n: int) -> int:
    runs = [tuple(ids[s : s + n].tolist()) for s in range(len(ids) - n + 1)]
    return len(runs) - len(set(runs))


def test_no_repeat_holds_when_the_step_runs_out_of_decisions(monkeypatch):
    """A loop more stubborn than `_REDECIDE` decisions gets the likeliest byte that makes no
    copy (`replace_repeats`); it used to be written as it was."""
    import ddlm.sampling as sampling

    monkeypatch.setattr(sampling, "_REDECIDE", 1)  # every loop now reaches the last resort
    for steps in (12, 4):  # one reveal per step, and three in a step (written left to right)
        g = generate(_Flat(), "ab", 12, LLADA, steps=steps, seed=0, no_repeat=3)
        check_trace(g, "low_confidence")
        assert _runs_twice(g.ids, 3) == 0
        assert g.nfe == steps and bool((g.ids < 256).all())  # no extra step, only bytes
        assert (g.ids[2:] == ord("a")).sum() >= 6  # the model's byte is still used where it may
        chosen = g.ids[2:][g.ids[2:] != ord("a")]  # 'a' banned: the likeliest others, all tied
        assert set(chosen.tolist()) <= {0, 1, 2}  # (a stable order: the lowest byte ids first)


def test_replace_repeats_writes_the_likeliest_byte_that_makes_no_copy():
    from ddlm.sampling import replace_repeats

    ids = torch.tensor([list(b"abcab") + [MASK_ID, MASK_ID]])
    reveal = torch.tensor([[False] * 5 + [True, True]])
    logits = torch.full((1, 7, 259), float("-inf"))
    logits[0, :, ord("c")], logits[0, :, ord("x")], logits[0, :, ord("b")] = 3.0, 2.0, 1.0
    pred = torch.full((1, 7), ord("c"))
    out = replace_repeats(ids, pred, reveal, logits, 3)
    # "abc" again at 5 -> 'x' (next likeliest); then "bxc" at 6 is new, so 'c' stays
    assert bytes(out[0, 5:].tolist()) == b"xc"
    assert torch.equal(replace_repeats(ids, pred, reveal, logits, 8), pred)  # too short for runs
    mixed = replace_repeats(ids, pred, reveal & False, logits, 3)
    assert torch.equal(mixed, pred)  # only reveals are touched


def test_sampler_presets_name_the_same_configs_as_their_fields():
    # The presets are spelled once, in SamplerConfig; here each is compared with its fields
    # written out, so that a preset drifting from what its docstring promises fails.
    from ddlm.sampler_config import SAMPLER_PRESETS

    assert SamplerConfig.tiny() == SamplerConfig()
    llada = SamplerConfig.llada()
    assert (llada.confidence, llada.min_gap, llada.no_repeat, llada.order_bias) == (
        "probability",
        0,
        0,
        0.0,
    )
    assert SamplerConfig.preset("llada", steps=8) == SamplerConfig.llada(steps=8)
    assert set(SAMPLER_PRESETS) == {"tiny", "llada"}
    with pytest.raises(ValueError, match="unknown sampler preset"):
        SamplerConfig.preset("bogus")
