"""Safe files: atomic writes, and safetensors plus JSON as the only formats read back.

A crash leaves either the old file or the new one, never half of one: write to a temporary
file in the same folder, flush it to disk (fsync), rename it over the target (atomic on POSIX
and Windows), then fsync the folder so the rename itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call `write(tmp_path)`, fsync the result, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


# ---- safetensors and JSON: the only formats ddlm reads -------------------------------
# Nothing here unpickles: `torch.load` is never called, and a `.pt`/`.bin` file is refused,
# because unpickling a file someone hands you can run arbitrary code.

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, or for a different model."""


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, hex (how results name the weights they measured)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


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


def refuse_pickle(path: str | os.PathLike) -> None:
    """Raise CheckpointError for a file name that looks like a pickle-based PyTorch file."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} looks like a pickle-based PyTorch file; ddlm never unpickles files "
            "(unpickling can run arbitrary code). Convert it to safetensors with a tool you trust."
        )


def save_tensors(
    path: str | os.PathLike,
    tensors: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
) -> None:
    """Atomically write a safetensors file (tensors are made contiguous and moved to CPU)."""
    cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def load_tensors(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing, truncated or corrupt file raises CheckpointError."""
    path = Path(path)
    refuse_pickle(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    try:
        return load_file(path, device=str(device))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or corrupt ({e})") from e
