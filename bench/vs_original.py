"""ddlm's `seed` preset against the original project's model, training side by side in one run.

    python bench/vs_original.py                   # 5 rounds, both precisions
    python bench/vs_original.py --fuse --compile  # also ddlm with --fuse, with --compile
    python bench/vs_original.py --json bench/vs_original.json

Issue 15, item 2: out of the box, ddlm should train at least 2.5x the original's CPU tokens/s
on a CPU with native bf16 (AVX512_BF16 or AMX) and at least 1.3x on one without. "Out of the
box" is each project's default precision on this CPU: the original's mixed precision is
CUDA-only, so on a CPU it trains in float32; ddlm's `--amp auto` picks bf16 where the CPU has
native bf16 and float32 where it has not (`ddlm.precision`).

The original is rebuilt in `bench/original_design.py` from the design its training script
describes. Both train on the original's shape, with the same step: two micro-batches of
8 x 768 bytes, each forward, loss and backward (the loss halved, so the gradients add up to
the mean), as the original accumulates `gradient_accumulation_steps = 2` batches per optimizer
step; then gradient clipping at 1.0 and one AdamW step. Tokens per second count both
micro-batches. (The committed `bench/vs_original*.json` predate the accumulation: their step was
one batch of 8 x 768 per optimizer step.) Every configuration is built first and
warmed up twice; then the timed steps go round-robin, one step of each per round, so that a
slow minute of the machine falls on all of them alike. Reported: the median step of each.
MFU counts each model's FLOPs the same way (`DiffusionLM.flops_per_token`), against a 2048^3
matmul timed before and after the steps (the better of the two).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from original_design import OriginalDesign, original_loss  # noqa: E402
from train_throughput import command_line, cpu_name, matmul_peak  # noqa: E402

from ddlm.diffusion import diffusion_loss  # noqa: E402
from ddlm.fused import fused  # noqa: E402
from ddlm.model import DiffusionLM, ModelConfig  # noqa: E402
from ddlm.precision import autocast, cpu_has_native_bf16, dtype_name, resolve_amp  # noqa: E402
from ddlm.provenance import code_provenance  # noqa: E402

BATCH, CTX, ACCUM = 8, 768, 2  # the original's batch_size, max_length, gradient_accumulation_steps


def original_flops_per_token(model: OriginalDesign, T: int) -> float:
    """Training FLOPs per token, counted as ddlm counts its own (`flops_per_token`)."""
    blocks = len(model.blocks)
    heads, hd = model.blocks[0].attn.heads, model.blocks[0].attn.hd
    return 3.0 * (2 * model.matmul_params() + blocks * 2 * T * heads * 2 * hd)


class Row:
    """One configuration: a model, its optimizer and its step."""

    def __init__(self, name: str, project: str, dtype, mode: str = "eager"):
        torch.manual_seed(0)
        self.name, self.project, self.dtype, self.mode = name, project, dtype, mode
        if project == "original":
            self.model = OriginalDesign()
            self.loss = lambda x0: original_loss(self.model, x0)
            self.flops = original_flops_per_token(self.model, CTX)
        else:
            self.model = DiffusionLM(ModelConfig.preset("seed"))
            net = torch.compile(self.model) if mode == "compiled" else self.model
            self.loss = lambda x0: diffusion_loss(net, x0)
            self.flops = self.model.flops_per_token(CTX)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=2e-4)
        self.times: list[float] = []

    def step(self, micro: list[torch.Tensor]) -> float:
        """One optimizer step over the micro-batches (gradients accumulated); its seconds."""
        t0 = time.perf_counter()
        with fused(self.mode == "fused"):
            for x0 in micro:
                with autocast(torch.device("cpu"), self.dtype):
                    loss = self.loss(x0) / len(micro)
                loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rounds", type=int, default=5, help="timed steps of each configuration")
    p.add_argument("--fuse", action="store_true", help="also ddlm with TrainConfig.fuse")
    p.add_argument("--compile", action="store_true", help="also ddlm with TrainConfig.compile")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()

    native = cpu_has_native_bf16()
    auto = resolve_amp("auto", torch.device("cpu"))  # ddlm's default precision here
    bf16 = torch.bfloat16
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_name()}")
    print(f"native bf16: {'yes' if native else 'no'}; ddlm --amp auto trains in {dtype_name(auto)}")
    precisions = [None, bf16] if native else [None]
    first = {dtype_name(d): matmul_peak(d) for d in precisions}

    rows = [Row("original, fp32 (its CPU default)", "original", None)]
    if native:
        rows.append(Row("original, bf16 autocast", "original", bf16))
    rows.append(Row("ddlm seed, fp32", "ddlm", None))
    if native:
        rows.append(Row("ddlm seed, bf16", "ddlm", bf16))
    if args.fuse:
        rows.append(Row(f"ddlm seed, {dtype_name(auto)}, --fuse", "ddlm", auto, mode="fused"))
    if args.compile:
        rows.append(Row(f"ddlm seed, {dtype_name(auto)}, --compile", "ddlm", auto, mode="compiled"))
    gen = torch.Generator().manual_seed(0)
    micro = [torch.randint(0, 256, (BATCH, CTX), generator=gen) for _ in range(ACCUM)]
    for row in rows:  # warm-up (and compilation)
        row.step(micro), row.step(micro)
    for _ in range(args.rounds):
        for row in rows:
            row.times.append(row.step(micro))

    last = {dtype_name(d): matmul_peak(d) for d in precisions}
    peaks = {k: max(first[k], last[k]) for k in first}
    print(
        "matmul peak 2048^3 (before / after; MFU uses the better): "
        + ", ".join(f"{k} {first[k] / 1e9:.0f} / {last[k] / 1e9:.0f} GFLOP/s" for k in first)
    )
    base = rows[0]
    ddlm_default = next(r for r in rows if r.project == "ddlm" and r.dtype == auto)
    tok = lambda r: ACCUM * BATCH * CTX / statistics.median(r.times)  # noqa: E731
    print(f"\n{ACCUM} x batch {BATCH} x {CTX} per step, median of {args.rounds} round-robin steps")
    head = f"{'configuration':<34} {'tokens/s':>9} {'MFU':>6} {'vs original fp32':>17}"
    print(head + "\n" + "-" * len(head))
    out = []
    for r in rows:
        mfu = r.flops * tok(r) / peaks[dtype_name(r.dtype)]
        print(f"{r.name:<34} {tok(r):>9.0f} {mfu:>6.2f} {tok(r) / tok(base):>16.2f}x")
        out.append({"name": r.name, "tok_s": tok(r), "mfu": mfu, "step_s": r.times})
    ratio = tok(ddlm_default) / tok(base)
    goal = 2.5 if native else 1.3
    print(
        f"\nout of the box (ddlm --amp auto = {dtype_name(auto)}, the original in fp32): "
        f"{ratio:.2f}x; target >= {goal}x {'met' if ratio >= goal else 'not met'}"
    )
    if args.json:
        facts = {
            "command": command_line(),
            "date": time.strftime("%Y-%m-%d"),
            "provenance": code_provenance(),
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "native_bf16": native,
            "peaks": peaks,
            "rounds": args.rounds,
            "micro_batches_per_step": ACCUM,
            "rows": out,
            "out_of_the_box_ratio": ratio,
            "target": goal,
        }
        args.json.write_text(json.dumps(facts, indent=1) + "\n")


if __name__ == "__main__":
    main()
