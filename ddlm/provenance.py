"""What code a result came from: the git revision, whether the checkout was dirty, and a hash
of the package sources that ran.

A revision alone does not say which package code produced a number: a result made from a
dirty checkout, or read long after the package changed, needs the code itself pinned. Every
findings experiment (`experiments/common.py`) and every bench script that writes JSON records
`code_provenance()`, so a result can be matched with the code it ran on, and
`git log <revision>.. -- ddlm/` lists what changed in the package since.

`ddlm_sha256` can be recomputed from a shell, in the folder that holds the package:

    cd ddlm && find . -name '*.py' -not -path '*/__pycache__/*' | sed 's|^\\./||' \\
        | LC_ALL=C sort | xargs sha256sum | sha256sum
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


def package_sha256(root: Path = PACKAGE) -> str:
    """SHA-256 over the package's sources: over the lines `sha256(file)  relative/path` of
    every .py file under `root` (caches excluded), in byte order of their paths, the format
    and order `sha256sum` prints them in."""
    files = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "__pycache__" not in p.relative_to(root).parts
    )
    listing = "".join(
        f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n" for name in files
    )
    return hashlib.sha256(listing.encode()).hexdigest()


def _git(*args: str, cwd: Path) -> str | None:
    try:
        run = subprocess.run(["git", *args], capture_output=True, text=True, cwd=cwd)
    except OSError:  # no git on this machine
        return None
    return run.stdout.strip() if run.returncode == 0 else None


def code_provenance(root: Path = PACKAGE) -> dict:
    """{"git_revision", "git_dirty", "ddlm_sha256"} for the package at `root` (the imported one).

    git_revision is the commit checked out in the repository holding the package and
    git_dirty whether tracked files differ from it (None for both outside a git checkout);
    ddlm_sha256 is `package_sha256(root)`, what the package's sources were, dirty or not.
    """
    revision = _git("rev-parse", "HEAD", cwd=root)
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    return {
        "git_revision": revision,
        "git_dirty": None if revision is None or status is None else bool(status),
        "ddlm_sha256": package_sha256(root),
    }
