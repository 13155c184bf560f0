"""Corpora, the train/validation split, and batches of random crops.

A corpus is just bytes. Sources:

* "pydoc" (the embedded default, works offline everywhere): the English reference text
  that CPython ships for `help()` (`pydoc_data.topics`, about 0.47 MB), followed by the
  docstrings of the standard library's own modules, classes and functions, read from
  source with `ast` (nothing is imported or executed; about 1.6 MB). Exactly what goes in
  is described in data/README.md. The text depends on the Python version, so it is built
  once per version and cached under data/cache/.
* "pydoc-topics": only the `help()` topics (small and quick; used by tests).
* "tinyshakespeare": downloaded once, verified by SHA-256, cached under data/cache/.
* a path to a file, or to a folder whose files are concatenated in sorted order.

Split: the last `val_fraction` (default 10%) of the bytes is validation, the rest training.
Deterministic, no shuffling: validation text is text the model never saw.

Shapes: corpora are 1-D uint8 tensors; batches are (B, T) int64.
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .files import atomic_write_bytes

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
CACHE_DIR = Path(os.environ.get("DDLM_CACHE", DATA_DIR / "cache"))


@dataclass(frozen=True)
class RemoteCorpus:
    url: str  # where to download it from
    sha256: str  # the expected SHA-256 of the file's bytes
    filename: str  # name in the cache folder
    size: int  # expected size in bytes (for the error message)


REMOTE_CORPORA = {
    "tinyshakespeare": RemoteCorpus(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="tinyshakespeare.txt",
        size=1_115_394,
    ),
}

EMBEDDED = ("pydoc", "pydoc-topics")
MEMMAP_THRESHOLD = 64 * 2**20  # files larger than this are memory-mapped, not read


# ---- the embedded corpus -------------------------------------------------------------


def pydoc_topics_text() -> bytes:
    """CPython's `help()` topics, in sorted topic order, separated by blank lines."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k].strip() for k in sorted(topics)).encode("utf-8") + b"\n"


_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip"}


def stdlib_docstrings_text() -> bytes:
    """The docstrings of the standard library's .py files, read with `ast` (never imported).

    Files are visited in sorted path order; in each, module, class and function docstrings
    in source order (`ast.walk`), separated by blank lines. Test suites, IDLE, lib2to3,
    turtledemo, ensurepip and site-packages are left out.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    parts: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(dirpath, name).read_bytes())
            except (SyntaxError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:  # skip one-liners like "Return x."
                        parts.append(doc.strip())
    return "\n\n".join(parts).encode("utf-8", errors="replace") + b"\n"


def _embedded(name: str, cache_dir: Path) -> bytes:
    if name == "pydoc-topics":
        return pydoc_topics_text()
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir / f"pydoc-{version}.txt"
    if path.exists():
        return path.read_bytes()
    data = pydoc_topics_text() + b"\n" + stdlib_docstrings_text()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError:
        pass  # a read-only install still works, just slower each time
    return data


# ---- downloads -----------------------------------------------------------------------


def download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> Path:
    """Download `url` to `dest` and check its SHA-256; a mismatching file is not kept."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except (urllib.error.URLError, OSError) as e:
        raise ConnectionError(
            f"could not download {url} ({e}). Offline? Download that file by other means and put "
            f"it at {dest} (SHA-256 {sha256})."
        ) from e
    got = hashlib.sha256(data).hexdigest()
    if got != sha256:
        raise ValueError(
            f"checksum mismatch for {url}: expected SHA-256 {sha256}, got {got}; "
            "the file was not kept"
        )
    atomic_write_bytes(dest, data)
    return dest


def _remote(name: str, cache_dir: Path, url: str | None) -> Path:
    spec = REMOTE_CORPORA[name]
    path = cache_dir / spec.filename
    if path.exists():
        got = hashlib.sha256(path.read_bytes()).hexdigest()
        if got == spec.sha256:
            return path
        raise ValueError(
            f"{path} exists but its SHA-256 is {got}, not {spec.sha256}; "
            "delete it to download again"
        )
    return download(url or spec.url, path, spec.sha256)


# ---- loading -------------------------------------------------------------------------


def _read_path(path: Path) -> np.ndarray | bytes:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise ValueError(f"folder {path} holds no files")
        return b"\n".join(p.read_bytes() for p in files)
    if path.stat().st_size > MEMMAP_THRESHOLD:
        return np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: never touches the file
    return path.read_bytes()


def load_corpus(
    source: str | os.PathLike = "pydoc",
    cache_dir: str | os.PathLike | None = None,
    url: str | None = None,
) -> torch.Tensor:
    """Load a corpus as a 1-D uint8 tensor of bytes.

    `source` is "pydoc" (default), "pydoc-topics", "tinyshakespeare", or a path to a file or
    folder. `url` overrides the download address of a remote corpus (tests point it at a
    local server). Large files are memory-mapped rather than read.
    """
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    name = str(source)
    if name in EMBEDDED:
        data: np.ndarray | bytes = _embedded(name, cache)
    elif name in REMOTE_CORPORA:
        data = _read_path(_remote(name, cache, url))
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise FileNotFoundError(
                f"corpus {name!r} is neither a file nor a folder nor a known corpus "
                f"({', '.join(EMBEDDED + tuple(REMOTE_CORPORA))})"
            )
        data = _read_path(path)
    if len(data) == 0:
        raise ValueError(f"corpus {name!r} is empty")
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data)  # shares the memory map
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def split(data: torch.Tensor, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val): the last `val_fraction` of the bytes is validation."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n_val = int(len(data) * val_fraction)
    if n_val == 0 or n_val == len(data):
        raise ValueError(f"corpus of {len(data)} bytes is too small to split")
    return data[: len(data) - n_val], data[len(data) - n_val :]


class Batcher:
    """Random crops of `seq_len` bytes from a 1-D uint8 tensor, as (B, T) int64.

    Uses its own `torch.Generator`, whose state is the "data position" a checkpoint saves:
    restoring it replays exactly the same batches.
    """

    def __init__(self, data: torch.Tensor, seq_len: int, batch_size: int, seed: int = 0):
        if len(data) < seq_len + 1:
            raise ValueError(
                f"corpus split of {len(data)} bytes is shorter than one training sequence "
                f"(seq_len={seq_len}); use a larger corpus or a smaller seq_len"
            )
        self.data, self.seq_len, self.batch_size = data, seq_len, batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self):
        return self

    def __next__(self) -> torch.Tensor:
        starts = torch.randint(
            0, len(self.data) - self.seq_len + 1, (self.batch_size,), generator=self.generator
        )
        idx = starts[:, None] + torch.arange(self.seq_len)  # (B, T)
        return self.data[idx].long()

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


# ---- shaping batches -----------------------------------------------------------------


def random_length(x0: torch.Tensor, frac: float, generator: torch.Generator) -> torch.Tensor:
    """With probability `frac`, cut the batch (B, T) to a random length in min(16, T)..T.

    A model trained only on full windows has never seen a short sequence; at sampling time
    a short prompt plus answer is exactly that. LLaDA trains 1% of its data at random
    lengths for this reason. Draws nothing when frac == 0.
    """
    if frac <= 0 or float(torch.rand(1, generator=generator)) >= frac:
        return x0
    T = x0.shape[1]
    length = int(torch.randint(min(16, T), T + 1, (1,), generator=generator))
    return x0[:, :length]


def chunks(data: torch.Tensor, seq_len: int, max_chunks: int | None = None) -> torch.Tensor:
    """Consecutive windows of `seq_len` bytes, (N, seq_len) int64, for evaluation.

    With `max_chunks`, that many windows evenly spaced over the data (a partial evaluation
    that still covers the whole split); otherwise every whole window.
    """
    n = len(data) // seq_len
    if n == 0:
        raise ValueError(f"need at least {seq_len} bytes to evaluate, got {len(data)}")
    if max_chunks is not None and n > max_chunks:
        starts = torch.linspace(0, (n - 1) * seq_len, max_chunks).long()
    else:
        starts = torch.arange(n) * seq_len
    return torch.stack([data[s : s + seq_len] for s in starts.tolist()]).long()
