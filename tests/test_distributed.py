"""Two processes with torchrun and gloo: both ranks must end with identical weights."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from helpers import train_argv
from safetensors.torch import load_file

from ddlm import DiffusionLM
from ddlm.checkpoint import read_state

from_pretrained = DiffusionLM.from_pretrained


@pytest.mark.slow
def test_torchrun_two_ranks_identical_weights(tmp_path):
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    out = tmp_path / "ddp"
    script = tmp_path / "dump.py"
    # Each rank trains, then writes its own copy of the weights so the test can compare them.
    script.write_text(
        "import os, sys, torch\n"
        "from safetensors.torch import save_file\n"
        "from ddlm.cli import main\n"
        "import ddlm.train as tr\n"
        "orig = tr.Trainer.close\n"
        "def close(self):\n"
        "    sd = {k: v.contiguous() for k, v in self.model.state_dict().items()}\n"
        "    save_file(sd, os.path.join(sys.argv[1], f'rank{self.world.rank}.safetensors'))\n"
        "    orig(self)\n"
        "tr.Trainer.close = close\n"
        "raise SystemExit(main(sys.argv[2:]))\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        str(script),
        str(tmp_path),
        *train_argv(out, "--steps", "5", "--log-every", "1"),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # Only rank 0 wrote the run directory, and it holds the same weights.
    saved = from_pretrained(out).state_dict()
    assert all(torch.equal(saved[k], a[k]) for k in a)
    state = read_state(out)
    assert state["world_size"] == 2 and state["step"] == 5
    # Two ranks see different data: tokens count both.
    assert state["tokens_seen"] == 5 * 2 * 2 * 32
