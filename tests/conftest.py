import os

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield


@pytest.fixture
def small_corpus() -> torch.Tensor:
    from ddlm.data import load_corpus

    return load_corpus("pydoc-topics")


@pytest.fixture(autouse=True)
def _scratch_tmp(tmp_path_factory, monkeypatch):
    # torch.compile and torchrun write under TMPDIR; keep them inside pytest's folder.
    monkeypatch.setenv("TMPDIR", str(tmp_path_factory.getbasetemp()))
    os.environ.setdefault("DDLM_TEST", "1")
    yield
