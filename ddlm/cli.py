"""The command line: `ddlm train | eval | sample | infill | average` (also `python -m ddlm`).

Every ModelConfig and TrainConfig field is an option of `train` (`--n-layers`,
`--kv-latent-dim`, `--warmup-steps`, ...), with the short aliases `--layers` and `--heads`;
every SamplerConfig field is an option of `sample` and `infill` (`--steps`, `--block-length`,
`--cache`, ...). Each option's help is its field's help text. Run `ddlm CMD --help`.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import sys
import time
from pathlib import Path

from . import __version__
from .configs import add_options, overrides


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line and exits with status 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


# ---- train -----------------------------------------------------------------------------


def _resume_config(out: Path, args, model_over: dict) -> tuple:
    """The run's own configs, after checking that the options given agree with them."""
    from .checkpoint import RunDir
    from .configs import differences
    from .model import ModelConfig
    from .train import TrainConfig

    run = RunDir(out)
    if not run.has_run():
        raise SystemExit(f"ddlm train: --resume given, but {out} holds no run to resume")
    state = run.state()
    stored = run.model_config(state)
    asked = ModelConfig.preset(args.preset, **model_over).to_dict() if args.preset else model_over
    clash = differences(stored, asked)
    if clash:
        said = ", ".join(
            f"--{k.replace('_', '-')} {v!r} (the run has {had!r})"
            for k, (v, had) in sorted(clash.items())
        )
        raise SystemExit(
            f"ddlm train: the run in {out} was started with another model config: {said}; "
            "drop those options to resume it, or train into a new --out"
        )
    tcfg = TrainConfig.from_dict({**state["train_config"], **overrides(args, TrainConfig)})
    return stored, tcfg


def _train_model(args: argparse.Namespace, out: Path):
    """(model, TrainConfig) for a new run, a fine-tune or a resumed run: the model is built
    from its config, seeded by the TrainConfig's seed, or loaded by --init-from."""
    import torch

    from .model import DiffusionLM, ModelConfig
    from .train import TrainConfig, build_model

    model_over = overrides(args, ModelConfig)
    if args.arch is not None:
        model_over["causal"] = args.arch == "ar"
    if args.resume:
        stored, tcfg = _resume_config(out, args, model_over)
        if args.grow_layers is not None and args.grow_layers != stored.n_layers:
            raise SystemExit(
                f"ddlm train: --grow-layers {args.grow_layers}, but the run in {out} has "
                f"{stored.n_layers} blocks; a run keeps its depth (drop --grow-layers to resume)"
            )
        return build_model(stored, tcfg.seed), tcfg  # its weights are the checkpoint's
    if args.new_data:
        raise SystemExit("ddlm train: --new-data continues a run on another corpus; add --resume")
    tcfg = TrainConfig(**overrides(args, TrainConfig))
    if args.grow_layers is not None and args.init_from is None:
        raise SystemExit("ddlm train: --grow-layers deepens a trained model; add --init-from")
    if args.init_from is None:
        mcfg = ModelConfig.preset(args.preset or "tiny", **model_over)
        return build_model(mcfg, tcfg.seed), tcfg
    if model_over or args.preset is not None:
        raise SystemExit(
            "ddlm train: --init-from takes the model config from the checkpoint; drop "
            f"--preset and the model options {sorted(model_over)}"
        )
    try:
        model = DiffusionLM.from_pretrained(args.init_from).train()
        if args.grow_layers is not None:
            model = model.deepened(args.grow_layers)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"ddlm train: --init-from {args.init_from}: {err}") from err
    torch.manual_seed(tcfg.seed)  # dropout's draws follow the seed, as in a fresh run
    return model, tcfg


def _fit_until_signalled(trainer, stop_after: int | None = None) -> tuple[dict, int | None]:
    """trainer.fit(); SIGINT/SIGTERM save a checkpoint and stop (a second one stops at once)."""
    received: list[int] = []

    def on_signal(signum, frame):
        if received and not trainer.saving:  # a save is never cut in half: it ends, then we do
            raise KeyboardInterrupt
        received.append(signum)
        name = signal.Signals(signum).name
        print(f"\n{name}: saving a checkpoint, then exiting", file=sys.stderr)
        trainer.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return trainer.fit(stop_after), (received[0] if received else None)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        trainer.close()


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .callbacks import LogSamples
    from .data import load_corpus
    from .objectives import is_autoregressive
    from .train import Trainer, configure_optimizer

    out = Path(args.out)
    model, tcfg = _train_model(args, out)
    corpus = load_corpus(args.data, eos=tcfg.eos)
    optimizer = configure_optimizer(model, tcfg)
    trainer = Trainer(
        model, tcfg, corpus, optimizer, out_dir=out, resume=args.resume, new_data=args.new_data
    )
    if trainer.step >= tcfg.steps:
        print(f"{out} already reached step {trainer.step} (--steps {tcfg.steps}); nothing to do.")
        trainer.close()
        return 0
    if args.sample_every and trainer.is_main:
        prompt = bytes(trainer.val_data[:32].tolist())
        trainer.callbacks.append(
            LogSamples(
                trainer.model, prompt, args.sample_every, args.sample_length,
                args.sample_steps, echo=tqdm.write,
            )
        )  # fmt: skip
    if trainer.is_main:
        n = trainer.model.num_params()
        kind = "an autoregressive" if is_autoregressive(trainer.model) else "a diffusion"
        print(
            f"training {kind} model: {n:,} parameters on {trainer.device}, amp={tcfg.amp} -> {out}"
        )
    if args.stop_after is not None and args.stop_after <= trainer.step:
        trainer.close()
        raise SystemExit(
            f"ddlm train: --stop-after {args.stop_after} is not after step {trainer.step}"
        )
    result, signum = _fit_until_signalled(trainer, args.stop_after)
    if trainer.is_main:
        val = result.get("val_loss")
        print(
            f"step {result['step']} {result['status']}" + (f", val_loss {val:.4f}" if val else "")
        )
    return 128 + signum if signum else 0


# ---- eval ------------------------------------------------------------------------------


def _trained_length(checkpoint: str, model) -> tuple[int, str]:
    """The sequence length a checkpoint was trained at (its train_config.json), and whence."""
    from .checkpoint import RunDir
    from .model import resolve_checkpoint

    seq_len = (RunDir(resolve_checkpoint(checkpoint)).train_config() or {}).get("seq_len")
    if isinstance(seq_len, int) and 0 < seq_len <= model.config.max_seq_len:
        return seq_len, f"the length it was trained at, from {RunDir.TRAIN_CONFIG}"
    return model.config.max_seq_len, f"the model's max_seq_len (no {RunDir.TRAIN_CONFIG} found)"


def _weights_sha256(checkpoint: str) -> str:
    from .files import sha256_file
    from .model import WEIGHTS_NAME, resolve_checkpoint

    return sha256_file(resolve_checkpoint(checkpoint) / WEIGHTS_NAME)


def _eval_length(args: argparse.Namespace, model) -> tuple[int, str]:
    """The window length to evaluate at, and why: --seq-len, or the length trained at."""
    if args.seq_len is None:
        return _trained_length(args.checkpoint, model)
    if args.seq_len > model.config.max_seq_len:
        raise ValueError(
            f"--seq-len {args.seq_len} exceeds the model's max_seq_len={model.config.max_seq_len}"
        )
    return args.seq_len, "--seq-len"


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from . import objectives
    from .data import corpus_sha256, load_corpus, split
    from .model import DiffusionLM
    from .precision import resolve_device

    device = resolve_device(args.device)
    model = DiffusionLM.from_pretrained(args.checkpoint, map_location=device)
    corpus = load_corpus(args.data)
    halves = () if args.split == "all" else split(corpus, args.val_fraction)
    data = corpus if args.split == "all" else halves[args.split == "val"]  # (train, val)
    seq_len, why = _eval_length(args, model)
    t0 = time.perf_counter()
    with torch.no_grad():
        r = objectives.evaluate(
            model,
            data,
            seq_len,
            max_chunks=args.max_chunks,
            device=device,
            n_samples=args.samples,
            estimator=args.estimator,
            progress=not args.json,
        )
    result = {
        **r.to_dict(),
        "arch": "ar" if objectives.is_autoregressive(model) else "diffusion",
        "split": args.split,
        "data": str(args.data),
        "seq_len": seq_len,
        "bytes_available": len(data),
        "seconds": round(time.perf_counter() - t0, 2),
        # Which corpus (the embedded one differs between Python versions) and which weights.
        "corpus_sha256": corpus_sha256(corpus),
        "corpus_bytes": len(corpus),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "weights_sha256": _weights_sha256(args.checkpoint),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    exact = r.estimator == "exact-ar"
    kind = "exact" if exact else f"ELBO upper bound, estimator {r.estimator}"
    err = "" if exact else f" +/- {r.stderr:.4f} (stderr, {r.n_samples} samples/window)"
    print(f"windows of {seq_len} bytes ({why})")
    print(
        f"{args.split} bits per byte ({kind}): {r.bits_per_byte:.4f}{err} "
        f"over {r.n_bytes:,} of the split's {len(data):,} bytes"
    )
    return 0


# ---- average ---------------------------------------------------------------------------


def cmd_average(args: argparse.Namespace) -> int:
    from .averaging import save_average

    record = save_average(args.checkpoints, args.out)
    print(
        json.dumps(record)
        if args.json
        else f"the mean of {len(args.checkpoints)} checkpoints -> {args.out}"
    )
    return 0


# ---- sample / infill -------------------------------------------------------------------


def _loaded(args):
    """The sampler's config, the checkpoint on --device, and the autocast context to sample
    under."""
    from .model import DiffusionLM
    from .precision import autocast, resolve_amp, resolve_device
    from .sampling import SamplerConfig

    config = SamplerConfig.preset(args.sampler, **overrides(args, SamplerConfig))

    device = resolve_device(args.device)
    model = DiffusionLM.from_pretrained(args.checkpoint, map_location=device)
    # Autocast on a GPU only: on a CPU, sampling in float32 gives the same text on every CPU.
    dtype = resolve_amp("auto", device) if device.type == "cuda" else None
    return config, model, autocast(device, dtype)


def _show_step(step: int, state) -> None:
    print(f"[{step:>3}] {state.text()!r}", flush=True)


def _run_sampler(args: argparse.Namespace, sampler, *inputs):
    """`sampler(model, *inputs, config, seed=, callback=)` with the command line's options."""
    config, model, precision = _loaded(args)
    show = _show_step if args.show_steps else None
    with precision:
        return sampler(model, *inputs, config, seed=args.seed, callback=show)


def cmd_sample(args: argparse.Namespace) -> int:
    from .objectives import sample

    g = _run_sampler(args, sample, args.prompt, args.length)
    if args.show_steps:
        print(f"--- {g.nfe} network evaluations ---")
    print(args.prompt + g.text)
    return 0


def cmd_infill(args: argparse.Namespace) -> int:
    from .sampling import infill

    print(_run_sampler(args, infill, args.text).full_text)
    return 0


# ---- parser ----------------------------------------------------------------------------


def _sampling_options(p: argparse.ArgumentParser) -> None:
    from .sampler_config import SAMPLER_PRESETS, SamplerConfig

    p.add_argument(
        "--sampler",
        default=SAMPLER_PRESETS[0],
        choices=SAMPLER_PRESETS,
        help="a named sampler preset, which the options below then change: 'tiny' (the "
        "shipped default, tuned for a 2.5 M-parameter model) or 'llada' (LLaDA's rule: "
        "reveal the most probable guesses, no helpers) (default: tiny)",
    )
    p.add_argument(
        "--checkpoint",
        default="tiny",
        help="a run/model directory or a shipped name (default: tiny)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run")
    p.add_argument("--seed", type=int, default=0, help="seeds the sampler's choices (default: 0)")
    p.add_argument("--show-steps", action="store_true", help="print every denoising step")
    add_options(p, SamplerConfig, "sampler options")


def _train_parser(sub) -> None:
    from .model import PRESETS, ModelConfig
    from .train import TrainConfig

    p = sub.add_parser("train", help="train a model (diffusion or autoregressive)")
    p.add_argument(
        "--data", default="pydoc", help="pydoc (default), pydoc-topics, tinyshakespeare, or a path"
    )
    p.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="model preset (default: tiny)"
    )
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument(
        "--arch", choices=("diffusion", "ar"), default=None, help="diffusion (default) or ar"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (options that agree with the run may be repeated)",
    )
    p.add_argument(
        "--new-data",
        action="store_true",
        help="with --resume: go on although the corpus differs from the one the run trained on "
        "(refused otherwise); the data position restarts and train_config.json records the change",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="fine-tune: start from these weights (a model directory or a shipped name); "
        "ignored with --resume, which continues from the run's own checkpoint",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEP",
        help="save a checkpoint and exit after this step, the schedule unchanged (continue "
        "later with --resume): one part of a longer run, as a repeatable command",
    )
    p.add_argument(
        "--grow-layers",
        type=int,
        default=None,
        metavar="N",
        help="with --init-from: fine-tune a deeper model of N blocks, the new ones inserted "
        "between the trained ones as identities (DiffusionLM.deepened)",
    )
    _sample_log_options(p.add_argument_group("logged samples"))
    add_options(p, TrainConfig, "training options")
    add_options(p, ModelConfig, "model options (override the preset)")
    p.set_defaults(func=cmd_train)


def _sample_log_options(g) -> None:
    g.add_argument(
        "--sample-every",
        type=int,
        default=100,
        help="steps between logged samples (0 = never; default: 100)",
    )
    g.add_argument(
        "--sample-length", type=int, default=64, help="bytes per logged sample (default: 64)"
    )
    g.add_argument(
        "--sample-steps",
        type=int,
        default=32,
        help="denoising steps per logged sample (default: 32)",
    )


def _eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="bits per byte of a checkpoint on a corpus")
    p.add_argument("--checkpoint", required=True, help="a run/model directory or a shipped name")
    p.add_argument(
        "--data", default="pydoc", help="a corpus name or a file/folder (default: pydoc)"
    )
    p.add_argument(
        "--split",
        choices=("val", "train", "all"),
        default="val",
        help="val = the last --val-fraction of the corpus (default), train = the rest, "
        "all = every byte (a separate validation file)",
    )
    p.add_argument("--val-fraction", type=float, default=0.1, help="(default: 0.1)")
    p.add_argument(
        "--seq-len",
        type=int,
        default=None,
        help="window length (default: the length the checkpoint was trained at)",
    )
    p.add_argument(
        "--samples",
        type=int,
        default=8,
        help="Monte Carlo samples per window (diffusion; default: 8)",
    )
    p.add_argument(
        "--estimator", choices=("l", "t"), default="l", help="ELBO estimator (see bits_per_byte)"
    )
    p.add_argument(
        "--max-chunks",
        type=int,
        default=None,
        help="evaluate at most this many evenly spaced windows (default: every window)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ddlm", description="Byte-level masked diffusion language models.")
    parser.add_argument("--version", action="version", version=f"ddlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _train_parser(sub)
    _eval_parser(sub)
    p = sub.add_parser("average", help="the mean of several checkpoints' weights, as one model")
    p.add_argument("checkpoints", nargs="+", help="run/model directories or shipped names")
    p.add_argument("--out", required=True, help="the model folder to write (must hold no weights)")
    p.add_argument("--json", action="store_true", help="print the record written to average.json")
    p.set_defaults(func=cmd_average)
    p = sub.add_parser("sample", help="generate text after a prompt")
    p.add_argument("--prompt", required=True)
    p.add_argument("--length", type=int, default=128, help="bytes to generate (default: 128)")
    _sampling_options(p)
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("infill", help="fill every \u2588 in a text")
    p.add_argument("--text", required=True, help="text with \u2588 marking each byte to fill")
    _sampling_options(p)
    p.set_defaults(func=cmd_infill)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .files import LockedError, SaveError

    try:
        return args.func(args)
    except (ValueError, OSError, LockedError, SaveError) as e:  # OSError: files, connections
        sys.stderr.write(f"ddlm {args.command}: error: {e}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
