"""Make the README's gallery: run the browser tests and keep their screenshots.

    python tests/browser/make_gallery.py

writes data/gallery/: player-step{08,12,32}.png (00_overview's player in a 1400 px window),
player-900px.png (the same at 900 px), race-1400px.png (00's race player at 17 passes),
panel-1400px.png and panel-900px.png (08's sampler panel
after a generation).

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
    ]
    raise SystemExit(subprocess.call(cmd, cwd=ROOT, env=env))
