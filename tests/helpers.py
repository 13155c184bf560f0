"""Shared helpers for the tests (imported as `from helpers import ...`)."""

import ddlm
from ddlm.train import TrainConfig, build_model


def tiny_config(**overrides) -> ddlm.ModelConfig:
    """A model small enough for unit tests (milliseconds per forward)."""
    base = dict(dim=32, n_layers=2, n_heads=4, kv_latent_dim=16, max_seq_len=64)
    return ddlm.ModelConfig(**{**base, **overrides})


def tiny_model(seed: int = 0, **overrides) -> ddlm.DiffusionLM:
    """A fresh `tiny_config` model, built as a run builds it (`build_model`, seeded; a
    TrainConfig's seed is 0 unless told)."""
    return build_model(tiny_config(**overrides), seed)


# The command line's arguments for a model and a run small enough for tests (seconds).
SMALL_MODEL_ARGS = ["--dim", "32", "--layers", "2", "--heads", "4", "--kv-latent-dim", "16"]
SMALL_MODEL_ARGS += ["--max-seq-len", "64"]
FAST_TRAIN_ARGS = ["--batch-size", "2", "--seq-len", "32", "--eval-every", "0"]
FAST_TRAIN_ARGS += ["--sample-every", "0", "--amp", "off", "--device", "cpu"]


def train_argv(out, *extra, data: str = "pydoc-topics") -> list[str]:
    """`ddlm train` arguments for a small, fast run into `out`."""
    return ["train", "--data", data, "--out", str(out), *SMALL_MODEL_ARGS, *FAST_TRAIN_ARGS, *extra]


def fast_config(**overrides) -> TrainConfig:
    """A TrainConfig for runs of a few steps on a CPU (float32, no evaluation, no checkpoints
    until the end); tests override what they are about."""
    base = dict(steps=12, batch_size=4, seq_len=32, amp="off", device="cpu", eval_every=0)
    base.update(ckpt_every=0, log_every=2, eval_batches=2, warmup_steps=3)
    return TrainConfig(**{**base, **overrides})
