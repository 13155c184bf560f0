import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from helpers import FAST_TRAIN_ARGS, SMALL_MODEL_ARGS, train_argv

from ddlm import DiffusionLM
from ddlm.checkpoint import read_state
from ddlm.cli import main

from_pretrained = DiffusionLM.from_pretrained


def train(out, *extra):
    return main(train_argv(out, *extra))


def run_cli(*args, check: bool = True) -> subprocess.CompletedProcess:
    """The installed command line, as a user runs it (`python -m ddlm ...`)."""
    r = subprocess.run(
        [sys.executable, "-m", "ddlm", *map(str, args)], capture_output=True, text=True, timeout=300
    )
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_train_eval_resume(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "4") == 0
    assert json.loads((out / "config.json").read_text())["dim"] == 32
    assert (
        main(["train", "--data", "pydoc-topics", "--out", str(out), "--steps", "6", "--resume"])
        == 0
    )
    assert read_state(out)["step"] == 6
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
    with pytest.raises(SystemExit, match="another model config"):
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
        ["average", "--help"],
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
    # Four steps, numbered 1-4; five evaluations (the default PMI ranking's prior is one).
    assert "[  1]" in out and "[  4]" in out and "[  5]" not in out and "\u2588" in out
    assert "5 network evaluations" in out
    assert main(["infill", "--checkpoint", "tiny", "--text", "The \u2588\u2588\u2588 of"]) == 0
    filled = capsys.readouterr().out.strip()
    assert filled.startswith("The ") and filled.endswith(" of") and "\u2588" not in filled


@pytest.mark.slow
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
        *SMALL_MODEL_ARGS,
        *FAST_TRAIN_ARGS,
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
    assert read_state(out)["step"] >= 1


def test_python_dash_m_version():
    r = subprocess.run(
        [sys.executable, "-m", "ddlm", "--version"], capture_output=True, text=True, env=os.environ
    )
    assert r.returncode == 0 and r.stdout.startswith("ddlm ")


def test_init_from_fine_tunes_given_weights(tmp_path):
    base = tmp_path / "base"
    train(base, "--steps", "3")
    # A learning rate of ~0 leaves the weights where --init-from put them.
    out = tmp_path / "ft"
    assert (
        main(
            ["train", "--data", "pydoc-topics", "--out", str(out), "--init-from", str(base)]
            + FAST_TRAIN_ARGS
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
    # --grow-layers: a deeper model that starts out computing what the base computes.
    deep = tmp_path / "deep"
    argv = ["train", "--data", "pydoc-topics", "--out", str(deep), "--init-from", str(base)]
    argv += FAST_TRAIN_ARGS + ["--steps", "1", "--lr", "1e-12", "--warmup-steps", "0"]
    assert main(argv + ["--grow-layers", "3"]) == 0
    grown, small = from_pretrained(deep), from_pretrained(base)
    assert grown.config.n_layers == 3 and small.config.n_layers == 2
    ids = torch.randint(0, 256, (1, 16))
    torch.testing.assert_close(grown(ids), small(ids), rtol=0, atol=1e-4)
    with pytest.raises(SystemExit, match="--grow-layers"):
        main(["train", "--out", str(tmp_path / "z"), "--grow-layers", "3"])
    # The same command with --resume is accepted; another depth is refused by name.
    assert main(argv + ["--grow-layers", "3", "--resume", "--steps", "2"]) == 0
    with pytest.raises(SystemExit, match="has 3 blocks"):
        main(argv + ["--grow-layers", "4", "--resume", "--steps", "3"])


# ---- the five behaviours a new user tripped over, each through the real command line ----


def test_eval_defaults_to_the_length_the_run_was_trained_at(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--steps", "2", "--arch", "ar") == 0  # seq_len 32, max_seq_len 64
    r = run_cli("eval", "--checkpoint", out, "--data", "pydoc-topics", "--max-chunks", "4")
    assert "windows of 32 bytes (the length it was trained at, from train_config.json)" in r.stdout
    r = run_cli(
        "eval", "--checkpoint", out, "--data", "pydoc-topics", "--max-chunks", "4", "--json"
    )
    assert json.loads(r.stdout)["seq_len"] == 32


def test_eval_scores_the_whole_split_or_a_whole_separate_file(tmp_path):
    out = tmp_path / "run"
    assert train(out, "--steps", "2", "--arch", "ar") == 0
    valid = tmp_path / "validation.txt"
    valid.write_bytes(b"A separate validation file, every byte of which counts. " * 40)
    r = run_cli("eval", "--checkpoint", out, "--data", valid, "--split", "all", "--json")
    result = json.loads(r.stdout)
    n = len(valid.read_bytes())
    assert result["bytes_available"] == n and result["n_bytes"] == (n // 33) * 32
    # The JSON names the corpus and the weights it measured, recomputed here.
    import hashlib

    assert result["corpus_sha256"] == hashlib.sha256(valid.read_bytes()).hexdigest()
    weights = (out / "model.safetensors").read_bytes()
    assert result["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    assert result["corpus_bytes"] == n and result["python"]
    r = run_cli("eval", "--checkpoint", out, "--data", valid, "--split", "all")
    assert f"over {(n // 33) * 32:,} of the split's {n:,} bytes" in r.stdout
    # Without --max-chunks the default split (the last 10 %) is scored whole as well.
    r = run_cli("eval", "--checkpoint", out, "--data", valid, "--json")
    assert json.loads(r.stdout)["n_bytes"] == (int(n * 0.1) // 33) * 32


def test_resume_accepts_the_same_command_and_names_a_real_conflict(tmp_path):
    out = tmp_path / "run"
    argv = train_argv(out, "--preset", "tiny", "--arch", "diffusion")
    run_cli(*argv, "--steps", "2")
    run_cli(*argv, "--steps", "3", "--resume")  # the same command, more steps, --resume appended
    assert read_state(out)["step"] == 3
    r = run_cli(*argv, "--steps", "4", "--resume", "--dim", "48", check=False)
    assert r.returncode != 0
    assert "--dim 48 (the run has 32)" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_sample_and_infill_take_a_device_and_the_prefix_cache():
    r = run_cli(
        "sample",
        "--prompt",
        "The ",
        "--length",
        "16",
        "--steps",
        "8",
        "--block-length",
        "8",
        "--cache",
        "prefix",
        "--device",
        "cpu",
    )
    assert r.stdout.startswith("The ") and "\u2588" not in r.stdout
    r = run_cli("infill", "--text", "The \u2588\u2588\u2588 of", "--device", "cpu")
    assert r.stdout.startswith("The ") and "\u2588" not in r.stdout
    if not torch.cuda.is_available():
        r = run_cli("sample", "--prompt", "a", "--length", "4", "--device", "cuda", check=False)
        assert r.returncode == 1 and "no CUDA GPU" in r.stderr


def test_help_explains_every_option():
    train_help = " ".join(run_cli("train", "--help").stdout.split())  # undo line wrapping
    assert "width of the residual stream" in train_help  # ModelConfig.dim
    assert "step k (from 0) runs at lr * (k + 1)" in train_help  # TrainConfig.warmup_steps
    sample_help = " ".join(run_cli("sample", "--help").stdout.split())
    assert "network evaluations" in sample_help and "at least this confident" in sample_help
    from ddlm.configs import field_help
    from ddlm.model import ModelConfig
    from ddlm.sampling import SamplerConfig
    from ddlm.train import TrainConfig

    for cls in (ModelConfig, TrainConfig, SamplerConfig):
        for f in dataclasses.fields(cls):
            assert field_help(f), f"{cls.__name__}.{f.name} has no help text"


def test_stop_after_ends_a_sitting_and_resume_finishes_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out, "--steps", "6", "--stop-after", "2") == 0
    assert read_state(out)["step"] == 2
    assert "step 2 stopped" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--stop-after 2"):
        train(out, "--steps", "6", "--resume", "--stop-after", "2")
    assert train(out, "--steps", "6", "--resume") == 0
    assert read_state(out)["step"] == 6


def test_sampler_preset_on_the_command_line(capsys):
    # --sampler llada is the same sampler as LLaDA's four fields spelled out, and an option
    # given after it still changes its field.
    base = ["sample", "--checkpoint", "tiny", "--prompt", "The ", "--length", "8", "--steps", "4"]
    assert main(base + ["--sampler", "llada"]) == 0
    by_name = capsys.readouterr().out
    spelled = ["--confidence", "probability", "--min-gap", "0", "--no-repeat", "0"]
    assert main(base + spelled + ["--order-bias", "0"]) == 0
    assert capsys.readouterr().out == by_name
    assert main(base + ["--sampler", "llada", "--confidence", "pmi"]) == 0
    pmi = capsys.readouterr().out
    assert (
        main(
            base
            + ["--confidence", "pmi", "--min-gap", "0", "--no-repeat", "0", "--order-bias", "0"]
        )
        == 0
    )
    assert capsys.readouterr().out == pmi
    with pytest.raises(SystemExit):
        main(base + ["--sampler", "bogus"])
