"""Safe files: safetensors for tensors, JSON for everything else, atomic writes.

A model directory (the layout of the Hugging Face ecosystem):

    config.json            the ModelConfig as JSON
    model.safetensors      the weights

A training run directory adds the state needed to continue exactly where it stopped:

    train_state.safetensors   optimizer moments, gradient-scaler state, RNG states (tensors)
    train_state.json          step, counters, optimizer hyper-parameters, configs (readable)
    metrics.jsonl             one JSON object per logged step

Nothing here unpickles: `torch.load` is never called, and a `.pt`/`.bin` file is refused.
Every file is written to a temporary name, flushed to disk and renamed over the old one,
so a process killed at any moment leaves the previous complete file in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .files import atomic_write, atomic_write_text
from .model import DiffusionLM, ModelConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or for a different model."""


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from e


def save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Atomically write a safetensors file (tensors are made contiguous and moved to CPU)."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def _refuse_pickle(path: Path) -> None:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} looks like a pickle-based PyTorch file; ddlm never unpickles files "
            "(unpickling can run arbitrary code). Convert it to safetensors with a tool you trust."
        )


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file raises CheckpointError."""
    path = Path(path)
    _refuse_pickle(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({e})") from e


def save_pretrained(
    model: DiffusionLM, directory: str | os.PathLike, step: int | None = None
) -> None:
    """Write config.json and model.safetensors into `directory` (created if needed)."""
    directory = Path(directory)
    if directory.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(f"{directory} should be a directory, not a pickle file name")
    module = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = dict(module.state_dict())
    meta = {"format": "ddlm", "step": str(step if step is not None else -1)}
    write_json(directory / CONFIG_NAME, module.config.to_dict())
    save_tensors(directory / WEIGHTS_NAME, state, meta)


def weights_step(directory: str | os.PathLike) -> int:
    """The training step recorded in model.safetensors' metadata (-1 if none)."""
    from safetensors import safe_open

    path = Path(directory) / WEIGHTS_NAME
    try:
        with safe_open(path, framework="pt") as f:
            return int((f.metadata() or {}).get("step", -1))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({e})") from e


def load_state_into(model: DiffusionLM, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy `tensors` into `model`, with a clear error if they belong to another model."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    wrong = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            details.append(
                f"{k} has shape {tuple(tensors[k].shape)}, model wants {tuple(own[k].shape)}"
            )
        raise CheckpointError(
            f"the weights in {source} do not match this model's config: " + "; ".join(details)
        )
    model.load_state_dict(tensors)


def from_pretrained(
    directory: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    config: ModelConfig | None = None,
) -> DiffusionLM:
    """Build a DiffusionLM from config.json and load model.safetensors.

    If `config` is given it must equal the stored one (otherwise CheckpointError).
    """
    directory = Path(directory)
    _refuse_pickle(directory)
    if not directory.is_dir():
        raise CheckpointError(
            f"{directory} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}"
        )
    try:
        stored = ModelConfig.from_dict(read_json(directory / CONFIG_NAME))
    except (TypeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{directory / CONFIG_NAME} is not a valid ModelConfig ({e})") from e
    if config is not None and config != stored:
        diff = {
            k: (v, getattr(stored, k))
            for k, v in config.to_dict().items()
            if getattr(stored, k) != v
        }
        raise CheckpointError(
            f"checkpoint config differs from the requested one: {diff} (requested, stored)"
        )
    model = DiffusionLM(stored)
    load_state_into(model, load_tensors(directory / WEIGHTS_NAME), str(directory / WEIGHTS_NAME))
    return model.to(map_location)


# ---- optimizer state as tensors + JSON ------------------------------------------------


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer's state_dict into tensors (for safetensors) and JSON-able values."""
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, idx, key = name.split(".", 2)
            state.setdefault(int(idx), {})[key] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
