"""What closes the diffusion/AR gap at equal compute? nanoGPT's small CPU recipe, one change at a time.

The recipe (nanoGPT's shakespeare_char CPU run): 4 layers, 4 heads, dim 128, context 64,
batch 12, lr 1e-3 with 100 warmup steps and a cosine to 1e-4, 2000 steps, no dropout; here on
the embedded pydoc corpus with ddlm's model (MLA, latent 32, Mish). The AR twin trains with
the same body, steps and bytes. Every run is evaluated on every byte of the validation split
at 64-byte windows, the length it was trained at: exact bits per byte for AR, the ELBO
(LLaDA's l-estimator, 4 draws per window, with its standard error) for diffusion.

Each candidate changes one thing of the diffusion recipe; batch 24 halves the steps so that
every run sees the same bytes. The printed ratio is diffusion / AR (AR of the same seed).
The sequence-length candidates change the length for both twins (the batch shrinks so that a
step still holds 768 bytes) and are evaluated at the length they were trained at, so their
ratio is taken against the AR run of their own length.

    python bench/diffusion_gap.py --json bench/diffusion_gap.json     # about 30 min, 2 cores
    python bench/diffusion_gap.py --steps 50 --seeds 1                 # a smoke run
    python bench/diffusion_gap.py --corpus stdlib-source --only ar diffusion   # a second corpus

The second corpus, `stdlib-source`, is Python source code rather than documentation: the `.py`
files of the running Python's `email` (with its subpackages), `asyncio` and `unittest`
packages, in sorted order, joined by newlines (about 1.1 MB, the size of nanoGPT's
shakespeare_char; its SHA-256 goes into the JSON, as it differs between Python versions).
"""

import argparse
import json
import platform
import shlex
import statistics
import sys
import sysconfig
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ddlm import ModelConfig, objectives  # noqa: E402
from ddlm.data import corpus_sha256, load_corpus, split  # noqa: E402
from ddlm.provenance import code_provenance  # noqa: E402
from ddlm.train import TrainConfig, Trainer, build_model  # noqa: E402

BODY = dict(dim=128, n_layers=4, n_heads=4, kv_latent_dim=32, max_seq_len=64)
RECIPE = dict(
    batch_size=12, seq_len=64, lr=1e-3, warmup_steps=100, min_lr_ratio=0.1, eval_every=0,
    ckpt_every=0, log_every=100, device="cpu", amp="off",
)  # fmt: skip

# name -> (model overrides, train overrides, step factor)
CANDIDATES = {
    "ar": (dict(causal=True), dict(), 1.0),
    "diffusion": (dict(), dict(), 1.0),
    "count masking": (dict(), dict(masking="count"), 1.0),
    "lr 3e-3": (dict(), dict(lr=3e-3), 1.0),
    "lr 3e-3, warmup 300": (dict(), dict(lr=3e-3, warmup_steps=300), 1.0),
    "batch 24, half the steps": (dict(), dict(batch_size=24), 0.5),
    # At batch 12 the sequence with the smallest t (weight up to 1/eps = 1000) can dominate a
    # step's gradient, and clipping the norm to 1 then shrinks the whole step: two probes.
    "no gradient clipping": (dict(), dict(grad_clip=0.0), 1.0),
    "mask_eps 0.05": (dict(), dict(mask_eps=0.05), 1.0),
    # MDLM's SUBS: no probability on MASK or PAD, which a clean byte never is.
    "SUBS": (dict(), dict(subs=True), 1.0),
    # Importance sampling of t (same ELBO, other spread): t = u^k draws small t more often
    # and weighs each such draw down, so the heavy 1/t terms come often and light.
    "t = u^2 (importance)": (dict(), dict(t_power=2.0), 1.0),
    "t = u^3 (importance)": (dict(), dict(t_power=3.0), 1.0),
    "beta2 0.99": (dict(), dict(beta2=0.99), 1.0),
    # Each sequence twice with complementary masks: every byte scored once per step, half
    # as many distinct sequences (same compute).
    "complementary masks": (dict(), dict(complementary=True), 1.0),
    "lr 6e-3, warmup 300": (dict(), dict(lr=6e-3, warmup_steps=300), 1.0),
    "lr 1e-2, warmup 300": (dict(), dict(lr=1e-2, warmup_steps=300), 1.0),
    # A lower-variance weighting: the mean cross-entropy over the batch's masked bytes, no
    # 1/t (a weighted ELBO, not a bound; evaluation is still the ELBO).
    "flat weighting": (dict(), dict(weighting="flat"), 1.0),
    # Sequence length, for both twins at 768 bytes a step: more context on both sides of a
    # mask (256), or less (32).
    "ar, context 256": (dict(causal=True, max_seq_len=256), dict(seq_len=256, batch_size=3), 1.0),
    "diffusion, context 256": (dict(max_seq_len=256), dict(seq_len=256, batch_size=3), 1.0),
    "ar, context 32": (dict(causal=True, max_seq_len=32), dict(seq_len=32, batch_size=24), 1.0),
    "diffusion, context 32": (dict(max_seq_len=32), dict(seq_len=32, batch_size=24), 1.0),
    # Partial masking (MDM-Prime, ddlm.subbyte): each byte's digits masked on their own, so a
    # position can be half known; evaluated with the same estimator over the digits, a bound
    # on the same bytes. A partly masked byte is embedded as a sum of digit vectors, or
    # ("table") with one vector per partial state.
    "subtokens 2": (dict(subtokens=2), dict(), 1.0),
    "subtokens 4": (dict(subtokens=4), dict(), 1.0),
    "subtokens 8": (dict(subtokens=8), dict(), 1.0),
    "subtokens 8, table": (dict(subtokens=8, subtoken_embedding="table"), dict(), 1.0),
}


STDLIB_SOURCE = ("email/**/*.py", "asyncio/*.py", "unittest/*.py")


def stdlib_source() -> torch.Tensor:
    """The `stdlib-source` corpus: the .py files of STDLIB_SOURCE's packages, joined."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(f for pattern in STDLIB_SOURCE for f in root.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no standard-library sources under {root}")
    return torch.frombuffer(bytearray(b"\n".join(f.read_bytes() for f in files)), dtype=torch.uint8)


def seq_len(name: str) -> int:
    return CANDIDATES[name][1].get("seq_len", RECIPE["seq_len"])


def ar_twin(name: str) -> str:
    """The AR run a candidate is compared with: the one trained at its length."""
    n = seq_len(name)
    return "ar" if n == RECIPE["seq_len"] else f"ar, context {n}"


def run(name: str, seed: int, steps: int, data: torch.Tensor, val: torch.Tensor) -> dict:
    model_over, train_over, factor = CANDIDATES[name]
    mcfg = ModelConfig(**{**BODY, **model_over})
    tcfg = TrainConfig(**{**RECIPE, **train_over, "steps": int(steps * factor), "seed": seed})
    t0 = time.perf_counter()
    trainer = Trainer(build_model(mcfg, tcfg.seed), tcfg, data, progress=False)
    trainer.fit()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        r = objectives.evaluate(
            trainer.model.eval(), val, seq_len=seq_len(name), n_samples=4, batch_size=64
        )
    return {**r.to_dict(), "train_seconds": round(seconds, 1), "steps": tcfg.steps}


def write_json(a, data: torch.Tensor, rows: dict, started: float, complete: bool) -> None:
    """The bench's JSON: its command, machine, code and corpus, and every run so far."""
    out = {
        "command": "python " + shlex.join(sys.argv),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d"),
        "provenance": code_provenance(),
        "runtime_s": round(time.perf_counter() - started),
        "complete": complete,  # False while runs remain (the file is rewritten after each)
        "corpus": {
            "source": a.corpus,
            "bytes": len(data),
            "sha256": corpus_sha256(data),
            "python": platform.python_version(),
        },
        "body": BODY,
        "recipe": {**RECIPE, "steps": a.steps},
        "candidates": {k: CANDIDATES[k] for k in a.only},
        "results": rows,
    }
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument(
        "--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1"
    )
    p.add_argument("--only", nargs="+", choices=list(CANDIDATES), default=list(CANDIDATES))
    p.add_argument(
        "--corpus", default="pydoc", help="stdlib-source, or any corpus `ddlm train --data` takes"
    )
    p.add_argument("--json", default=None)
    a = p.parse_args()
    data = stdlib_source() if a.corpus == "stdlib-source" else load_corpus(a.corpus)
    _, val = split(data)
    print(f"corpus {a.corpus}: {len(data):,} bytes, {len(val):,} for validation", flush=True)
    rows: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for seed in range(a.first_seed, a.first_seed + a.seeds):
        for name in a.only:
            r = run(name, seed, a.steps, data, val)
            rows.setdefault(name, []).append(r)
            print(
                f"seed {seed} {name:26} {r['bits_per_byte']:.4f} +/- {r['stderr']:.4f} bits/byte "
                f"({r['estimator']}, {r['n_bytes']:,} bytes, {r['train_seconds']:.0f} s)",
                flush=True,
            )
            if a.json:  # after every run, so that a stopped bench keeps what it measured
                write_json(a, data, rows, started, complete=False)
    print(f"\n{'candidate':26} {'bits/byte (mean of seeds)':>26} {'/ AR':>6}")
    for name, rs in rows.items():
        bits = [r["bits_per_byte"] for r in rs]
        ar_bits = [r["bits_per_byte"] for r in rows.get(ar_twin(name), [])]
        ratio = statistics.fmean(b / a for b, a in zip(bits, ar_bits)) if ar_bits else float("nan")
        spread = f" (seeds {', '.join(f'{b:.3f}' for b in bits)})"
        print(f"{name:26} {statistics.fmean(bits):>10.4f}{spread:>16} {ratio:>6.3f}")
    if a.json:
        write_json(a, data, rows, started, complete=True)


if __name__ == "__main__":
    main()
