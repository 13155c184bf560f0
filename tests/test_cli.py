import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from ddlm.cli import main

SMALL = [
    "--dim",
    "32",
    "--layers",
    "2",
    "--heads",
    "4",
    "--kv-latent-dim",
    "16",
    "--max-seq-len",
    "64",
]
FAST = [
    "--batch-size",
    "2",
    "--seq-len",
    "32",
    "--eval-every",
    "0",
    "--sample-every",
    "0",
    "--amp",
    "off",
    "--device",
    "cpu",
]


def train(out, *extra):
    return main(["train", "--data", "pydoc-topics", "--out", str(out), *SMALL, *FAST, *extra])


def test_train_eval_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "4") == 0
    assert json.loads((out / "config.json").read_text())["dim"] == 32
    assert (
        main(["train", "--data", "pydoc-topics", "--out", str(out), "--steps", "6", "--resume"])
        == 0
    )
    assert json.loads((out / "train_state.json").read_text())["step"] == 6
    capsys.readouterr()
    # Already complete: says so, exits 0.
    assert (
        main(["train", "--data", "pydoc-topics", "--out", str(out), "--steps", "6", "--resume"])
        == 0
    )
    assert "already reached step 6" in capsys.readouterr().out
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(out),
                "--data",
                "pydoc-topics",
                "--json",
                "--seq-len",
                "32",
                "--max-chunks",
                "4",
                "--samples",
                "2",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"bits_per_byte", "stderr", "arch", "n_bytes"} <= set(result)
    assert (
        result["arch"] == "diffusion"
        and result["n_bytes"] == 4 * 32
        and result["bits_per_byte"] > 0
    )


def test_ar_arch_and_exact_eval(tmp_path, capsys):
    out = tmp_path / "ar"
    assert train(out, "--steps", "2", "--arch", "ar") == 0
    assert json.loads((out / "config.json").read_text())["causal"] is True
    capsys.readouterr()
    main(
        [
            "eval",
            "--checkpoint",
            str(out),
            "--data",
            "pydoc-topics",
            "--json",
            "--seq-len",
            "32",
            "--max-chunks",
            "3",
        ]
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["arch"] == "ar" and result["stderr"] == 0.0 and result["n_bytes"] == 3 * 32


def test_resume_refuses_model_changes(tmp_path):
    out = tmp_path / "run"
    train(out, "--steps", "2")
    with pytest.raises(SystemExit, match="model options"):
        main(
            [
                "train",
                "--data",
                "pydoc-topics",
                "--out",
                str(out),
                "--steps",
                "4",
                "--resume",
                "--dim",
                "64",
            ]
        )
    with pytest.raises(SystemExit, match="no run"):
        main(["train", "--data", "pydoc-topics", "--out", str(tmp_path / "none"), "--resume"])


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--out", "x", "--bogus"],
        ["train", "--out", "x", "--steps", "many"],
        ["train", "--out", "x", "--amp", "fp8"],
        ["sample", "--prompt", "a", "--strategy", "sideways"],
        ["nope"],
    ],
)
def test_bad_usage_exits_nonzero_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_bad_values_are_reported(tmp_path, capsys):
    assert train(tmp_path / "r", "--steps", "2", "--amp", "fp16") == 1
    assert "CUDA" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r2")]) == 1


def test_help_everywhere(capsys):
    for cmd in (
        ["--help"],
        ["train", "--help"],
        ["eval", "--help"],
        ["sample", "--help"],
        ["infill", "--help"],
    ):
        with pytest.raises(SystemExit) as e:
            main(cmd)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--kv-latent-dim" in out and "--warmup-steps" in out and "--layers" in out


def test_sample_and_infill_from_shipped_checkpoint(capsys):
    assert (
        main(
            [
                "sample",
                "--checkpoint",
                "tiny",
                "--prompt",
                "The ",
                "--length",
                "8",
                "--steps",
                "4",
                "--show-steps",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "[  1/4]" in out and "\u2588" in out and "4 network evaluations" in out
    assert main(["infill", "--checkpoint", "tiny", "--text", "The \u2588\u2588\u2588 of"]) == 0
    filled = capsys.readouterr().out.strip()
    assert filled.startswith("The ") and filled.endswith(" of") and "\u2588" not in filled


def test_sigterm_saves_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "ddlm",
        "train",
        "--data",
        "pydoc-topics",
        "--out",
        str(out),
        *SMALL,
        *FAST,
        "--steps",
        "100000",
        "--ckpt-every",
        "0",
        "--log-every",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "metrics.jsonl").exists():
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert "saving a checkpoint" in err
    state = json.loads((out / "train_state.json").read_text())
    assert state["step"] >= 1


def test_python_dash_m_version():
    r = subprocess.run(
        [sys.executable, "-m", "ddlm", "--version"], capture_output=True, text=True, env=os.environ
    )
    assert r.returncode == 0 and r.stdout.startswith("ddlm ")


def test_init_from_fine_tunes_given_weights(tmp_path):
    from ddlm.checkpoint import from_pretrained

    base = tmp_path / "base"
    train(base, "--steps", "3")
    # A learning rate of ~0 leaves the weights where --init-from put them.
    out = tmp_path / "ft"
    assert (
        main(
            ["train", "--data", "pydoc-topics", "--out", str(out), "--init-from", str(base)]
            + FAST
            + ["--steps", "1", "--lr", "1e-12", "--warmup-steps", "0"]
        )
        == 0
    )
    a, b = from_pretrained(base).state_dict(), from_pretrained(out).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    fresh = tmp_path / "fresh"
    train(fresh, "--steps", "1", "--lr", "1e-12", "--warmup-steps", "0")
    c = from_pretrained(fresh).state_dict()
    assert not all(torch.allclose(a[k], c[k], atol=1e-6) for k in a)
    with pytest.raises(SystemExit, match="model config from the checkpoint"):
        main(["train", "--out", str(tmp_path / "x"), "--init-from", str(base), "--dim", "64"])
    with pytest.raises(SystemExit, match="--init-from"):
        main(["train", "--out", str(tmp_path / "y"), "--init-from", str(tmp_path / "missing")])
