"""Shared helpers for the tests (imported as `from helpers import ...`)."""

import ddlm


def tiny_config(**overrides) -> ddlm.ModelConfig:
    """A model small enough for unit tests (milliseconds per forward)."""
    base = dict(dim=32, n_layers=2, n_heads=4, kv_latent_dim=16, max_seq_len=64)
    return ddlm.ModelConfig(**{**base, **overrides})
