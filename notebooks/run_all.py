"""Re-execute the notebooks in place, top to bottom, and clean their metadata.

    python notebooks/run_all.py                 # all of them
    python notebooks/run_all.py 03 08           # those whose names start with 03 or 08
    python notebooks/run_all.py solutions/      # the worked solutions (solutions/NN_*.ipynb)

Outputs and execution counts are kept (nbval compares the checked cells against them); saved
widget state and per-cell execution metadata are removed, so diffs stay small.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent


def clean(nb) -> None:
    """Drop saved widget state and per-cell timings; keep the metadata JupyterLab would write.

    nbclient has stored the kernel's own `language_info`; the kernelspec gets the installed
    kernel's display name. Both are what JupyterLab writes when the kernel starts, so a notebook
    opened on the Python that executed it is not marked modified.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "display_name": KernelSpecManager().get_kernel_spec("python3").display_name,
        "language": "python",
        "name": "python3",
    }
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("widgets", None)


def run(path: Path, timeout: int = 600) -> float:
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    clean(nb)
    nbformat.write(nb, path)
    return time.perf_counter() - t0


def main(prefixes: list[str]) -> None:
    paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb")) + sorted(
        HERE.glob("solutions/[0-9][0-9]_*.ipynb")
    )
    names = {p: p.relative_to(HERE).as_posix() for p in paths}
    if prefixes:
        paths = [p for p in paths if any(names[p].startswith(x) for x in prefixes)]
    else:
        paths = [p for p in paths if p.parent == HERE]  # the series; solutions on request
    for p in paths:
        print(f"{names[p]}: {run(p):.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
