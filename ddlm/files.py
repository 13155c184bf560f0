"""Safe files: atomic writes, one writer per folder, and safetensors plus JSON as the only
formats read back.

A crash leaves either the old file or the new one, never half of one: write to a temporary
file in the same folder, flush it to disk (fsync), rename it over the target (atomic on POSIX
and Windows), then fsync the folder so the rename itself survives a power cut. A write that
fails (no space, read-only, permission denied) leaves the old file and raises an OSError that
names the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

try:
    import fcntl
except ImportError:  # Windows: no flock, so `locked` cannot keep a second writer out there
    fcntl = None


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
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:  # name the file the user knows
            raise OSError(e.errno, e.strerror, str(path)) from e
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


class SaveError(RuntimeError):
    """A save that failed on an OSError (no space, read-only, permission denied, quota); what
    was saved before is intact, and the message says so in one line."""


# ---- one writer per folder ------------------------------------------------------------

LOCK_NAME = "lock"


class LockedError(RuntimeError):
    """Another process is writing the folder (it holds the folder's lock)."""


@contextmanager
def locked(directory: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive write lock of `directory` (created if needed) for the body.

    An OS lock (`flock`) on the file `lock` in the folder, holding the owner's PID: the kernel
    releases it when the process ends, however it ends, so a `kill -9` never leaves a stale
    lock. A second writer gets LockedError at once, naming the folder and the process. The
    file is removed on release (a new writer that opened it just before then notices that the
    file it locked is gone, and locks the new one)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockedError(
                f"{directory} is in use: process {holder} is writing there (it holds "
                f"{path}); wait for it to end or stop it, then try again"
            ) from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with suppress(OSError):  # a lock file left behind blocks nothing (as after kill -9)
            path.unlink(missing_ok=True)  # before the unlock: see the docstring
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


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
    # Serialised in memory and written by Python, so a full disk is an OSError with its errno
    # (safetensors' own file writer reports one as a SafetensorError carrying text).
    data = save(cpu, metadata=metadata)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


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
