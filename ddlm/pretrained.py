"""The small checkpoints shipped with the project, by name.

`load_pretrained("tiny")` loads `data/checkpoints/tiny/` (a diffusion model trained on the
embedded corpus) and `load_pretrained("tiny-ar")` its autoregressive twin. Any other
argument is taken as a directory holding config.json and model.safetensors (a run
directory works). The shipped files live in the repository's `data/` folder, so they are
found from an editable install (`pip install -e .`) or a checkout on `sys.path`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .checkpoint import CheckpointError, from_pretrained
from .data import DATA_DIR
from .model import DiffusionLM

CHECKPOINT_DIR = DATA_DIR / "checkpoints"
SHIPPED = ("tiny", "tiny-ar")


def load_pretrained(
    name_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> DiffusionLM:
    """A shipped model by name ("tiny", "tiny-ar") or any model directory; in eval mode."""
    name = str(name_or_dir)
    if name in SHIPPED:
        path = CHECKPOINT_DIR / name
        if not path.is_dir():
            raise CheckpointError(
                f"shipped checkpoint {name!r} not found at {path}; it comes with a checkout of the "
                "repository (install with `pip install -e .` from the checkout)"
            )
    else:
        path = Path(name).expanduser()
        if not path.exists():
            raise CheckpointError(
                f"{name!r} is neither a shipped checkpoint ({', '.join(SHIPPED)}) nor a directory"
            )
    return from_pretrained(path, map_location=map_location).eval()
