"""What every findings experiment shares: the small model, the data, a training run that
records its validation curve against steps and seconds, and the JSON result file.

Each experiment script trains small models with `ddlm.train.Trainer` on the embedded `pydoc`
corpus, measures them with `ddlm`'s own estimators, and writes one JSON file under
`data/findings/` that `notebooks/10_findings.ipynb` reads. Runs are cached by their full
configuration under the git-ignored `data/cache/findings/`, so a baseline that two
experiments share (the Mish/MLA diffusion model) trains once.

`--quick` shrinks everything to seconds; the tests use it to check that the scripts work.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ddlm import DiffusionLM, ModelConfig, objectives, stats  # noqa: E402
from ddlm.data import load_corpus, split  # noqa: E402
from ddlm.files import atomic_write_text  # noqa: E402
from ddlm.train import TrainConfig, Trainer, build_model  # noqa: E402

FINDINGS = ROOT / "data" / "findings"
CACHE = ROOT / "data" / "cache" / "findings"

# The model every experiment varies one thing of: ~0.6 M parameters, small enough that
# 400 steps take about two minutes on one CPU core, big enough to learn words.
MICRO = dict(dim=128, n_layers=4, n_heads=4, kv_latent_dim=32, max_seq_len=256)

# Training recipe shared by all runs (overridable per experiment).
RECIPE = dict(
    steps=400,
    batch_size=16,
    seq_len=128,
    lr=3e-3,
    warmup_steps=40,
    eval_every=50,
    eval_batches=8,
    ckpt_every=0,
    log_every=50,
    device="cpu",
    amp="off",
)

# For comparisons between variants (E2, E3): four times the steps, so that the models sit
# well below the unigram yardstick of 4.686 bits per byte and a difference can show.
LONGER = dict(steps=1600, eval_every=200)

# The unigram yardstick: bits per byte of the validation split under the training split's
# byte frequencies (add-one smoothed); notebook 10 computes it.
UNIGRAM_BITS = 4.686

QUICK = dict(steps=6, eval_every=3, eval_batches=1, log_every=3, warmup_steps=2, batch_size=4)


@dataclass
class Settings:
    quick: bool  # seconds-long smoke run (tests)
    out: Path  # where the JSON result goes
    threads: int  # torch threads
    seeds: list[int]  # seeds for repeated runs
    fresh: bool  # ignore cached runs
    cache: Path  # folder of cached runs
    jobs: int = 1  # training runs at once (each with `threads` threads), see `prefetch`


def parse_args(description: str, default_seeds: int = 1) -> Settings:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="tiny settings, for tests (seconds)")
    p.add_argument("--out", type=Path, default=FINDINGS, help="folder for the JSON result")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seeds", type=int, default=default_seeds, help="seeds per configuration")
    p.add_argument("--fresh", action="store_true", help="retrain even if a cached run exists")
    p.add_argument("--cache", type=Path, default=CACHE, help="folder of cached runs")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1)")
    a = p.parse_args()
    if a.jobs < 1 or a.threads < 1:
        p.error("--jobs and --threads must be at least 1")
    torch.set_num_threads(a.threads)
    seeds = list(range(1 if a.quick else a.seeds))
    return Settings(a.quick, a.out, a.threads, seeds, a.fresh, a.cache, a.jobs)


def corpus(quick: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) bytes of the embedded corpus (the first 200 kB only with --quick)."""
    data = load_corpus("pydoc")
    return split(data[:200_000] if quick else data)


def recipe(settings: Settings, **over) -> dict:
    r = {**RECIPE, **over}
    if settings.quick:
        r.update(QUICK, seq_len=min(r["seq_len"], 64))
    return r


def constrained_data(quick: bool, slice_bytes: int) -> tuple[torch.Tensor, float]:
    """E7's data-constrained setting: the first `slice_bytes` bytes of the training split (a
    tenth of that with --quick) followed by the whole validation split, and the fraction that
    is validation (so the Trainer's own split finds exactly it)."""
    train, val = corpus(quick)
    part = train[: slice_bytes // 10 if quick else slice_bytes]
    return torch.cat([part, val]), (len(val) + 0.5) / (len(part) + len(val))


def whole_val_scorer(settings: Settings) -> Callable:
    """A function scoring a model on every window of the validation split at the training
    length: exact bits per byte for a causal model, the ELBO for a diffusion model (LLaDA's
    l-estimator, 4 draws a window; over digits for `subtokens > 1`). Module-level, so that a
    worker process can build it by name ("common:whole_val_scorer")."""
    _, val = corpus(settings.quick)
    seq_len = recipe(settings)["seq_len"]

    def score(net) -> dict:
        with torch.no_grad():
            return objectives.evaluate(net, val, seq_len, n_samples=4, batch_size=64).to_dict()

    return score


def run_key(model: dict, train: dict, tag: str, settings: Settings) -> str:
    """Cache key of a run: the fields that differ from their defaults (so adding a new
    option with a default to ModelConfig or TrainConfig keeps old runs valid), the data tag,
    --quick and the thread count."""

    def changed(cls, d: dict) -> dict:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        return {k: v for k, v in d.items() if k not in defaults or defaults[k] != v}

    key = json.dumps(
        [
            changed(ModelConfig, model),
            changed(TrainConfig, train),
            tag,
            settings.quick,
            settings.threads,
        ],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def train_run(
    model: dict,
    train: dict,
    settings: Settings,
    data: torch.Tensor | None = None,
    tag: str = "bytes",
    curve_eval: Callable[[DiffusionLM], dict] | None = None,
) -> tuple[DiffusionLM, dict]:
    """Train one model; return it and its record (curve, wall time, parameters, FLOPs).

    `model` overrides MICRO, `train` is a full recipe. `data` (1-D ids, whose last
    `val_fraction` is validation) replaces the byte corpus; `tag` names it in the cache key.
    The record holds the validation curve as lists: step, seconds of training (evaluation
    excluded) and validation loss (nats per position; per *byte* only for byte-level models).
    `curve_eval(model)`, if given, is also called at every evaluation and its results (a
    BitsPerByte dict, say) are listed under `curve["eval"]`; `tag` must then say so, since
    the cache keys runs by `tag`.
    """
    mcfg = ModelConfig(**{**MICRO, **model})
    tcfg = TrainConfig(**train)
    digest = run_key(mcfg.to_dict(), tcfg.to_dict(), tag, settings)
    run_dir = settings.cache / digest
    if not settings.fresh and (run_dir / "record.json").exists():
        record = json.loads((run_dir / "record.json").read_text())
        print(f"  cached run {digest}: {record['label']}", flush=True)
        return DiffusionLM.from_pretrained(run_dir, config=mcfg).eval(), record
    curve = {"step": [], "seconds": [], "val_loss": []}
    if curve_eval is not None:
        curve["eval"] = []
    trainer = None

    def on_record(r: dict) -> None:
        if "val_loss" in r:
            curve["step"].append(r["step"])
            curve["seconds"].append(r["elapsed_s"])
            curve["val_loss"].append(r["val_loss"])
            if curve_eval is not None:
                curve["eval"].append(curve_eval(trainer.model.eval()))
                trainer.model.train()

    if data is None:
        data = load_corpus("pydoc")[: 200_000 if settings.quick else None]
    t0 = time.perf_counter()
    net = build_model(mcfg, tcfg.seed)
    trainer = Trainer(net, tcfg, data, callbacks=[on_record], progress=False)
    result = trainer.fit()
    wall = time.perf_counter() - t0
    net = trainer.model.eval()
    record = {
        "label": f"{tag} {mcfg.attention}/{mcfg.rope}/{mcfg.ffn_activation} "
        f"causal={mcfg.causal} seed={tcfg.seed}",
        "model": mcfg.to_dict(),
        "train": tcfg.to_dict(),
        "params": net.num_params(),
        "params_no_embedding": net.num_params(exclude_embedding=True),
        "flops_per_token": net.flops_per_token(tcfg.seq_len),
        "train_seconds": result["elapsed_s"],
        "wall_seconds": round(wall, 1),
        "tokens_per_s": tcfg.steps * tcfg.batch_size * tcfg.seq_len / result["elapsed_s"],
        "curve": curve,
    }
    net.save_pretrained(run_dir, step=tcfg.steps)
    atomic_write_text(run_dir / "record.json", json.dumps(record))
    print(
        f"  trained {record['label']}: val {curve['val_loss'][-1]:.3f} in {wall:.0f} s",
        flush=True,
    )
    return net, record


def prefetch(tasks: list[dict], settings: Settings) -> None:
    """Train the runs that `train_run(**task)` would train, `settings.jobs` at a time, each
    in its own process with `settings.threads` threads; later `train_run` calls with the
    same arguments then load them from the cache. Does nothing with --jobs 1 (the runs are
    trained in order as the script asks for them). A task's `curve_eval` is given as
    "module:factory", a module-level function that builds it from the settings (a closure
    cannot cross processes)."""
    todo = [t for t in tasks if settings.fresh or not _cached(t, settings)]
    if settings.jobs < 2 or len(todo) < 2:
        return
    import multiprocessing as mp

    worker = dataclasses.replace(settings, fresh=False)
    pool = mp.get_context("spawn").Pool(settings.jobs, maxtasksperchild=1)
    try:
        for label in pool.imap_unordered(_train_task, [(t, worker) for t in todo]):
            print(f"  [job done] {label}", flush=True)
    except BaseException:
        pool.terminate()
        raise
    else:
        pool.close()
    finally:
        pool.join()


def _cached(task: dict, settings: Settings) -> bool:
    mcfg = ModelConfig(**{**MICRO, **task["model"]})
    tcfg = TrainConfig(**task["train"])
    digest = run_key(mcfg.to_dict(), tcfg.to_dict(), task.get("tag", "bytes"), settings)
    return (settings.cache / digest / "record.json").exists()


def _train_task(args: tuple[dict, Settings]) -> str:
    task, settings = args
    torch.set_num_threads(settings.threads)
    task = dict(task)
    if isinstance(task.get("curve_eval"), str):  # "module:factory", factory(settings)
        import importlib

        module, name = task["curve_eval"].split(":")
        task["curve_eval"] = getattr(importlib.import_module(module), name)(settings)
    _, record = train_run(settings=settings, **task)
    return record["label"]


def val_bits(
    net: DiffusionLM, val: torch.Tensor, settings: Settings, seq_len: int = 128, n_samples: int = 4
) -> dict:
    """Validation bits per position on every `seq_len` window of the validation split (8
    windows with --quick): exact for causal models, the ELBO (LLaDA's l-estimator, with its
    standard error) for diffusion models."""
    chunks = 8 if settings.quick else None
    with torch.no_grad():
        r = objectives.evaluate(
            net, val, seq_len, max_chunks=chunks, n_samples=n_samples, batch_size=64
        )
    return r.to_dict()


def mean_sd(xs: list[float]) -> dict:
    """Mean, sample standard deviation and count (sd is 0 for a single value)."""
    return {
        "mean": statistics.fmean(xs),
        "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
        "n": len(xs),
    }


def paired_difference(a: list[float], b: list[float]) -> dict:
    """Mean of a_i - b_i over paired runs (same seed: same data order and masks), with its
    standard error sd / sqrt(n): the uncertainty of the difference itself, which pairing
    makes far smaller than the spread of either list (`ddlm.stats.paired`; a single run has
    no standard error)."""
    if len(a) == len(b) == 1:
        return {"mean": a[0] - b[0], "se": float("nan"), "n": 1}
    c = stats.paired(a, b)
    return {"mean": c.mean, "se": c.se, "n": len(a)}


def mcnemar(first: list[bool], second: list[bool]) -> dict:
    """McNemar's exact test for two scorers on the same items: b items only the first got
    right, c only the second; with no true difference each disagreement is a fair coin, so the
    two-sided p-value is twice the binomial tail of min(b, c) in b + c flips (at most 1)."""
    b = sum(x and not y for x, y in zip(first, second, strict=True))
    c = sum(y and not x for x, y in zip(first, second, strict=True))
    return {"only_first": b, "only_second": c, "p_two_sided": stats.mcnemar(b, c)}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def provenance(script: Path, shipped: tuple[str, ...] = ()) -> dict:
    """What produced a result: the git revision, whether the checkout had uncommitted
    changes and the SHA-256 of the package sources (`ddlm.provenance.code_provenance`), the
    SHA-256 of the script and of this shared module, the corpus's SHA-256 and size (it differs
    between Python versions), and the SHA-256 of the weights of each shipped model the script
    loads (`shipped`)."""
    from ddlm.files import sha256_file
    from ddlm.model import WEIGHTS_NAME, resolve_checkpoint
    from ddlm.provenance import code_provenance

    data = load_corpus("pydoc").numpy().tobytes()
    return {
        **code_provenance(),
        "script_sha256": sha256_file(script),
        "common_sha256": sha256_file(Path(__file__)),
        "corpus_sha256": hashlib.sha256(data).hexdigest(),
        "corpus_bytes": len(data),
        "weights_sha256": {
            name: sha256_file(resolve_checkpoint(name) / WEIGHTS_NAME) for name in shipped
        },
    }


def write_result(
    name: str, settings: Settings, started: float, payload: dict, shipped: tuple[str, ...] = ()
) -> Path:
    """Write data/findings/NAME.json with the command, the machine, the runtime and the
    provenance (see `provenance`; `shipped` names the shipped models the script used)."""
    script = Path(sys.argv[0]).resolve()
    out = {
        "experiment": name,
        "command": "python " + " ".join([f"experiments/{script.name}", *sys.argv[1:]]),
        "quick": settings.quick,
        "threads": settings.threads,
        "seeds": settings.seeds,
        "machine": machine(),
        "provenance": provenance(script, shipped),
        "runtime_s": round(time.perf_counter() - started, 1),
        "date": time.strftime("%Y-%m-%d"),
        **payload,
    }
    settings.out.mkdir(parents=True, exist_ok=True)
    path = settings.out / f"{name}.json"
    atomic_write_text(path, json.dumps(out, indent=1, default=_jsonable) + "\n")
    print(f"wrote {path} ({out['runtime_s']:.0f} s)")
    return path


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, torch.Tensor):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to JSON")


def rerun(name: str) -> None:
    """Run experiment `name` again with the options its committed result records (its command,
    less the folder it wrote to, and the time budget for E8), overwriting that result."""
    made = json.loads((FINDINGS / f"{name}.json").read_text())
    args = re.sub(r" --out \S+", "", made["command"]).split()[2:]  # after "python <script>"
    if "minutes_per_run" in made:
        args += ["--minutes", str(made["minutes_per_run"])]
    script = Path(__file__).resolve().parent / f"{name}.py"
    subprocess.run([sys.executable, str(script), *args], check=True)
