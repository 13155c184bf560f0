"""The committed notebooks are executed, clean, and check their facts (nbval runs them)."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted(
    (Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")
)


def test_series_is_numbered_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers == list(range(len(numbers))) and len(numbers) >= 1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_executed_and_clean(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"], "saved widget state: run notebooks/run_all.py"
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    # What JupyterLab writes when the kernel starts; anything less marks the notebook modified
    # the moment it opens (tests/browser checks that it does not).
    assert nb["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    assert {"version", "mimetype", "codemirror_mode"} <= set(nb["metadata"]["language_info"])
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    counts = [c["execution_count"] for c in code]
    assert all(counts), "cells without outputs: re-execute with notebooks/run_all.py"
    assert counts == list(range(1, len(code) + 1)), "executed out of order"
    checked = [c for c in code if "# NBVAL_CHECK_OUTPUT" in "".join(c["source"])]
    assert len(checked) >= 2, "deterministic facts should carry NBVAL_CHECK_OUTPUT"
    for c in checked:
        assert c["outputs"], "a checked cell must have a stored output to compare with"
    errors = [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors
    assert any("assert" in "".join(c["source"]) for c in code), "sections end in assertions"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_have_worked_solutions_that_were_executed(path):
    solutions = path.parent / "solutions" / f"{path.name[:2]}_solutions.ipynb"
    text = path.read_text()
    assert f"solutions/{solutions.name}" in text, "the Exercises section links its solutions"
    nb = json.loads(solutions.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["execution_count"] for c in code), "run notebooks/run_all.py solutions/"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert any("assert" in "".join(c["source"]) for c in code), "each solution checks its answer"
