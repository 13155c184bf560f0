"""Run directories: everything a training run needs to continue exactly where it stopped.

Weights alone are a model folder (`DiffusionLM.save_pretrained`: config.json and
model.safetensors). A run directory adds the run state and keeps it consistent under any kill:

    config.json, model.safetensors   the latest weights (so `from_pretrained(run_dir)` works)
    train_config.json                the TrainConfig, and facts of the run (corpus, precision)
    metrics.jsonl                    one JSON object per logged step
    checkpoint.json                  the pointer: which step folder is the current checkpoint
    step-00000300/                   one checkpoint, a consistent unit:
        model.safetensors            weights at that step
        train_state.safetensors      optimizer moments and RNG states (tensors)
        train_state.json             step, counters, optimizer hyper-parameters, scaler, configs
    lock                             while a process writes: its PID, under an OS lock

`RunDir` is the one owner of these names. Saving writes a new step folder, then switches the
pointer (one atomic rename), then exports the weights and removes older step folders. A
process killed at any moment leaves the pointer naming a complete folder: the run resumes
from the last checkpoint that finished. A save that fails (no space, read-only, permission
denied) removes its half-written folder and raises SaveError in one line. One process at a
time writes (`RunDir.lock`); readers need no lock. Every file is written atomically
(`files.atomic_write`); nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import torch

from .configs import differences
from .files import (
    LOCK_NAME,
    CheckpointError,
    SaveError,
    atomic_write_text,
    load_tensors,
    locked,
    read_json,
    save_tensors,
    write_json,
)
from .model import WEIGHTS_NAME, DiffusionLM, ModelConfig


class RunDir:
    """One run directory: the names of its files, reading them (no lock: a reader always
    sees a complete checkpoint) and writing them (under `lock()`, one process at a time)."""

    POINTER = "checkpoint.json"
    TRAIN_CONFIG = "train_config.json"
    METRICS = "metrics.jsonl"
    LOCK = LOCK_NAME
    STATE_TENSORS = "train_state.safetensors"
    STATE_JSON = "train_state.json"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._tb = None  # a TensorBoard writer, made at the first record if tensorboard exists

    def folder(self, step: int) -> Path:
        return self.path / f"step-{step:08d}"

    # ---- reading --------------------------------------------------------------------

    def has_run(self) -> bool:
        """True if the folder holds a training run (a checkpoint to resume from)."""
        return (self.path / self.POINTER).exists() or (self.path / self.STATE_JSON).exists()

    def step(self) -> int | None:
        """The step of the current checkpoint (None before the first one)."""
        if not (self.path / self.POINTER).exists():
            return None
        return int(read_json(self.path / self.POINTER)["step"])

    def state(self) -> dict:
        """The JSON half of the current checkpoint: step, counters and both configs."""
        while True:
            folder = self._current()
            try:
                return read_json(folder / self.STATE_JSON)
            except (CheckpointError, FileNotFoundError):
                if self._current() == folder:
                    raise
                # else the writer switched to a newer checkpoint and removed this one: read that

    def model_config(self, state: dict | None = None) -> ModelConfig:
        """The ModelConfig the run was trained with."""
        return ModelConfig.from_dict((state or self.state())["model_config"])

    def train_config(self) -> dict | None:
        """train_config.json as written (options plus the "run" facts), or None."""
        path = self.path / self.TRAIN_CONFIG
        return read_json(path) if path.exists() else None

    def corpus_change(self, state: dict, corpus: dict) -> dict | None:
        """None if `corpus` ({"sha256", "size"}) is what the checkpoint `state` trained on (or
        the run recorded none); else the change, {"step", "from", "to"}."""
        before = state.get("corpus")
        if before is None:  # checkpoints of older versions: the record in train_config.json
            run = (self.train_config() or {}).get("run", {})
            size = run.get("corpus_bytes", run.get("corpus_symbols"))
            before = (
                {"sha256": run["corpus_sha256"], "size": size} if "corpus_sha256" in run else None
            )
        if before is None or before == corpus:
            return None
        return {"step": state["step"], "from": before, "to": corpus}

    def _current(self) -> Path:
        """The folder of the current checkpoint, as the pointer names it."""
        if (self.path / self.POINTER).exists():
            return self.path / read_json(self.path / self.POINTER)["folder"]
        if (self.path / self.STATE_JSON).exists():
            raise CheckpointError(
                f"{self.path} was written by an older ddlm (no {self.POINTER}); its weights still "
                "load with from_pretrained, so continue from them with --init-from"
            )
        raise CheckpointError(
            f"{self.path} holds no training state ({self.POINTER}) to resume from"
        )

    def load(self, model: DiffusionLM, optimizer: torch.optim.Optimizer) -> dict:
        """Restore the current checkpoint into `model` and `optimizer`, and return the rest
        of what `save` was given (tensors among the values)."""
        folder = self._current()
        state = read_json(folder / self.STATE_JSON)
        clash = differences(self.model_config(state), model.config.to_dict())
        if clash:
            raise CheckpointError(
                f"the run in {self.path} was trained with a different model config: "
                f"{clash} (requested, stored)"
            )
        tensors = load_tensors(folder / self.STATE_TENSORS)
        model.load_weights(load_tensors(folder / WEIGHTS_NAME), str(folder / WEIGHTS_NAME))
        _optimizer_from_tensors(optimizer, tensors, state.pop("optimizer"))
        return {**state, **{k: v for k, v in tensors.items() if not k.startswith("optim.")}}

    # ---- writing (under lock()) -----------------------------------------------------

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's write lock for the body (`files.locked`): LockedError at once if
        another process holds it; SaveError if the folder cannot be written at all."""
        with ExitStack() as stack:
            with self._reported():
                stack.enter_context(locked(self.path))
            yield

    def write_train_config(self, record: dict) -> None:
        with self._reported():
            write_json(self.path / self.TRAIN_CONFIG, record)

    def save(
        self, model: DiffusionLM, optimizer: torch.optim.Optimizer, state: dict[str, Any]
    ) -> None:
        """Write one checkpoint: `state` (must hold "step"; its tensors, such as RNG states,
        go to safetensors, the rest to JSON) beside the weights and the optimizer, then
        switch to it. On any failure the half-written folder is removed and the pointer
        stays where it was."""
        step = int(state["step"])
        folder = self.folder(step)
        opt_tensors, opt_meta = _optimizer_to_tensors(optimizer)
        tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
        state = {k: v for k, v in state.items() if k not in tensors}
        meta = {"step": str(step)}
        with self._reported():
            try:
                save_tensors(folder / self.STATE_TENSORS, {**opt_tensors, **tensors}, meta)
                write_json(folder / self.STATE_JSON, {**state, "optimizer": opt_meta})
                weights = dict(model.state_dict())
                save_tensors(folder / WEIGHTS_NAME, weights, {"format": "ddlm", **meta})
                write_json(self.path / self.POINTER, {"folder": folder.name, "step": step})
            except BaseException:  # a kill -9 runs nothing: the next save removes what it left
                if self._pointer_folder() != folder.name:
                    shutil.rmtree(folder, ignore_errors=True)
                raise
            model.save_pretrained(self.path, step=step)
            for old in self.path.glob("step-*"):
                if old.is_dir() and old.name != folder.name:
                    shutil.rmtree(old, ignore_errors=True)

    def log(self, record: dict) -> None:
        """Append one metric record to metrics.jsonl (and TensorBoard, when installed)."""
        with self._reported():
            with open(self.path / self.METRICS, "a") as f:
                f.write(json.dumps(record) + "\n")
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(log_dir=str(self.path / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self._tb = False
        if self._tb:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, record["step"])

    def truncate_log(self, step: int) -> None:
        """Drop metric records logged after `step` (a run killed after its last checkpoint)."""
        path = self.path / self.METRICS
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        with self._reported():
            atomic_write_text(path, "\n".join(kept) + ("\n" if kept else ""))

    def close(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None

    @contextmanager
    def _reported(self) -> Iterator[None]:
        """An OSError of a write becomes SaveError: one line naming the file, the cause, and
        the checkpoint that is still there."""
        try:
            yield
        except OSError as e:
            try:
                step = self.step()
            except CheckpointError:
                step = None
            kept = "has no checkpoint" if step is None else f"keeps its checkpoint of step {step}"
            raise SaveError(
                f"cannot write {e.filename or self.path}: {e.strerror or e}; the run in "
                f"{self.path} {kept}"
            ) from e

    def _pointer_folder(self) -> str | None:
        try:
            return read_json(self.path / self.POINTER)["folder"]
        except (CheckpointError, KeyError, OSError):
            return None


def read_state(run_dir: str | os.PathLike) -> dict:
    """The JSON half of a run's current checkpoint (`RunDir.state`)."""
    return RunDir(run_dir).state()


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
