"""The findings experiments: every script runs (in --quick mode, seconds) and writes the JSON
the notebook reads; the committed results are full runs of the committed scripts."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "experiments").glob("e[0-9]_*.py"))
FINDINGS = ROOT / "data" / "findings"


def test_six_experiments():
    assert [p.stem.split("_")[0] for p in SCRIPTS] == ["e1", "e2", "e3", "e4", "e5", "e6"]


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_quick_run_writes_json(script, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, str(script), "--quick", "--out", str(out), "--cache", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / f"{script.stem}.json").read_text())
    assert result["experiment"] == script.stem and result["quick"] is True
    assert result["runtime_s"] > 0 and result["machine"]["torch"]
    _check_provenance(result["provenance"], script)
    if script.stem == "e2_activations":  # a second run reuses the cached models
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stdout.count("cached run") == 3 and "trained " not in again.stdout


def _check_provenance(p: dict, script: Path) -> None:
    """The recorded provenance is the facts, recomputed here, not what the script says."""
    import hashlib

    from ddlm.data import load_corpus

    corpus = load_corpus("pydoc").numpy().tobytes()
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    assert p["git_revision"] == head.stdout.strip()
    assert p["script_sha256"] == hashlib.sha256(script.read_bytes()).hexdigest()
    assert p["corpus_sha256"] == hashlib.sha256(corpus).hexdigest()
    assert p["corpus_bytes"] == len(corpus)
    for name in ("tiny", "tiny-ar"):
        weights = ROOT / "data" / "checkpoints" / name / "model.safetensors"
        assert p["weights_sha256"][name] == hashlib.sha256(weights.read_bytes()).hexdigest()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_committed_result_is_a_full_run(script):
    path = FINDINGS / f"{script.stem}.json"
    assert path.exists(), f"run `python experiments/{script.name}` and commit {path.name}"
    result = json.loads(path.read_text())
    assert result["quick"] is False
    assert result["command"].startswith(f"python experiments/{script.name}")
    assert result["runtime_s"] > 0 and result["machine"]["cores"]
