import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ddlm.ar import ar_loss
from ddlm.diffusion import (
    bits_per_byte,
    diffusion_loss,
    mask_count,
    mask_tokens,
    sample_times,
    time_weight,
)
from ddlm.tokenizer import MASK_ID, PAD_ID


@settings(max_examples=25, deadline=None)
@given(st.floats(0.05, 0.95), st.integers(0, 10_000))
def test_masking_rate_matches_t(t, seed):
    x0 = torch.randint(0, 256, (8, 512))
    xt, masked = mask_tokens(x0, t, torch.Generator().manual_seed(seed))
    rate = masked.float().mean().item()
    sd = math.sqrt(t * (1 - t) / x0.numel())
    assert abs(rate - t) < 6 * sd
    assert torch.equal(xt[masked], torch.full_like(xt[masked], MASK_ID))
    assert torch.equal(xt[~masked], x0[~masked])


def test_padding_is_never_masked():
    x0 = torch.randint(0, 256, (2, 10))
    x0[:, 6:] = PAD_ID
    _, masked = mask_tokens(x0, 1.0)
    assert masked[:, :6].all() and not masked[:, 6:].any()
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1] = False
    _, masked = mask_tokens(torch.randint(0, 256, (2, 10)), 1.0, attention_mask=mask)
    assert masked[0].all() and not masked[1].any()


def test_per_sequence_rates_and_errors():
    x0 = torch.randint(0, 256, (2, 1000))
    _, masked = mask_tokens(x0, torch.tensor([0.0, 1.0]))
    assert not masked[0].any() and masked[1].all()
    with pytest.raises(ValueError):
        mask_tokens(x0, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError):
        mask_tokens(x0, 1.5)


def test_times_in_range_and_stratified():
    t = sample_times(8, eps=0.1, generator=torch.Generator().manual_seed(0))
    assert ((t >= 0.1) & (t <= 1.0)).all()
    # Stratified: one draw per interval of width (1 - eps) / B.
    u = ((t - 0.1) / 0.9).sort().values
    assert torch.all((u * 8).floor() == torch.arange(8))


def test_stratified_times_lower_the_loss_variance():
    class Fixed(torch.nn.Module):  # predicts a fixed distribution everywhere
        def forward(self, ids, attention_mask=None):
            return torch.zeros(*ids.shape, 259)

    model, x0 = Fixed(), torch.randint(0, 256, (8, 64))

    def spread(stratified: bool) -> float:
        g = torch.Generator().manual_seed(1)
        return (
            torch.tensor(
                [
                    diffusion_loss(model, x0, stratified=stratified, generator=g).item()
                    for _ in range(200)
                ]
            )
            .var()
            .item()
        )

    assert spread(True) < spread(False)


def test_loss_weights_masked_ce_by_inverse_t():
    # The expected value is written out from the generator's raw draws, without the helpers
    # the loss is built from (sample_times, mask_tokens): MDLM's stratified t in
    # [eps, 1] from one uniform, then one uniform per byte, masked where it falls below t.
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 259)
    seen = []

    def model(ids, attention_mask=None):
        seen.append(ids.clone())
        return logits

    x0 = torch.randint(0, 256, (2, 16))
    loss = diffusion_loss(model, x0, generator=torch.Generator().manual_seed(5))
    g, eps = torch.Generator().manual_seed(5), 1e-3
    u = (torch.rand(1, generator=g).item() + torch.tensor([0.0, 0.5])) % 1.0
    t = eps + (1 - eps) * u  # (2,)
    masked = torch.rand(2, 16, generator=g) < t[:, None]
    assert torch.equal(seen[0] == MASK_ID, masked) and torch.equal(seen[0][~masked], x0[~masked])
    logp = logits.log_softmax(-1).gather(-1, x0[..., None])[..., 0]  # (2, 16)
    expected = (
        sum(-logp[b, i].item() / t[b].item() for b in range(2) for i in range(16) if masked[b, i])
        / x0.numel()
    )
    assert 0 < masked.sum() < masked.numel()  # the draw masks some bytes and keeps some
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_ar_loss_is_next_byte_ce():
    logits = torch.randn(1, 5, 259)
    x0 = torch.randint(0, 256, (1, 5))
    expected = F.cross_entropy(logits[0, :-1], x0[0, 1:])
    torch.testing.assert_close(ar_loss(lambda ids, m=None: logits, x0), expected)


class Uniform(torch.nn.Module):
    """Predicts the same distribution p over bytes at every position, whatever the input."""

    def __init__(self, p: torch.Tensor):
        super().__init__()
        self.logp = p.log()

    def forward(self, ids, attention_mask=None):
        out = torch.full((*ids.shape, 259), -1e9)
        out[..., :256] = self.logp
        return out


@pytest.mark.parametrize("estimator", ["l", "t"])
def test_bits_per_byte_agrees_with_exact_value(estimator):
    # A model that ignores context assigns each byte -log p(byte); the ELBO is exact there:
    # E[(L/l) * sum_masked -log p] = sum_all -log p. So the estimate must match by hand.
    g = torch.Generator().manual_seed(0)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (64 * 20,), generator=g, dtype=torch.int64).to(torch.uint8)
    exact = (-p.log()[data.long()]).mean().item() / math.log(2)
    r = bits_per_byte(Uniform(p), data, seq_len=64, n_samples=32, estimator=estimator)
    assert r.n_bytes == len(data)
    assert abs(r.bits_per_byte - exact) < 4 * r.stderr + 1e-9
    assert r.stderr < (0.05 if estimator == "l" else 0.25)


class MaskAware(torch.nn.Module):
    """Predicts byte 0 the more surely the fewer of its window's bytes are masked: the cost of
    a masked byte depends on the masking level, as for a real model."""

    def forward(self, ids, attention_mask=None):
        frac = (ids == MASK_ID).float().mean(1, keepdim=True)  # (B, 1)
        out = torch.zeros((*ids.shape, 259))
        out[..., 0] = 6.0 * (1.0 - frac)
        out[..., 256:] = -1e9
        return out


def test_bits_per_byte_stderr_matches_the_spread_of_repeated_estimates():
    # Twenty estimates with different seeds must scatter no more than their standard error says
    # (it is conservative: the draws are stratified, which the error formula does not credit).
    # A masking level shared by a batch of windows made the scatter ~sqrt(16) = 4 times the
    # reported error.
    data = torch.zeros(64 * 48, dtype=torch.uint8)
    runs = [bits_per_byte(MaskAware(), data, seq_len=64, n_samples=2, seed=k) for k in range(20)]
    spread = torch.tensor([r.bits_per_byte for r in runs]).std().item()
    stderr = sum(r.stderr for r in runs) / len(runs)
    assert spread < 1.3 * stderr, (spread, stderr)


def test_l_estimator_has_lower_variance_than_t():
    # A non-uniform p: with a uniform one every masked byte costs log 256 and the l estimator
    # has no variance at all, which would make this comparison say nothing.
    g = torch.Generator().manual_seed(1)
    p = torch.rand(256, generator=g) ** 4 + 1e-3
    p = p / p.sum()
    data = torch.randint(0, 256, (64 * 10,), dtype=torch.int64).to(torch.uint8)
    rl = bits_per_byte(Uniform(p), data, seq_len=64, n_samples=16, estimator="l")
    rt = bits_per_byte(Uniform(p), data, seq_len=64, n_samples=16, estimator="t")
    assert rl.stderr < rt.stderr


def test_bits_per_byte_errors():
    with pytest.raises(ValueError, match="at least"):
        bits_per_byte(
            Uniform(torch.full((256,), 1 / 256)), torch.zeros(10, dtype=torch.uint8), seq_len=64
        )
    with pytest.raises(ValueError, match="estimator"):
        bits_per_byte(None, torch.zeros(100, dtype=torch.uint8), seq_len=8, estimator="x")


def test_prompt_is_never_masked_and_loss_is_per_answer_byte():
    torch.manual_seed(0)
    logits = torch.randn(3, 20, 259)
    seen = []

    def model(ids, attention_mask=None):
        seen.append(ids.clone())
        return logits

    x0 = torch.randint(0, 256, (3, 20))
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    loss = diffusion_loss(model, x0, generator=g1, prompt_len=12)
    assert torch.equal(seen[0][:, :12], x0[:, :12])  # the prompt stays clean
    t = sample_times(3, generator=g2)
    answer = (torch.arange(20) >= 12).expand(3, 20)
    _, masked = mask_tokens(x0, t, g2, maskable=answer)
    assert not masked[:, :12].any()
    ce = F.cross_entropy(logits.transpose(1, 2), x0, reduction="none")
    expected = ((ce * masked) / t[:, None]).sum() / (3 * 8)  # 8 answer bytes per row
    torch.testing.assert_close(loss, expected)
    with pytest.raises(ValueError, match="prompt_len"):
        diffusion_loss(model, x0, prompt_len=20)


@pytest.mark.parametrize("estimator", ["l", "t"])
def test_conditional_bits_per_byte_scores_only_the_answer(estimator):
    # Context-free model: -log p(answer | prompt) = sum over answer bytes of -log p(byte).
    g = torch.Generator().manual_seed(1)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (20, 64), generator=g, dtype=torch.int64).to(torch.uint8)
    data[:, :40] = int(p.argmax())  # cheap prompts, so scoring them too would show
    data = data.reshape(-1)
    answer = data.view(20, 64)[:, 40:].reshape(-1).long()
    exact = (-p.log()[answer]).mean().item() / math.log(2)
    full = (-p.log()[data.long()]).mean().item() / math.log(2)
    r = bits_per_byte(
        Uniform(p),
        data,
        seq_len=64,
        n_samples=32 if estimator == "l" else 128,  # "t" is the noisier estimator
        estimator=estimator,
        prompt_len=40,
    )
    assert r.n_bytes == 20 * 24
    assert abs(r.bits_per_byte - exact) < 4 * r.stderr + 1e-9
    assert abs(exact - full) > 4 * r.stderr  # the check can tell the two apart
    with pytest.raises(ValueError, match="prompt_len"):
        bits_per_byte(Uniform(p), data, seq_len=64, prompt_len=64)


class FirstByte(torch.nn.Module):
    """Predicts every byte to be the window's first byte when that byte is shown (with
    probability 0.99), and uniform over the 256 bytes when it is MASK; records its inputs."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.clone())
        logits = torch.zeros(*x.shape, 259)
        shown = x[:, 0] != MASK_ID
        hit = torch.full((259,), math.log(0.01 / 255))
        logits[shown] = hit
        logits[shown, :, x[shown, 0]] = math.log(0.99)
        return logits


def test_a_short_context_hides_the_start_of_the_prompt_and_scores_the_same_answers():
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (12, 1), generator=g).expand(12, 32).reshape(-1).to(torch.uint8)
    kw = dict(seq_len=32, n_samples=4, prompt_len=20)
    whole = bits_per_byte(FirstByte(), data, **kw)
    assert whole.bits_per_byte == bits_per_byte(FirstByte(), data, context=20, **kw).bits_per_byte
    model = FirstByte()
    short = bits_per_byte(model, data, context=8, **kw)
    x0 = data.view(12, 32).long()
    for x in model.seen:  # the first 12 prompt bytes are MASK, the last 8 shown
        assert (x[:, :12] == MASK_ID).all() and torch.equal(x[:, 12:20], x0[: len(x), 12:20])
    assert short.n_bytes == whole.n_bytes == 12 * 12
    assert whole.bits_per_byte < 0.1 and short.bits_per_byte == pytest.approx(
        math.log2(257)
    )  # 256 bytes and EOS
    with pytest.raises(ValueError, match="context"):
        bits_per_byte(FirstByte(), data, context=21, **kw)


def test_count_masking_masks_exactly_ceil_t_n_and_estimates_the_same_bound():
    x0 = torch.randint(0, 256, (4, 32))
    real = torch.ones(4, 32, dtype=torch.bool)
    real[:, :8] = False  # a prompt: never masked
    t = torch.tensor([0.01, 0.3, 0.5, 1.0])
    xt, masked, share = mask_count(x0, t, torch.Generator().manual_seed(0), real)
    assert masked.sum(1).tolist() == [1, 8, 12, 24]  # ceil(t * 24), at least one
    assert not masked[:, :8].any() and torch.equal(xt == MASK_ID, masked)
    torch.testing.assert_close(share, torch.tensor([1, 8, 12, 24]) / 24)
    # For a model that ignores context both masking rules estimate the exact NLL.
    g = torch.Generator().manual_seed(3)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (64, 32), generator=g)
    exact = (-p.log()[data]).mean()
    for masking in ("rate", "count"):
        gen = torch.Generator().manual_seed(1)
        losses = torch.stack(
            [diffusion_loss(Uniform(p), data, generator=gen, masking=masking) for _ in range(200)]
        )
        stderr = losses.std() / math.sqrt(len(losses))
        assert abs(losses.mean() - exact) < 4 * stderr, masking
    with pytest.raises(ValueError, match="masking"):
        diffusion_loss(Uniform(p), data, masking="both")


@pytest.mark.parametrize("power", [2.0, 3.0])
def test_importance_sampled_t_estimates_the_same_bound(power):
    # The weights undo the non-uniform draw: their mean is 1 ...
    g = torch.Generator().manual_seed(0)
    t = torch.cat([sample_times(64, generator=g, power=power) for _ in range(100)])
    assert abs(time_weight(t, power=power).mean().item() - 1.0) < 0.02
    # ... small t is drawn more often than under the uniform draw ...
    assert (t < 0.1).float().mean() > 0.25
    # ... and a context-free model's loss still estimates its exact NLL.
    g = torch.Generator().manual_seed(3)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (64, 32), generator=g)
    exact = (-p.log()[data]).mean()
    gen = torch.Generator().manual_seed(1)
    losses = torch.stack(
        [diffusion_loss(Uniform(p), data, generator=gen, t_power=power) for _ in range(300)]
    )
    stderr = losses.std() / math.sqrt(len(losses))
    assert abs(losses.mean() - exact) < 4 * stderr
    with pytest.raises(ValueError, match="power"):
        sample_times(4, power=0.0)


def test_subs_spends_no_probability_on_mask_or_pad():
    torch.manual_seed(0)
    logits = torch.randn(2, 16, 259)
    logits[..., MASK_ID] = 3.0  # a network that still believes in MASK

    def model(ids, attention_mask=None):
        return logits

    x0 = torch.randint(0, 256, (2, 16))
    plain = diffusion_loss(model, x0, generator=torch.Generator().manual_seed(5))
    subs = diffusion_loss(model, x0, generator=torch.Generator().manual_seed(5), subs=True)
    by_hand = logits.clone()
    by_hand[..., [MASK_ID, PAD_ID]] = float("-inf")
    expected = diffusion_loss(
        lambda ids, attention_mask=None: by_hand, x0, generator=torch.Generator().manual_seed(5)
    )
    torch.testing.assert_close(subs, expected)
    assert subs < plain


def test_complementary_masks_score_every_byte_once_and_estimate_the_same_bound():
    from ddlm.diffusion import complementary_masks

    x0 = torch.randint(0, 256, (6, 40))
    real = torch.ones(6, 40, dtype=torch.bool)
    real[:, :5] = False  # a clean prompt: never masked
    t = sample_times(3, eps=1e-3, generator=torch.Generator().manual_seed(0))
    draw = complementary_masks(x0, real, None, t, 1e-3, torch.Generator())
    x, r, tt, xt, masked = draw.x0, draw.real, draw.t, draw.xt, draw.masked
    assert draw.attention_mask is None and torch.equal(draw.share, tt)
    assert torch.equal(x[:3], x[3:]) and torch.equal(x[:3], x0[:3])
    assert torch.equal(masked[:3] ^ masked[3:], r[:3])  # each real byte masked in one copy
    assert not (masked[:3] & masked[3:]).any() and not masked[:, :5].any()
    torch.testing.assert_close(tt[:3] + tt[3:], torch.ones(3))
    assert torch.equal(xt == MASK_ID, masked)
    g = torch.Generator().manual_seed(3)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (64, 32), generator=g)
    exact = (-p.log()[data]).mean()
    gen = torch.Generator().manual_seed(1)
    losses = torch.stack(
        [diffusion_loss(Uniform(p), data, generator=gen, complementary=True) for _ in range(300)]
    )
    assert abs(losses.mean() - exact) < 4 * losses.std() / math.sqrt(len(losses))
    with pytest.raises(ValueError, match="complementary"):
        diffusion_loss(Uniform(p), data[:3], complementary=True)


def test_subs_loss_is_finite_on_a_padded_batch():
    x0 = torch.randint(0, 256, (2, 12))
    x0[1, 8:] = PAD_ID
    mask = x0 != PAD_ID
    logits = torch.randn(2, 12, 259)
    loss = diffusion_loss(lambda ids, am=None: logits, x0, mask, subs=True)
    assert torch.isfinite(loss)


def test_flat_weighting_is_the_mean_over_masked_bytes_with_less_spread_than_the_elbo():
    # Logits that give every byte the same cross-entropy, log 256: the flat loss is exactly
    # that, whatever is masked, while the ELBO's 1/t weighting scatters around it.
    flat_p = torch.full((256,), 1 / 256)
    data = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        loss = diffusion_loss(Uniform(flat_p), data, generator=gen, weighting="flat")
        torch.testing.assert_close(loss, torch.tensor(math.log(256)))
    # For a model that ignores context, both estimate its NLL; flat with a smaller spread.
    g = torch.Generator().manual_seed(3)
    p = torch.rand(256, generator=g) + 0.1
    p = p / p.sum()
    data = torch.randint(0, 256, (16, 32), generator=g)
    exact = (-p.log()[data]).mean()
    spreads = {}
    for weighting in ("elbo", "flat"):
        gen = torch.Generator().manual_seed(1)
        losses = torch.stack(
            [
                diffusion_loss(Uniform(p), data, generator=gen, weighting=weighting)
                for _ in range(300)
            ]
        )
        spreads[weighting] = losses.std()
        assert abs(losses.mean() - exact) < 4 * losses.std() / math.sqrt(len(losses)), weighting
    assert spreads["flat"] < 0.5 * spreads["elbo"]
    with pytest.raises(ValueError, match="weighting"):
        diffusion_loss(Uniform(p), data, weighting="uniform")
