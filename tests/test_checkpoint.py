import json

import pytest
import torch
from helpers import tiny_config

import ddlm
from ddlm.checkpoint import CheckpointError, from_pretrained, load_tensors, save_tensors


def test_round_trip(tmp_path):
    model = ddlm.DiffusionLM(tiny_config())
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
    ]
    again = ddlm.DiffusionLM.from_pretrained(tmp_path / "m")
    assert again.config == model.config
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_config_mismatch(tmp_path):
    ddlm.DiffusionLM(tiny_config()).save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match="differs"):
        from_pretrained(tmp_path, config=tiny_config(dim=64))
    # Weights that do not fit the stored config.
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["dim"] = 64
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        from_pretrained(tmp_path)


def test_truncated_and_corrupt_files(tmp_path):
    ddlm.DiffusionLM(tiny_config()).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        from_pretrained(tmp_path)
    weights.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError):
        from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="JSON"):
        from_pretrained(tmp_path)


def test_pickle_files_are_refused_without_reading(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("torch.load must never be called")

    monkeypatch.setattr(torch, "load", boom)
    for name in ("model.pt", "weights.bin", "x.pth"):
        path = tmp_path / name
        path.write_bytes(b"whatever")
        with pytest.raises(CheckpointError, match="pickle"):
            load_tensors(path)
        with pytest.raises(CheckpointError, match="pickle"):
            ddlm.load_pretrained(path)


def test_missing_directory():
    with pytest.raises(CheckpointError):
        ddlm.load_pretrained("/nonexistent/dir")


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, {"a": torch.ones(3)})

    class Boom(dict):
        def items(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        save_tensors(path, Boom())
    assert torch.equal(load_tensors(path)["a"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["t.safetensors"]  # no temp files left


@pytest.mark.parametrize("name", ["tiny", "tiny-ar"])
def test_shipped_checkpoints_load(name):
    model = ddlm.load_pretrained(name)
    assert model.config.causal == (name == "tiny-ar")
    assert not model.training
    ids = torch.randint(0, 256, (1, 16))
    assert model(ids).shape == (1, 16, 259)
