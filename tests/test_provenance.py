"""`code_provenance`, what every findings and bench JSON records about the code it ran on."""

import hashlib
import shutil
import subprocess
from pathlib import Path

from ddlm.provenance import PACKAGE, code_provenance, package_sha256

ROOT = Path(__file__).resolve().parent.parent


def test_code_provenance_records_revision_dirty_flag_and_package_hash():
    p = code_provenance()
    assert sorted(p) == ["ddlm_sha256", "git_dirty", "git_revision"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    assert p["git_revision"] == head.stdout.strip() and len(p["git_revision"]) == 40
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert p["git_dirty"] is bool(status.stdout.strip())
    assert p["ddlm_sha256"] == package_sha256() and PACKAGE == ROOT / "ddlm"


def test_package_hash_is_sha256sum_of_the_sources_and_sees_every_change(tmp_path):
    copy = tmp_path / "ddlm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    # Recomputed independently: `sha256sum` lines of every .py file, sorted by name.
    names = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert names and not [p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE]
    lines = "".join(
        f"{hashlib.sha256((PACKAGE / n).read_bytes()).hexdigest()}  {n}\n" for n in names
    )
    assert package_sha256(copy) == hashlib.sha256(lines.encode()).hexdigest()
    assert package_sha256(copy) == package_sha256()
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.py").write_text("# a cache is not source\n")
    assert package_sha256(copy) == package_sha256()
    model = copy / "model.py"
    model.write_bytes(model.read_bytes() + b"\n")
    assert package_sha256(copy) != package_sha256()
    (copy / "new.py").write_text("")
    model.write_bytes((PACKAGE / "model.py").read_bytes())
    assert package_sha256(copy) != package_sha256()  # a new file counts too


def test_outside_a_git_checkout_the_revision_is_none(tmp_path):
    copy = tmp_path / "ddlm"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    p = code_provenance(copy)
    assert p["git_revision"] is None and p["git_dirty"] is None
    assert p["ddlm_sha256"] == package_sha256()
