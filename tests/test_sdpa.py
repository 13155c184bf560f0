"""ddlm.sdpa.attend: SDPA everywhere but a CPU bf16 training step, where the forward is the
same bf16 kernel and the backward runs in float32, so its gradients sit closer to the float32
gradients than SDPA's own bf16 backward does."""

import pytest
import torch
import torch.nn.functional as F

import ddlm
from ddlm import sdpa

B, H, T, D = 2, 3, 40, 16


def _grads(fn, q, k, v, g, **kw):
    leaves = [t.detach().requires_grad_() for t in (q, k, v)]
    y = fn(*leaves, **kw)
    y.backward(g.to(y.dtype))
    return y.detach(), [t.grad for t in leaves]


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref).norm() / ref.norm()).item()


def _masks():
    keep = torch.ones(B, T, dtype=torch.bool)
    keep[0, 29:] = False
    pad = keep[:, None, None, :]  # (B, 1, 1, T)
    return {"none": None, "padding": pad, "padding+causal": pad & torch.ones(T, T).tril().bool()}


# the model passes is_causal only when there is no mask (a causal mask is built in otherwise)
@pytest.mark.parametrize(
    "mask_name, causal",
    [("none", False), ("none", True), ("padding", False), ("padding+causal", False)],
)
def test_bf16_backward_in_float32_is_closer_to_float32_than_sdpa_bf16(mask_name, causal):
    mask = _masks()[mask_name]
    torch.manual_seed(0)
    q, k, v, g = (torch.randn(B, H, T, D) for _ in range(4))
    ref_y, ref = _grads(
        F.scaled_dot_product_attention, q, k, v, g, attn_mask=mask, is_causal=causal
    )
    b16 = [t.bfloat16() for t in (q, k, v)]
    assert sdpa.uses_f32_backward(*(t.requires_grad_() for t in b16), dropout=0.0)
    ours_y, ours = _grads(sdpa.attend, *b16, g, mask=mask, is_causal=causal)
    sdpa_y, theirs = _grads(
        F.scaled_dot_product_attention, *b16, g, attn_mask=mask, is_causal=causal
    )
    assert ours_y.dtype == torch.bfloat16 and all(t.dtype == torch.bfloat16 for t in ours)
    torch.testing.assert_close(ours_y, sdpa_y, rtol=0, atol=0)  # the same forward kernel
    for mine, bf16, exact in zip(ours, theirs, ref):
        assert _rel(mine, exact) < 0.006  # bf16 rounding of the inputs and of the result
        assert _rel(mine, exact) < _rel(bf16, exact)


def test_everything_else_is_sdpa_itself():
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, T, D, requires_grad=True) for _ in range(3))
    assert not sdpa.uses_f32_backward(q, k, v, 0.0)  # float32
    b16 = [t.detach().bfloat16() for t in (q, k, v)]
    assert not sdpa.uses_f32_backward(*b16, 0.0)  # no gradient wanted
    with torch.no_grad():
        assert not sdpa.uses_f32_backward(*(t.requires_grad_() for t in b16), 0.0)
    assert not sdpa.uses_f32_backward(*b16, 0.1)  # dropout: SDPA draws its own mask
    torch.testing.assert_close(sdpa.attend(q, k, v), F.scaled_dot_product_attention(q, k, v))


def test_a_float_mask_is_refused_by_name():
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    with pytest.raises(ValueError, match="mask must be bool"):
        sdpa.attend(q, k, v, mask=torch.zeros(B, 1, 1, T))


@pytest.mark.parametrize("attention", ["mla", "mha"])
def test_model_bf16_training_gradients_agree_with_sdpa_bf16(attention):
    """The whole model under bf16 autocast: the same loss, gradients within bf16 rounding of
    the ones SDPA's own bf16 backward gives."""
    cfg = ddlm.ModelConfig(dim=32, n_layers=2, n_heads=4, kv_latent_dim=16, attention=attention)
    torch.manual_seed(0)
    model = ddlm.DiffusionLM(cfg)
    x = torch.randint(0, 256, (2, 24))

    def grads():
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x).float().logsumexp(-1).mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    loss, ours = grads()
    with sdpa.f32_backward(False):
        ref_loss, theirs = grads()
    assert sdpa._ON  # switched back on after the block
    torch.testing.assert_close(loss, ref_loss, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(ours, theirs))  # the other path ran
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=0.05, atol=2e-3)
