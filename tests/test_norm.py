"""RMSNorm's hand-written backward pass agrees with autograd's on the same arithmetic, its
forward is that arithmetic bit for bit, and it leaves its inputs and the incoming gradient
untouched."""

import pytest
import torch

from ddlm.fused import rms_norm_reference  # the forward as written, for autograd to differentiate
from ddlm.norm import RMSNorm


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_forward_is_the_arithmetic_and_backward_matches_autograd(dtype):
    torch.manual_seed(0)
    norm = RMSNorm(24)
    norm.weight.data.uniform_(0.5, 1.5)
    x = (3 * torch.randn(2, 5, 24)).to(dtype).requires_grad_()
    grad = torch.randn(2, 5, 24).to(dtype)
    x_before, grad_before = x.detach().clone(), grad.clone()

    y = norm(x)
    assert y.dtype == dtype
    ref = rms_norm_reference(x, norm.weight, norm.eps)
    torch.testing.assert_close(y, ref, rtol=0, atol=0)
    gx, gw = torch.autograd.grad(y, (x, norm.weight), grad)
    rx, rw = torch.autograd.grad(ref, (x, norm.weight), grad)
    tol = {torch.float32: 1e-5, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(gx, rx, rtol=tol, atol=tol)
    torch.testing.assert_close(gw, rw, rtol=tol, atol=tol)
    assert torch.equal(x.detach(), x_before) and torch.equal(grad, grad_before)


def test_a_frozen_gain_gets_no_gradient():
    norm = RMSNorm(8)
    norm.weight.requires_grad_(False)
    x = torch.randn(4, 8, requires_grad=True)
    norm(x).sum().backward()
    assert x.grad is not None and norm.weight.grad is None
