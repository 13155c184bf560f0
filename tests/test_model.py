import pytest
import torch
from helpers import tiny_config

import ddlm
from ddlm.model import PRESETS, ModelConfig


def test_presets_exist_and_tiny_is_small():
    for name in ("tiny", "small", "seed"):
        assert name in PRESETS
    n = ddlm.DiffusionLM(ModelConfig.preset("tiny")).num_params()
    assert 1_000_000 <= n <= 3_000_000
    seed = ModelConfig.preset("seed")
    assert (seed.dim, seed.n_layers, seed.n_heads, seed.kv_latent_dim, seed.max_seq_len) == (
        512,
        8,
        16,
        128,
        768,
    )
    with pytest.raises(ValueError, match="unknown preset"):
        ModelConfig.preset("huge")


def test_forward_backward_tiny_preset():
    model = ddlm.DiffusionLM(ModelConfig.preset("tiny"))
    ids = torch.randint(0, 256, (2, 64))
    logits = model(ids)
    assert logits.shape == (2, 64, 259) and logits.dtype == torch.float32
    logits.logsumexp(-1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_logits_float32_under_bf16_autocast():
    model = ddlm.DiffusionLM(tiny_config())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randint(0, 256, (1, 8))).dtype == torch.float32


def hand_count(c: ModelConfig) -> int:
    """Parameters of an MLA model in 'full' RoPE mode without a query latent, by hand."""
    d, h, V, L, r = c.dim, c.hidden, c.vocab_size, c.n_layers, c.kv_latent_dim
    attn = d * d + d * r + r + r * 2 * d + d * d  # wq, wkv_down, kv_norm, wkv_up, out
    ffn = 3 * d * h
    block = attn + ffn + 2 * d  # two RMSNorm gains
    return V * d + L * block + d + d * V  # embedding, blocks, final norm, head


def test_parameter_count_by_hand():
    cfg = ModelConfig(
        dim=64, n_layers=3, n_heads=4, kv_latent_dim=16, ffn_hidden=96, max_seq_len=32
    )
    assert ddlm.DiffusionLM(cfg).num_params() == hand_count(cfg)
    mha = ModelConfig(dim=64, n_layers=1, n_heads=4, attention="mha", ffn_hidden=96, max_seq_len=32)
    expected = 259 * 64 + (4 * 64 * 64 + 3 * 64 * 96 + 2 * 64) + 64 + 64 * 259
    assert ddlm.DiffusionLM(mha).num_params() == expected


def test_flops_per_token_formula():
    cfg = tiny_config()
    model = ddlm.DiffusionLM(cfg)
    fwd = 2 * model.matmul_params() + cfg.n_layers * 2 * 64 * cfg.n_heads * 2 * cfg.head_dim
    assert model.flops_per_token(64, training=False) == fwd
    assert model.flops_per_token(64) == 3 * fwd


def test_too_long_sequence():
    model = ddlm.DiffusionLM(tiny_config(max_seq_len=16))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, 17, dtype=torch.long))


def test_padding_does_not_change_real_positions():
    model = ddlm.DiffusionLM(tiny_config()).eval()
    ids = torch.randint(0, 256, (1, 10))
    mask = torch.ones(1, 10, dtype=torch.bool)
    mask[0, 6:] = False
    a = model(ids, mask)
    ids2 = ids.clone()
    ids2[0, 7] = 3
    torch.testing.assert_close(a[0, :6], model(ids2, mask)[0, :6])


INVALID = [
    dict(dim=30, n_heads=4),  # not divisible
    dict(attention="gqa"),
    dict(rope="sideways"),
    dict(attention="mha", rope="decoupled"),
    dict(kv_latent_dim=64),  # larger than dim=32
    dict(kv_latent_dim=0),
    dict(q_latent_dim=100),
    dict(rope_dim=7),
    dict(rope_dim=16),  # larger than head width 8 in full mode
    dict(ffn_activation="relu"),
    dict(ffn_hidden=0),
    dict(dropout=1.0),
    dict(n_layers=0),
    dict(max_seq_len=-1),
    dict(norm_eps=0),
    dict(rope_theta=-1.0),
]


@pytest.mark.parametrize("bad", INVALID, ids=lambda d: ",".join(f"{k}={v}" for k, v in d.items()))
def test_invalid_configs_raise_naming_the_field(bad):
    with pytest.raises(ValueError) as e:
        tiny_config(**bad)
    field = [k for k in bad if k != "n_heads"][0] if "n_heads" not in bad or len(bad) > 1 else "dim"
    assert "ModelConfig." in str(e.value)
    assert any(k in str(e.value) for k in bad) or field in str(e.value)


def test_config_dict_round_trip_and_unknown_fields():
    cfg = ModelConfig.preset("tiny", dropout=0.1)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "colour": "blue"})


@pytest.mark.parametrize(
    "over",
    [
        dict(attention="mha"),
        dict(rope="decoupled"),
        dict(rope="decoupled", q_latent_dim=16),
        dict(causal=True),
    ],
)
def test_variants_train_one_step(over):
    model = ddlm.DiffusionLM(tiny_config(**over))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    ids = torch.randint(0, 256, (4, 16))
    losses = []
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model(ids).transpose(1, 2), ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_every_public_name_resolves():
    missing = [name for name in ddlm.__all__ if not hasattr(ddlm, name)]
    assert not missing, missing


@pytest.mark.parametrize(
    "over",
    [
        dict(),
        dict(rope="decoupled"),
        dict(rope="decoupled", q_latent_dim=16),
        dict(attention="mha"),
    ],
)
def test_prefix_cache_is_exact_for_a_causal_model(over):
    model = ddlm.DiffusionLM(tiny_config(causal=True, **over)).eval()
    ids = torch.randint(0, 256, (2, 20))
    full = model(ids)
    cache = model.new_cache(12)
    torch.testing.assert_close(model(ids, cache=cache), full)  # recording changes nothing
    for layer in cache:
        layer.mode = "use"
    torch.testing.assert_close(model(ids[:, 12:], cache=cache), full[:, 12:], atol=1e-5, rtol=1e-4)


def test_prefix_cache_sizes_mla_vs_mha():
    ids = torch.randint(0, 256, (1, 16))
    sizes = {}
    for name, over in {
        "mha": dict(attention="mha"),
        "mla": dict(),
        "mla-dec": dict(rope="decoupled"),
    }.items():
        model = ddlm.DiffusionLM(tiny_config(**over)).eval()
        cache = model.new_cache(8)
        model(ids, cache=cache)
        sizes[name] = sum(layer.numel_per_token() for layer in cache)
        assert sizes[name] == model.kv_cache_elements_per_token()
    assert sizes["mla"] < sizes["mla-dec"] < sizes["mha"]


def test_cache_rejects_padding_and_bad_prefix():
    model = ddlm.DiffusionLM(tiny_config()).eval()
    cache = model.new_cache(4)
    with pytest.raises(ValueError, match="padding"):
        model(
            torch.zeros(1, 8, dtype=torch.long),
            torch.tensor([[True] * 6 + [False] * 2]),
            cache=cache,
        )
    with pytest.raises(ValueError, match="prefix_len"):
        model.new_cache(0)


def test_deepened_model_computes_the_same_and_its_new_blocks_learn():
    torch.manual_seed(0)
    small = ddlm.DiffusionLM(tiny_config(n_layers=2)).eval()
    deep = small.deepened(5).eval()
    assert deep.config.n_layers == 5 and len(deep.blocks) == 5
    ids = torch.randint(0, 259, (2, 24))
    torch.testing.assert_close(deep(ids), small(ids), rtol=0, atol=1e-6)
    # The trained blocks keep their order; the new ones start with zero output projections.
    kept = [b for b in deep.blocks if b.ffn.w2.weight.abs().sum() > 0]
    assert len(kept) == 2
    for a, b in zip(kept, small.blocks):
        assert torch.equal(a.attn.wq.weight, b.attn.wq.weight)
    # Gradients reach the new blocks' output projections, so training can use them.
    deep.train()
    deep(ids).logsumexp(-1).mean().backward()
    new = [b for b in deep.blocks if b.ffn.w2.weight.abs().sum() == 0]
    assert len(new) == 3 and all(b.ffn.w2.weight.grad.abs().sum() > 0 for b in new)
    with pytest.raises(ValueError, match="n_layers"):
        small.deepened(2)
