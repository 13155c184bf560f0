"""Peak memory (resident set size) of training and sampling, each case in a fresh process.

    python bench/memory.py

Training: two steps of the `seed` preset (batch 8, context 768), float32 vs bf16 autocast.
Sampling: the shipped `tiny` model, prompt 768 bytes + answer 128 (blocks of 32, 32 steps),
with and without the prefix cache. The baseline is the same process after importing torch and
building the model, so the figures isolate the work itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASE = r"""
import json, resource, sys, torch
sys.path.insert(0, {root!r})
import ddlm
from ddlm.diffusion import diffusion_loss
from ddlm.precision import autocast

def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

kind, arg = {kind!r}, {arg!r}
if kind == "train":
    torch.manual_seed(0)
    model = ddlm.DiffusionLM(ddlm.ModelConfig.preset("seed"))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x0 = torch.randint(0, 256, (8, 768))
    base = rss_mib()
    for _ in range(2):
        with autocast(torch.device("cpu"), torch.bfloat16 if arg == "bf16" else None):
            loss = diffusion_loss(model, x0)
        loss.backward(); opt.step(); opt.zero_grad(set_to_none=True)
else:
    from ddlm.data import load_corpus, split
    model = ddlm.load_pretrained("tiny")
    _, val = split(load_corpus("pydoc"))
    prompt = bytes(val[:768].tolist())
    base = rss_mib()
    ddlm.generate(model, prompt, 128, steps=32, block_length=32, seed=0, cache=arg)
print(json.dumps({{"base_mib": base, "peak_mib": rss_mib()}}))
"""


def run(kind: str, arg) -> dict:
    code = CASE.format(root=str(ROOT), kind=kind, arg=arg)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"{'case':<40} {'before (MiB)':>12} {'peak (MiB)':>11} {'added':>8}")
    for kind, arg, label in [
        ("train", "fp32", "train seed, 2 steps, float32"),
        ("train", "bf16", "train seed, 2 steps, bf16 autocast"),
        ("sample", None, "sample tiny 768+128, no cache"),
        ("sample", "prefix", "sample tiny 768+128, prefix cache"),
    ]:
        r = run(kind, arg)
        print(
            f"{label:<40} {r['base_mib']:>12.0f} {r['peak_mib']:>11.0f} {r['peak_mib'] - r['base_mib']:>8.0f}"
        )


if __name__ == "__main__":
    main()
