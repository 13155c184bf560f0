import pytest
import torch
import torch.nn.functional as F

from ddlm.ffn import ACTIVATIONS, GatedFFN, ffn_hidden_size


def test_hidden_rule():
    assert ffn_hidden_size(192) == 512  # 8/3 * 192 = 512 exactly
    assert ffn_hidden_size(512) == 1408  # 1365.3 -> next multiple of 64
    assert ffn_hidden_size(100) % 64 == 0 and ffn_hidden_size(100) >= 100 * 8 / 3


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_formula(act):
    ffn = GatedFFN(16, 32, act)
    x = torch.randn(3, 5, 16)
    f = {"mish": F.mish, "silu": F.silu, "gelu": F.gelu}[act]
    ref = ffn.w2(f(ffn.w1(x)) * ffn.w3(x))
    torch.testing.assert_close(ffn(x), ref)
    assert sum(p.numel() for p in ffn.parameters()) == 3 * 16 * 32


def test_unknown_activation():
    with pytest.raises(ValueError, match="relu"):
        GatedFFN(8, 16, "relu")
