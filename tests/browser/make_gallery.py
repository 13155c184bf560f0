"""Make the README's gallery: run the browser test of 00_overview and keep its screenshots.

    python tests/browser/make_gallery.py        # writes data/gallery/player-step{08,12,32}.png

Needs what the browser tests need (Debian's chromium and the playwright package).
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if __name__ == "__main__":
    env = {**os.environ, "DDLM_SCREENSHOTS": str(ROOT / "data" / "gallery")}
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-o",
        "addopts=",
        "tests/browser",
        "-k",
        "overview",
    ]
    raise SystemExit(subprocess.call(cmd, cwd=ROOT, env=env))
