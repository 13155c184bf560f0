"""Callbacks for the trainer: what a run shows or records besides its loss.

A callback is any callable that takes a metric record (a dict with at least "step"); one
that returns a dict adds its items to the record before the trainer logs it. The trainer
knows nothing of sampling: a logged sample is this module's business.
"""

from __future__ import annotations

from . import objectives
from .sampling import SamplerConfig


class LogSamples:
    """Every `every` steps, continue `prompt` with `length` bytes and log the text as
    record["sample"] (the diffusion sampler in `steps` steps, or left to right for an AR
    twin; greedy and seeded, so samples of one run are comparable across steps)."""

    def __init__(
        self,
        model,
        prompt: bytes,
        every: int = 100,
        length: int = 64,
        steps: int = 32,
        echo=print,
    ):
        if every < 1 or length < 1 or steps < 1:
            raise ValueError(
                f"every, length and steps must be positive, got {every}, {length}, {steps}"
            )
        room = model.config.max_seq_len - len(prompt)
        if room < 1:
            raise ValueError(f"a {len(prompt)}-byte prompt leaves no room in the model's context")
        self.model, self.prompt, self.every, self.echo = model, prompt, every, echo
        self.length = min(length, room)
        self.config = SamplerConfig(steps=min(steps, self.length))

    def __call__(self, record: dict) -> dict | None:
        if record["step"] % self.every:
            return None
        text = objectives.sample(self.model, self.prompt, self.length, self.config, seed=0).text
        if self.echo is not None:
            self.echo(f"step {record['step']} sample: {text!r}")
        return {"sample": text}
