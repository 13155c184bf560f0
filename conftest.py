"""Test-run isolation: the notebooks' kernels and every tool write into a scratch folder.

nbval starts a Jupyter kernel per notebook; matplotlib, IPython, Jupyter and torch.compile
write caches and config under HOME and TMPDIR. Point all of them at a temporary folder so that
a test run leaves nothing in the user's home.
"""

import os
import tempfile

_SCRATCH = tempfile.mkdtemp(prefix="ddlm-tests-")


def pytest_configure(config):
    home = os.path.join(_SCRATCH, "home")
    os.makedirs(home, exist_ok=True)
    for var, sub in {
        "HOME": "home",
        "TMPDIR": "tmp",
        "IPYTHONDIR": "ipython",
        "JUPYTER_CONFIG_DIR": "jupyter/config",
        "JUPYTER_DATA_DIR": "jupyter/data",
        "JUPYTER_RUNTIME_DIR": "jupyter/runtime",
        "MPLCONFIGDIR": "matplotlib",
    }.items():
        path = os.path.join(_SCRATCH, sub)
        os.makedirs(path, exist_ok=True)
        os.environ[var] = path
    tempfile.tempdir = None  # re-read TMPDIR


def pytest_collection_modifyitems(config, items):
    # Notebooks (nbval) and the browser tests take minutes: they belong to the slow set that
    # CI runs and `pytest -m "not slow"` leaves out.
    import pytest

    for item in items:
        path = str(item.path)
        if path.endswith(".ipynb") or f"{os.sep}browser{os.sep}" in path:
            item.add_marker(pytest.mark.slow)
