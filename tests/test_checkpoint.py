import json

import pytest
import torch
from helpers import fast_config, tiny_config, tiny_model

import ddlm
from ddlm import checkpoint
from ddlm.files import CheckpointError, load_tensors, save_tensors
from ddlm.train import TrainConfig, Trainer

from_pretrained = ddlm.DiffusionLM.from_pretrained


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


def test_shipped_names_and_directories_share_one_loader(tmp_path):
    shipped = ddlm.DiffusionLM.from_pretrained("tiny")
    shipped.save_pretrained(tmp_path / "copy")
    again = ddlm.load_pretrained(tmp_path / "copy")  # the alias is the same loader
    assert again.config == shipped.config and not again.training
    for a, b in zip(shipped.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match="neither a shipped checkpoint"):
        from_pretrained("tiny-but-misspelt")


def _cfg(steps: int) -> TrainConfig:
    return fast_config(
        steps=steps, batch_size=2, seq_len=16, log_every=1, eval_batches=1, warmup_steps=1
    )


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, not even `except Exception` handlers."""


def test_a_kill_at_any_write_of_a_checkpoint_leaves_a_run_that_resumes_exactly(
    tmp_path, small_corpus, monkeypatch
):
    import os
    import shutil

    straight = Trainer(tiny_model(), _cfg(4), small_corpus, out_dir=tmp_path / "s", progress=False)
    straight.fit()
    base = tmp_path / "base"
    Trainer(tiny_model(), _cfg(2), small_corpus, out_dir=base, progress=False).fit()
    real_replace, real_save = os.replace, checkpoint.RunDir.save
    renames_in_one_save = None
    for k in range(10):
        run = tmp_path / f"kill-at-{k}"
        shutil.copytree(base, run)
        calls = []

        def replace(src, dst, k=k, calls=calls):
            if len(calls) == k:
                raise Killed
            calls.append(dst)
            real_replace(src, dst)

        def save(*a, **kw):
            monkeypatch.setattr(os, "replace", replace)
            try:
                real_save(*a, **kw)
            finally:
                monkeypatch.setattr(os, "replace", real_replace)

        monkeypatch.setattr(checkpoint.RunDir, "save", save)
        t = Trainer(tiny_model(), _cfg(4), small_corpus, out_dir=run, resume=True, progress=False)
        killed = False
        try:
            t.fit()
        except Killed:
            killed = True
        monkeypatch.setattr(checkpoint.RunDir, "save", real_save)
        resumed = Trainer(
            tiny_model(), _cfg(4), small_corpus, out_dir=run, resume=True, progress=False
        )
        assert resumed.step in (2, 4), (k, resumed.step)
        assert ddlm.DiffusionLM.from_pretrained(run).config == tiny_config()
        resumed.fit()
        for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()):
            assert torch.equal(a, b), f"kill before rename {k}"
        if not killed:
            renames_in_one_save = k
            break
    # Every rename of a save was interrupted once: the step folder's three files, the
    # pointer, and the exported config.json and model.safetensors.
    assert renames_in_one_save == 6


def test_a_save_keeps_one_step_folder_and_the_pointer_names_it(tmp_path, small_corpus):
    cfg = TrainConfig(**{**_cfg(4).to_dict(), "ckpt_every": 2})
    Trainer(tiny_model(), cfg, small_corpus, out_dir=tmp_path, progress=False).fit()
    folders = sorted(p.name for p in tmp_path.glob("step-*"))
    assert folders == ["step-00000004"]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["folder"] == folders[0]
    assert checkpoint.read_state(tmp_path)["step"] == 4


# ---- weight averaging ------------------------------------------------------------------


def _saved(tmp_path, name, seed, **config):
    torch.manual_seed(seed)
    model = ddlm.DiffusionLM(tiny_config(**config))
    model.save_pretrained(tmp_path / name)
    return model


def test_average_is_the_elementwise_mean_and_loads_as_a_model(tmp_path):
    from ddlm.averaging import average_checkpoints

    a, b, c = (_saved(tmp_path, n, s) for n, s in (("a", 0), ("b", 1), ("c", 2)))
    mean = average_checkpoints([tmp_path / "a", tmp_path / "b", tmp_path / "c"])
    for name, value in mean.state_dict().items():
        want = (a.state_dict()[name] + b.state_dict()[name] + c.state_dict()[name]) / 3
        torch.testing.assert_close(value, want, rtol=1e-6, atol=1e-7)
    assert not mean.training
    # The mean of a model with itself is that model, bit for bit.
    same = average_checkpoints([tmp_path / "a", tmp_path / "a"])
    for name, value in same.state_dict().items():
        assert torch.equal(value, a.state_dict()[name]), name


def test_average_refuses_one_checkpoint_and_different_models(tmp_path):
    from ddlm.averaging import average_checkpoints

    _saved(tmp_path, "a", 0)
    _saved(tmp_path, "wide", 0, dim=48, n_heads=4)
    with pytest.raises(ValueError, match="at least two"):
        average_checkpoints([tmp_path / "a"])
    with pytest.raises(CheckpointError, match="different model config.*'dim': \\(32, 48\\)"):
        average_checkpoints([tmp_path / "a", tmp_path / "wide"])


def test_ddlm_average_writes_a_model_folder_with_its_sources(tmp_path, capsys):
    from ddlm.cli import main
    from ddlm.files import sha256_file

    _saved(tmp_path, "a", 0)
    _saved(tmp_path, "b", 1)
    out = tmp_path / "mean"
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 0
    record = json.loads((out / "average.json").read_text())
    assert [s["weights_sha256"] for s in record["sources"]] == [
        sha256_file(tmp_path / n / "model.safetensors") for n in ("a", "b")
    ]
    assert record["weights_sha256"] == sha256_file(out / "model.safetensors")
    from_pretrained(out)  # loads
    # An existing model is never overwritten.
    capsys.readouterr()
    assert main(["average", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out)]) == 1
    assert "exists" in capsys.readouterr().err
