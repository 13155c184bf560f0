"""ddlm.fused: the single-exp Mish and the fused RMSNorm agree with the eager modules, values
and gradients, and TrainConfig.fuse switches them on only while the trainer runs."""

import pytest
import torch
import torch.nn.functional as F
from helpers import fast_config, tiny_config, tiny_model

import ddlm
from ddlm import fused
from ddlm.data import load_corpus
from ddlm.norm import RMSNorm
from ddlm.train import Trainer


def test_single_exp_mish_matches_mish_and_its_gradient_everywhere():
    # from far below zero (exp underflows) through the x > 20 branch (n^2 would overflow)
    a = torch.cat((torch.linspace(-120, 120, 2001), torch.tensor([19.99, 20.0, 20.01, 88.8])))
    a = a.double().requires_grad_()
    b = torch.randn(a.shape, dtype=torch.float64, requires_grad=True)
    ours = fused.mish_gate_reference(a.float(), b.float())
    assert ours.dtype == torch.float32 and torch.isfinite(ours).all()
    torch.testing.assert_close(ours.double(), F.mish(a) * b, rtol=1e-5, atol=1e-6)
    ga, gb = torch.autograd.grad(ours.sum(), (a, b))
    ra, rb = torch.autograd.grad((F.mish(a) * b).sum(), (a, b))
    torch.testing.assert_close(ga, ra, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gb, rb, rtol=1e-5, atol=1e-6)


def test_fused_rms_norm_reference_is_the_module_arithmetic():
    norm = RMSNorm(24)
    norm.weight.data.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 24, dtype=torch.bfloat16)
    ref = fused.rms_norm_reference(x, norm.weight, norm.eps)
    assert ref.dtype == torch.bfloat16
    torch.testing.assert_close(norm(x), ref, rtol=0, atol=0)


def test_fused_model_matches_eager_and_trainer_switches_it_on_only_while_it_runs(tmp_path):
    torch.manual_seed(0)
    model = ddlm.DiffusionLM(tiny_config())
    x = torch.randint(0, 256, (4, 32))  # the shape fast_config trains on: compiled once

    def run():
        model.zero_grad(set_to_none=True)
        logits = model(x)
        logits.float().square().mean().backward()
        return logits.detach(), [p.grad.clone() for p in model.parameters()]

    eager, eager_grads = run()
    with fused.fused():
        assert fused.enabled()
        fast, fast_grads = run()
    assert not fused.enabled()
    torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)
    for g, r in zip(fast_grads, eager_grads):
        torch.testing.assert_close(g, r, rtol=1e-3, atol=1e-5)

    seen = []  # a callback runs inside the loop: what it sees is what the steps ran with
    trainer = Trainer(
        tiny_model(),
        fast_config(steps=2, log_every=1, fuse=True),
        load_corpus("pydoc-topics"),
        callbacks=[lambda record: seen.append(fused.enabled())],
        progress=False,
    )
    result = trainer.fit()
    assert result["status"] == "complete" and seen and all(seen)
    assert not fused.enabled()


def test_fuse_is_an_option_of_ddlm_train():
    from ddlm.cli import build_parser

    args = build_parser().parse_args(["train", "--out", "x", "--fuse", "true"])
    assert vars(args)["TrainConfig.fuse"] is True


@pytest.mark.parametrize("on", [True, False])
def test_fused_context_restores_what_was_there(on):
    with fused.fused(on):
        with fused.fused(not on):
            assert fused.enabled() is (not on)
        assert fused.enabled() is on
    assert fused.enabled() is False
