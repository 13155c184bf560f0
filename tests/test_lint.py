"""The repository passes its own linter and formatter (`[tool.ruff]` in pyproject.toml), the
notebooks included: a change that would need `ruff format` fails here, not in review."""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(args):
    ruff = pytest.importorskip("ruff")  # the dev extra installs it; CI uses the dev extra
    cmd = [ruff.find_ruff_bin(), *args, "--no-cache", str(ROOT)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}{done.stderr}"[-4000:]
