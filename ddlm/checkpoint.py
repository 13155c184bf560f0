"""Run directories: everything a training run needs to continue exactly where it stopped.

Weights alone are a model folder (`DiffusionLM.save_pretrained`: config.json and
model.safetensors). A run directory adds the run state and keeps it consistent under any kill:

    config.json, model.safetensors   the latest weights (so `from_pretrained(run_dir)` works)
    train_config.json                the TrainConfig the run was started with (readable)
    metrics.jsonl                    one JSON object per logged step
    checkpoint.json                  the pointer: which step folder is the current checkpoint
    step-00000300/                   one checkpoint, a consistent unit:
        model.safetensors            weights at that step
        train_state.safetensors      optimizer moments and RNG states (tensors)
        train_state.json             step, counters, optimizer hyper-parameters, scaler, configs

Saving writes a new step folder, then switches the pointer (one atomic rename), then exports
the weights and removes older step folders. A process killed at any moment leaves the pointer
naming a complete folder: the run resumes from the last checkpoint that finished. Every file
is written atomically (`files.atomic_write`); nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from .files import (
    CheckpointError,
    atomic_write_text,
    load_tensors,
    read_json,
    save_tensors,
    write_json,
)
from .model import WEIGHTS_NAME, DiffusionLM, ModelConfig

POINTER = "checkpoint.json"
TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.jsonl"
STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"


def step_folder(step: int) -> str:
    return f"step-{step:08d}"


def has_run(run_dir: str | os.PathLike) -> bool:
    """True if `run_dir` holds a training run (a checkpoint to resume from)."""
    run_dir = Path(run_dir)
    return (run_dir / POINTER).exists() or (run_dir / STATE_JSON).exists()


def _current(run_dir: Path) -> Path:
    """The folder of the current checkpoint, as the pointer names it."""
    if (run_dir / POINTER).exists():
        return run_dir / read_json(run_dir / POINTER)["folder"]
    if (run_dir / STATE_JSON).exists():
        raise CheckpointError(
            f"{run_dir} was written by an older ddlm (no {POINTER}); its weights still load "
            "with from_pretrained, so continue from them with --init-from"
        )
    raise CheckpointError(f"{run_dir} holds no training state ({POINTER}) to resume from")


def read_state(run_dir: str | os.PathLike) -> dict:
    """The JSON half of the current checkpoint: step, counters and both configs."""
    return read_json(_current(Path(run_dir)) / STATE_JSON)


def save_run(
    run_dir: str | os.PathLike,
    model: DiffusionLM,
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    tensors: dict[str, torch.Tensor],
) -> None:
    """Write one checkpoint of a run: `state` (JSON-able, must hold "step") and `tensors`
    (RNG states and the like) beside the weights and the optimizer, then switch to it."""
    run_dir = Path(run_dir)
    step = int(state["step"])
    folder = run_dir / step_folder(step)
    opt_tensors, opt_meta = _optimizer_to_tensors(optimizer)
    meta = {"step": str(step)}
    save_tensors(folder / STATE_TENSORS, {**opt_tensors, **tensors}, meta)
    write_json(folder / STATE_JSON, {**state, "optimizer": opt_meta})
    save_tensors(folder / WEIGHTS_NAME, dict(model.state_dict()), {"format": "ddlm", **meta})
    write_json(run_dir / POINTER, {"folder": folder.name, "step": step})  # the switch
    model.save_pretrained(run_dir, step=step)
    for old in run_dir.glob("step-*"):
        if old.is_dir() and old.name != folder.name:
            shutil.rmtree(old, ignore_errors=True)


def load_run(
    run_dir: str | os.PathLike, model: DiffusionLM, optimizer: torch.optim.Optimizer
) -> tuple[dict, dict[str, torch.Tensor]]:
    """Restore the current checkpoint into `model` and `optimizer`; return (state, tensors)
    with the optimizer's own tensors removed, for the caller's counters and RNG states."""
    folder = _current(Path(run_dir))
    state = read_json(folder / STATE_JSON)
    stored = ModelConfig.from_dict(state["model_config"])
    if stored != model.config:
        raise CheckpointError(
            f"the run in {run_dir} was trained with a different model config; "
            f"stored {stored}, requested {model.config}"
        )
    tensors = load_tensors(folder / STATE_TENSORS)
    weights = load_tensors(folder / WEIGHTS_NAME)
    model.load_weights(weights, str(folder / WEIGHTS_NAME))
    _optimizer_from_tensors(optimizer, tensors, state["optimizer"])
    return state, {k: v for k, v in tensors.items() if not k.startswith("optim.")}


# ---- the metric log --------------------------------------------------------------------


class MetricLog:
    """metrics.jsonl in a run directory, plus TensorBoard when that package is installed."""

    def __init__(self, run_dir: str | os.PathLike | None):
        self.path = Path(run_dir) / METRICS if run_dir is not None else None
        self.tb = None
        if self.path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a run killed after its last checkpoint)."""
        if self.path is None or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        atomic_write_text(self.path, "\n".join(kept) + ("\n" if kept else ""))

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---- optimizer state as tensors + JSON ------------------------------------------------


def _optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
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


def _optimizer_from_tensors(
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
