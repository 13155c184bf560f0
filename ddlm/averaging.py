"""Weight averaging: the mean of several checkpoints of one model, used as one model.

Two runs that start from the same weights and each end with a learning rate decayed to near
zero land at two low points of one valley of the loss. The straight line between them stays in
the valley, and its middle often lies lower than either end, because each end sits off the
valley's floor in its own direction of gradient noise. Stochastic weight averaging (Izmailov et
al., 2018) averages the ends of successive learning-rate cycles this way, and model soups
(Wortsman et al., 2022) average fine-tunes of one start. The average costs one pass over the
weights and no training; whether it helps is a measurement (`ddlm eval` on each source and on
the average), since checkpoints from different valleys average to nonsense.

`ddlm average A B C --out DIR` writes the mean as a model folder, with `average.json` naming
each source by its weights' SHA-256.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from .files import CheckpointError, locked, sha256_file, write_json
from .model import WEIGHTS_NAME, DiffusionLM, resolve_checkpoint

RECORD = "average.json"


def average_checkpoints(checkpoints: Sequence[str | os.PathLike]) -> DiffusionLM:
    """The uniform mean of the weights of `checkpoints` (shipped names or folders), which must
    hold the same ModelConfig. Floating-point tensors are averaged in float64 and stored in
    their own dtype; any other tensor must be equal in every source. Returned in eval mode."""
    if len(checkpoints) < 2:
        raise ValueError(f"averaging needs at least two checkpoints, got {len(checkpoints)}")
    models = [DiffusionLM.from_pretrained(checkpoints[0])]
    first = models[0].config
    for c in checkpoints[1:]:
        try:  # the loader compares configs and names the fields that differ
            models.append(DiffusionLM.from_pretrained(c, config=first))
        except CheckpointError as e:
            raise CheckpointError(
                f"{c} has a different model config from {checkpoints[0]} ({e}); only "
                "checkpoints of one model can be averaged"
            ) from e
    states = [m.state_dict() for m in models]
    mean: dict[str, torch.Tensor] = {}
    for name, value in states[0].items():
        if value.is_floating_point():
            total = sum(s[name].double() for s in states)
            mean[name] = (total / len(states)).to(value.dtype)
        elif all(torch.equal(s[name], value) for s in states):
            mean[name] = value
        else:
            raise CheckpointError(f"{name} is not floating point and differs between checkpoints")
    out = DiffusionLM(first)
    out.load_weights(mean, "the average")
    return out.eval()


def save_average(checkpoints: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict:
    """Average `checkpoints` into the model folder `out` (config.json, model.safetensors and
    average.json) and return the record written to average.json. Refuses a folder that
    already holds weights, or that another process is writing (a training run: LockedError)."""
    out = Path(out)
    with locked(out):
        if (out / WEIGHTS_NAME).exists():
            raise FileExistsError(f"{out / WEIGHTS_NAME} exists; choose another --out")
        return _write_average(checkpoints, out)


def _write_average(checkpoints: Sequence[str | os.PathLike], out: Path) -> dict:
    model = average_checkpoints(checkpoints)
    model.save_pretrained(out)
    record = {
        "method": "uniform mean of the weights",
        "sources": [
            {
                "checkpoint": str(c),
                "weights_sha256": sha256_file(resolve_checkpoint(c) / WEIGHTS_NAME),
            }
            for c in checkpoints
        ],
        "weights_sha256": sha256_file(out / WEIGHTS_NAME),
    }
    write_json(out / RECORD, record)
    return record
