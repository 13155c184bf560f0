"""The findings experiments: every script runs (in --quick mode, seconds) and writes the JSON
the notebook reads; the committed results are full runs of the scripts as committed at the
revision each records (`git log <revision>.. -- experiments/ ddlm/` shows what changed since)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted((ROOT / "experiments").glob("e[0-9]_*.py"))
# Measurements beside the nine findings, read by notebook 10 as well: E6b, the rates E6's
# micro diffusion model learns first.
ALL = [*SCRIPTS, ROOT / "experiments" / "e6b_rates.py"]
FINDINGS = ROOT / "data" / "findings"


def test_nine_experiments():
    assert [p.stem.split("_")[0] for p in SCRIPTS] == [f"e{i}" for i in range(1, 10)]


# The shipped models each script loads (their weights' SHA-256 is part of its provenance).
SHIPPED = {"e4_prompt_ratio": ("tiny-ar",), "e5_steps": ("tiny", "tiny-ar")}
SHIPPED["e6_diffusion_vs_ar"] = ("tiny", "tiny-ar")


@pytest.mark.slow
@pytest.mark.parametrize("script", ALL, ids=lambda p: p.stem)
def test_quick_run_writes_json(script, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    cmd = [sys.executable, str(script), "--quick", "--out", str(out), "--cache", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / f"{script.stem}.json").read_text())
    assert result["experiment"] == script.stem and result["quick"] is True
    assert result["runtime_s"] > 0 and result["machine"]["torch"]
    _check_provenance(result["provenance"], script, check_revision=True)
    if script.stem == "e2_activations":  # a second run reuses the cached models
        again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert again.stdout.count("cached run") == 3 and "trained " not in again.stdout


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], capture_output=True, cwd=ROOT)


def _sha_at(revision: str | None, path: Path) -> str:
    """SHA-256 of `path` as it is now (revision None) or as committed at `revision`."""
    import hashlib

    if revision is None:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    shown = _git("show", f"{revision}:{path.relative_to(ROOT).as_posix()}")
    assert shown.returncode == 0, f"cannot read {path.name} at {revision}: {shown.stderr!r}"
    return hashlib.sha256(shown.stdout).hexdigest()


def _check_provenance(p: dict, script: Path, check_revision: bool = False) -> None:
    """The recorded provenance is the facts, recomputed here, not what the script says: the
    script and the shared module are the ones committed at the recorded revision (for a fresh
    run, the ones on disk), the corpus is this Python's, and the shipped weights the script
    used are the shipped ones."""
    import hashlib

    from ddlm.data import load_corpus
    from ddlm.provenance import package_sha256

    corpus = load_corpus("pydoc").numpy().tobytes()
    if check_revision:  # a fresh run knows the revision it ran at; a committed one predates it
        assert p["git_revision"] == _git("rev-parse", "HEAD").stdout.decode().strip()
        assert p["ddlm_sha256"] == package_sha256()
        at = None
    else:
        assert p["git_revision"] and not p["git_dirty"], (
            "a committed result must come from a clean checkout"
        )
        ancestor = _git("merge-base", "--is-ancestor", p["git_revision"], "HEAD")
        assert ancestor.returncode == 0, f"{p['git_revision']} is not in this checkout's history"
        at = p["git_revision"]
    assert p["script_sha256"] == _sha_at(at, script), f"{script.name} is not the one that ran"
    assert p["common_sha256"] == _sha_at(at, script.parent / "common.py"), "common.py differs"
    assert p["corpus_sha256"] == hashlib.sha256(corpus).hexdigest()
    assert p["corpus_bytes"] == len(corpus)
    shipped = SHIPPED.get(script.stem, ())
    assert sorted(p["weights_sha256"]) == sorted(shipped)
    for name in shipped:
        weights = ROOT / "data" / "checkpoints" / name / "model.safetensors"
        assert p["weights_sha256"][name] == _sha_at(None, weights), f"{name} was re-shipped since"


@pytest.mark.parametrize("script", ALL, ids=lambda p: p.stem)
def test_committed_result_is_a_full_run(script):
    path = FINDINGS / f"{script.stem}.json"
    assert path.exists(), f"run `python experiments/{script.name}` and commit {path.name}"
    result = json.loads(path.read_text())
    assert result["quick"] is False
    assert result["command"].startswith(f"python experiments/{script.name}")
    assert result["runtime_s"] > 0 and result["machine"]["cores"]
    _check_provenance(result["provenance"], script)


def test_mcnemar_counts_only_the_disagreements():
    sys.path.insert(0, str(ROOT / "experiments"))
    from common import mcnemar

    first = [True] * 10 + [False] * 2 + [True] * 30 + [False] * 50  # 80 items agree
    second = [False] * 10 + [True] * 2 + [True] * 30 + [False] * 50
    r = mcnemar(first, second)
    assert (r["only_first"], r["only_second"]) == (10, 2)
    # 2 * P(Binomial(12, 1/2) <= 2) = 2 * (1 + 12 + 66) / 4096
    assert r["p_two_sided"] == pytest.approx(2 * 79 / 4096)
    assert mcnemar(first, first)["p_two_sided"] == 1.0
    assert mcnemar(second, first)["p_two_sided"] == r["p_two_sided"]


def _load(name: str) -> dict:
    return json.loads((FINDINGS / f"{name}.json").read_text())


def test_the_findings_compare_like_with_like():
    """What notebook 10 takes for granted when it sets results side by side."""
    runs = {e: _load(e)["runs"] for e in ("e2_activations", "e3_attention", "e4_prompt_ratio")}
    runs["e7_data_constrained"] = _load("e7_data_constrained")["runs"]
    runs["e9_partial_masking"] = _load("e9_partial_masking")["runs"]
    steps = {"e7_data_constrained": 2000, "e9_partial_masking": 2000}
    for e, by_name in runs.items():  # the micro model and recipe
        for r in (r for rs in by_name.values() for r in rs):
            m, t = r["model"], r["train"]
            got = (m["dim"], m["n_layers"], t["batch_size"], t["seq_len"], t["steps"])
            assert got == (128, 4, 16, 128, steps.get(e, 1600)), e
    # E2′ repeats E2's models, recipes and seeds; E3's baseline is E2′'s Mish runs, every field
    rep = json.loads((FINDINGS / "replications" / "e2_activations_07d2d2f.json").read_text())
    for act, rs in runs["e2_activations"].items():
        assert all(
            a["model"] == b["model"] and a["train"] == b["train"]
            for a, b in zip(rs, rep["runs"][act], strict=True)
        )
    e3 = _load("e3_attention")
    assert e3["runs"][e3["base"]] == rep["runs"]["mish"]
    # E8 trains every size on the same batches; E2's runs share one evaluation recipe
    e8 = _load("e8_scaling")["runs"]
    shapes = {
        (r["train"]["batch_size"], r["train"]["seq_len"])
        for v in e8.values()
        for rs in v.values()
        for r in rs
    }
    assert shapes == {(16, 128)}
    e2 = [r for rs in runs["e2_activations"].values() for r in rs]
    assert len({(r["train"]["eval_batches"], r["val_bits"]["n_samples"]) for r in e2}) == 1
    # E9's whole-bytes arm is E7's diffusion arm; E9 records four fields E7 lacks, at plain values
    new = {
        "model": {"subtokens": 1, "subtoken_embedding": "sum"},
        "train": {"weighting": "elbo", "fuse": False},
    }
    for a, b in zip(
        runs["e7_data_constrained"]["diffusion"],
        runs["e9_partial_masking"]["whole bytes"],
        strict=True,
    ):
        for k, fields in new.items():
            assert {**a[k], **fields} == b[k]


def test_findings_ran_from_clean_trees_in_order():
    results = [_load(p.stem) for p in ALL]
    assert not any(r["provenance"]["git_dirty"] for r in results)
    rep = json.loads((FINDINGS / "replications" / "e2_activations_07d2d2f.json").read_text())
    older, newer = (
        rep["provenance"]["git_revision"],
        _load("e2_activations")["provenance"]["git_revision"],
    )
    if subprocess.run(["git", "cat-file", "-e", older], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("no git history here")
    ancestor = ["git", "merge-base", "--is-ancestor", older, newer]
    assert subprocess.run(ancestor, cwd=ROOT, capture_output=True).returncode == 0


def test_rerun_repeats_the_recorded_command(monkeypatch):
    sys.path.insert(0, str(ROOT / "experiments"))
    import common

    calls = []
    monkeypatch.setattr(common.subprocess, "run", lambda cmd, check: calls.append(cmd))
    for name in ("e2_activations", "e8_scaling"):
        common.rerun(name)
        made = _load(name)
        cmd = calls[-1]
        assert cmd[1] == str(ROOT / "experiments" / f"{name}.py") and "--out" not in cmd
        assert cmd[2:4] == ["--jobs", "2"]  # the recorded options, less --out and its folder
        assert ("--minutes" in cmd) == ("minutes_per_run" in made)
