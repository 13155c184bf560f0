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

Shapes: corpora are 1-D uint8 tensors (int16 token ids with EOS between documents, when
asked for); batches are (B, T) int64.
"""

from __future__ import annotations

import ast
import hashlib
import json
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
from .likelihood import chunks as chunks  # re-exported: notebooks import it from here

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


def pydoc_topics_documents() -> list[bytes]:
    """CPython's `help()` topics, one document each, in sorted topic order."""
    from pydoc_data.topics import topics

    return [topics[k].strip().encode("utf-8") for k in sorted(topics)]


def pydoc_topics_text() -> bytes:
    """CPython's `help()` topics, in sorted topic order, separated by blank lines."""
    return b"\n\n".join(pydoc_topics_documents()) + b"\n"


_SKIP_DIRS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "ensurepip"}


def stdlib_docstrings_documents() -> list[bytes]:
    """The docstrings of the standard library's .py files, read with `ast` (never imported).

    One document per file that has any: its module, class and function docstrings in source
    order (`ast.walk`), separated by blank lines. Files are visited in sorted path order; test
    suites, IDLE, lib2to3, turtledemo, ensurepip and site-packages are left out, and so are
    docstrings of 40 characters or fewer (one-liners like "Return x.").
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    documents: list[bytes] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("__"))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            try:
                tree = ast.parse(Path(dirpath, name).read_bytes())
            except (SyntaxError, ValueError, OSError):
                continue
            parts = []
            for node in ast.walk(tree):
                if isinstance(
                    node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
                ):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) > 40:
                        parts.append(doc.strip())
            if parts:
                documents.append("\n\n".join(parts).encode("utf-8", errors="replace"))
    return documents


def stdlib_docstrings_text() -> bytes:
    """All of `stdlib_docstrings_documents`, separated by blank lines."""
    return b"\n\n".join(stdlib_docstrings_documents()) + b"\n"


def _embedded(name: str, cache_dir: Path) -> bytes:
    """The embedded corpus's bytes: its documents separated by blank lines (cached per Python)."""
    if name == "pydoc-topics":
        return pydoc_topics_text()
    text, _ = _pydoc_cached(cache_dir)
    return text


def _pydoc_cached(cache_dir: Path) -> tuple[bytes, list[int]]:
    """(the pydoc text, each document's length), built once per Python version and cached."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    path = cache_dir / f"pydoc-{version}.txt"
    lengths_path = cache_dir / f"pydoc-{version}.documents.json"
    if path.exists() and lengths_path.exists():
        return path.read_bytes(), json.loads(lengths_path.read_text())
    documents = pydoc_topics_documents() + stdlib_docstrings_documents()
    text = b"\n\n".join(documents) + b"\n"
    lengths = [len(d) for d in documents]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, text)
        atomic_write_bytes(lengths_path, json.dumps(lengths).encode())
    except OSError:
        pass  # a read-only install still works, just slower each time
    return text, lengths


def _documents(name: str, cache_dir: Path) -> list[bytes]:
    if name == "pydoc-topics":
        return pydoc_topics_documents()
    text, lengths = _pydoc_cached(cache_dir)
    starts = np.cumsum([0] + [n + 2 for n in lengths])  # each document, then a blank line
    return [text[s : s + n] for s, n in zip(starts.tolist(), lengths)]


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


def _folder_files(path: Path) -> list[Path]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ValueError(f"folder {path} holds no files")
    return files


def _read_path(path: Path) -> np.ndarray | bytes:
    if path.is_dir():
        return b"\n".join(p.read_bytes() for p in _folder_files(path))
    if path.stat().st_size > MEMMAP_THRESHOLD:
        return np.memmap(path, dtype=np.uint8, mode="c")  # copy-on-write: never touches the file
    return path.read_bytes()


def corpus_sha256(corpus: torch.Tensor) -> str:
    """SHA-256 of a corpus tensor: its bytes, or for a corpus with EOS (int16 ids) its
    little-endian int16 ids; what eval.json, train_config.json and the benches record."""
    raw = corpus.numpy().astype("<i2" if corpus.dtype == torch.int16 else "u1").tobytes()
    return hashlib.sha256(raw).hexdigest()


def load_corpus(
    source: str | os.PathLike = "pydoc",
    cache_dir: str | os.PathLike | None = None,
    url: str | None = None,
    eos: bool = False,
) -> torch.Tensor:
    """Load a corpus as a 1-D uint8 tensor of bytes.

    `source` is "pydoc" (default), "pydoc-topics", "tinyshakespeare", or a path to a file or
    folder. `url` overrides the download address of a remote corpus (tests point it at a
    local server). Large files are memory-mapped rather than read.

    With `eos=True` the corpus is a 1-D int16 tensor of token ids instead: its documents, each
    followed by EOS (see `with_eos`). A pydoc topic, a standard-library file's docstrings and a
    file of a folder are documents; a single file is one document.
    """
    cache = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    name = str(source)
    if eos:
        return with_eos(_load_documents(name, cache, url))
    if name in EMBEDDED:
        data: np.ndarray | bytes = _embedded(name, cache)
    elif name in REMOTE_CORPORA:
        data = _read_path(_remote(name, cache, url))
    else:
        data = _read_path(_local(name))
    if len(data) == 0:
        raise ValueError(f"corpus {name!r} is empty")
    if isinstance(data, np.ndarray):
        return torch.from_numpy(data)  # shares the memory map
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _local(name: str) -> Path:
    path = Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"corpus {name!r} is neither a file nor a folder nor a known corpus "
            f"({', '.join(EMBEDDED + tuple(REMOTE_CORPORA))})"
        )
    return path


def _load_documents(name: str, cache: Path, url: str | None) -> list[bytes]:
    if name in EMBEDDED:
        documents = _documents(name, cache)
    elif name in REMOTE_CORPORA:
        documents = [_remote(name, cache, url).read_bytes()]
    else:
        path = _local(name)
        files = _folder_files(path) if path.is_dir() else [path]
        documents = [p.read_bytes() for p in files]
    documents = [d for d in documents if d]
    if not documents:
        raise ValueError(f"corpus {name!r} is empty")
    return documents


def with_eos(documents: list[bytes]) -> torch.Tensor:
    """Token ids (int16) of `documents`, each followed by EOS: what a model learns to end on.

    The blank line (or newline) that separates documents in the plain corpus is replaced by
    the EOS, so the text between two EOS is exactly one document.
    """
    from .tokenizer import EOS_ID

    eos = torch.tensor([EOS_ID], dtype=torch.int16)
    parts = []
    for doc in documents:
        parts += [torch.frombuffer(bytearray(doc), dtype=torch.uint8).to(torch.int16), eos]
    return torch.cat(parts)


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
