import pytest
import torch

from ddlm.attention import LatentAttention, MultiHeadAttention, build_attention_mask

DIM, HEADS, T = 32, 4, 12


def make(kind: str, causal: bool = False, **kw):
    if kind == "mha":
        return MultiHeadAttention(DIM, HEADS, max_seq_len=64, causal=causal, **kw)
    rope = {"mla-full": "full", "mla-decoupled": "decoupled", "mla-q": "decoupled"}[kind]
    q_latent = 16 if kind == "mla-q" else None
    return LatentAttention(
        DIM, HEADS, 64, kv_latent_dim=12, q_latent_dim=q_latent, rope=rope, causal=causal, **kw
    )


KINDS = ["mha", "mla-full", "mla-decoupled", "mla-q"]


@pytest.mark.parametrize("kind", KINDS)
def test_shape(kind):
    x = torch.randn(2, T, DIM)
    assert make(kind)(x).shape == (2, T, DIM)


@pytest.mark.parametrize("kind", KINDS)
def test_padding_mask_hides_padded_positions(kind):
    attn = make(kind).eval()
    x = torch.randn(2, T, DIM)
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0, 8:] = False
    y1 = attn(x, mask)
    x2 = x.clone()
    x2[0, 9] += 5.0  # change a padded position
    y2 = attn(x2, mask)
    torch.testing.assert_close(y1[0, :8], y2[0, :8])
    torch.testing.assert_close(y1[1], y2[1])
    # Without the mask, the change would leak everywhere.
    y3 = attn(x2)
    assert not torch.allclose(attn(x)[0, :8], y3[0, :8])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("padded", [False, True])
def test_causal_never_looks_ahead(kind, padded):
    attn = make(kind, causal=True).eval()
    x = torch.randn(1, T, DIM)
    mask = None
    if padded:
        mask = torch.ones(1, T, dtype=torch.bool)
        mask[0, -2:] = False
    y = attn(x, mask)
    for j in (3, 7, 10):
        x2 = x.clone()
        x2[0, j] += 3.0
        y2 = attn(x2, mask)
        torch.testing.assert_close(y[0, :j], y2[0, :j])
        assert not torch.allclose(y[0, j], y2[0, j])


@pytest.mark.parametrize("kind", KINDS)
def test_bidirectional_sees_the_future(kind):
    attn = make(kind).eval()
    x = torch.randn(1, T, DIM)
    x2 = x.clone()
    x2[0, -1] += 3.0
    assert not torch.allclose(attn(x)[0, 0], attn(x2)[0, 0])


def test_kv_cache_elements():
    assert make("mha").kv_cache_elements_per_token() == 2 * HEADS * (DIM // HEADS)
    assert make("mla-full").kv_cache_elements_per_token() == 12
    dec = make("mla-decoupled")
    assert dec.kv_cache_elements_per_token() == 12 + dec.rope_dim


def test_decoupled_shares_one_rotary_key_and_scales_by_full_width():
    attn = make("mla-decoupled").eval()
    hd, r = DIM // HEADS, attn.rope_dim
    assert attn.wkv_down.out_features == 12 + r  # latent + ONE shared rotary key
    assert attn.wq.out_features == HEADS * (hd + r)
    # Recompute by hand with an explicit 1/sqrt(hd + r) scale and compare.
    x = torch.randn(1, T, DIM)
    from ddlm.rope import apply_rope

    q = attn.wq(x).view(1, T, HEADS, hd + r).transpose(1, 2)
    down = attn.wkv_down(x)
    k, v = (
        attn.wkv_up(attn.kv_norm(down[..., :12]))
        .view(1, T, HEADS, 2 * hd)
        .transpose(1, 2)
        .split(hd, -1)
    )
    cos, sin = attn.rotary(T, x.device)
    qc, qr = q.split((hd, r), -1)
    kr = apply_rope(down[..., 12:].unsqueeze(1), cos, sin).expand(1, HEADS, T, r)
    qf = torch.cat((qc, apply_rope(qr, cos, sin)), -1)
    kf = torch.cat((k, kr), -1)
    att = ((qf @ kf.transpose(-1, -2)) / (hd + r) ** 0.5).softmax(-1)
    ref = attn.out((att @ v).transpose(1, 2).reshape(1, T, DIM))
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-4)


def test_mask_helper():
    assert build_attention_mask(None, False, 4) is None
    assert build_attention_mask(torch.ones(2, 4, dtype=torch.bool), True, 4) is None
    m = torch.tensor([[True, True, False, False]])
    built = build_attention_mask(m, False, 4)
    assert built.shape == (1, 1, 1, 4)
    with pytest.raises(ValueError, match="bool"):
        build_attention_mask(torch.ones(1, 4), False, 4)
    # A fully padded row must not produce NaN.
    attn = make("mha").eval()
    y = attn(torch.randn(1, 4, DIM), torch.zeros(1, 4, dtype=torch.bool))
    assert torch.isfinite(y).all()


def test_bad_heads():
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(30, 4, 16)
    with pytest.raises(ValueError, match="rope"):
        LatentAttention(32, 4, 16, kv_latent_dim=8, rope="sideways")
