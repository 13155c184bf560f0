import pytest
import torch

from ddlm.rope import RotaryEmbedding, apply_rope, rope_frequencies, rope_tables


def complex_rope(x: torch.Tensor, theta: float = 10000.0) -> torch.Tensor:
    """Reference: pair feature i with i + D/2 as a complex number, multiply by e^{j m theta_i}."""
    B, H, T, D = x.shape
    half = D // 2
    z = torch.complex(x[..., :half].double(), x[..., half:].double())
    freqs = rope_frequencies(D, theta)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * freqs[None, :]
    z = z * torch.polar(torch.ones_like(angles), angles)
    return torch.cat((z.real, z.imag), dim=-1)


def test_matches_complex_formulation():
    x = torch.randn(2, 3, 17, 16, dtype=torch.float64)
    cos, sin = rope_tables(16, 17, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, cos, sin), complex_rope(x))


def test_partial_rotary_leaves_the_rest_alone():
    x = torch.randn(1, 2, 9, 16)
    cos, sin = rope_tables(8, 9)
    y = apply_rope(x, cos, sin)
    torch.testing.assert_close(y[..., 8:], x[..., 8:])
    assert not torch.allclose(y[..., :8], x[..., :8])


def test_relative_position_property():
    torch.manual_seed(0)
    D, T = 32, 40
    q, k = torch.randn(D, dtype=torch.float64), torch.randn(D, dtype=torch.float64)
    cos, sin = rope_tables(D, T, dtype=torch.float64)
    qs = apply_rope(q.expand(1, 1, T, D), cos, sin)[0, 0]  # q placed at every position
    ks = apply_rope(k.expand(1, 1, T, D), cos, sin)[0, 0]
    scores = qs @ ks.T  # (T, T): score(m, n)
    for offset in (-7, 0, 3, 11):
        diag = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diag, diag[0].expand_as(diag))
    assert not torch.allclose(torch.diagonal(scores, 0)[0], torch.diagonal(scores, 5)[0])


def test_norm_is_preserved():
    x = torch.randn(2, 2, 10, 8, dtype=torch.float64)
    cos, sin = rope_tables(8, 10, dtype=torch.float64)
    torch.testing.assert_close(apply_rope(x, cos, sin).norm(dim=-1), x.norm(dim=-1))


def test_bad_rotary_dims():
    with pytest.raises(ValueError, match="even"):
        rope_frequencies(7)
    cos, sin = rope_tables(16, 4)
    with pytest.raises(ValueError, match="exceeds"):
        apply_rope(torch.randn(1, 1, 4, 8), cos, sin)


def test_cache_per_dtype_and_offset():
    rot = RotaryEmbedding(8, 32)
    c32, _ = rot(10, torch.device("cpu"), torch.float32)
    cb, _ = rot(10, torch.device("cpu"), torch.bfloat16)
    assert c32.dtype == torch.float32 and cb.dtype == torch.bfloat16
    # A second call reads the table built by the first (same memory), one table per dtype.
    assert rot(10, torch.device("cpu"), torch.float32)[0].data_ptr() == c32.data_ptr()
    assert rot(10, torch.device("cpu"), torch.bfloat16)[0].data_ptr() == cb.data_ptr()
    c_off, _ = rot(4, torch.device("cpu"), torch.float32, offset=6)
    torch.testing.assert_close(c_off, c32[6:10])
    with pytest.raises(ValueError, match="max_seq_len"):
        rot(33, torch.device("cpu"))


def test_works_in_bf16():
    x = torch.randn(1, 1, 5, 8, dtype=torch.bfloat16)
    cos, sin = rope_tables(8, 5)
    assert apply_rope(x, cos, sin).dtype == torch.bfloat16
