"""The command line: `ddlm train | eval | sample | infill` (also `python -m ddlm`).

Every ModelConfig and TrainConfig field is an option (`--n-layers`, `--kv-latent-dim`,
`--warmup-steps`, ...), with the short aliases `--layers` and `--heads`. Run `ddlm CMD --help`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
import types
import typing
from pathlib import Path

from . import __version__

ALIASES = {"n_layers": ["--layers"], "n_heads": ["--heads"]}


def _choices() -> dict[str, tuple]:
    from .ffn import ACTIVATIONS
    from .precision import AMP_MODES, DEVICES

    return {
        "amp": AMP_MODES,
        "device": DEVICES,
        "attention": ("mla", "mha"),
        "rope": ("full", "decoupled"),
        "ffn_activation": tuple(sorted(ACTIVATIONS)),
    }


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad usage in one line and exits with status 2."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        raise SystemExit(2)


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _optional(kind):
    def parse(text: str):
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _field_type(hint):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        return _optional(_field_type(inner))
    return _parse_bool if hint is bool else hint


def _add_dataclass_options(parser: argparse.ArgumentParser, cls, title: str, skip=()) -> None:
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    choices = _choices()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flags = [f"--{f.name.replace('_', '-')}", *ALIASES.get(f.name, [])]
        group.add_argument(
            *flags,
            dest=f"{cls.__name__}.{f.name}",
            type=_field_type(hints[f.name]),
            default=argparse.SUPPRESS,
            choices=choices.get(f.name),
            metavar=f.name.upper() if f.name not in choices else None,
            help=f"(default: {f.default!r})",
        )


def _overrides(args: argparse.Namespace, cls) -> dict:
    prefix = f"{cls.__name__}."
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


# ---- train -----------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import read_json
    from .model import ModelConfig
    from .train import STATE_JSON, TrainConfig, Trainer

    out = Path(args.out)
    model_over = _overrides(args, ModelConfig)
    train_over = _overrides(args, TrainConfig)
    if args.arch is not None:
        model_over["causal"] = args.arch == "ar"
    if args.resume:
        if not (out / STATE_JSON).exists():
            raise SystemExit(f"ddlm train: --resume given, but {out} holds no run to resume")
        state = read_json(out / STATE_JSON)
        mcfg = ModelConfig.from_dict(state["model_config"])
        clash = {k: v for k, v in model_over.items() if getattr(mcfg, k) != v}
        if clash or args.preset is not None:
            raise SystemExit(
                f"ddlm train: the run in {out} has its own model config; drop --preset and the "
                f"model options {sorted(clash)} when resuming"
            )
        tcfg = TrainConfig(**{**state["train_config"], **train_over})
        if state["step"] >= tcfg.steps:
            print(
                f"{out} already reached step {state['step']} (--steps {tcfg.steps}); nothing to do."
            )
            return 0
    elif args.init_from is not None:
        from .pretrained import load_pretrained

        if model_over or args.preset is not None:
            raise SystemExit(
                "ddlm train: --init-from takes the model config from the checkpoint; drop "
                f"--preset and the model options {sorted(model_over)}"
            )
        try:
            model = load_pretrained(args.init_from)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"ddlm train: --init-from {args.init_from}: {err}") from err
        mcfg, tcfg = model, TrainConfig(**train_over)
    else:
        mcfg = ModelConfig.preset(args.preset or "tiny", **model_over)
        tcfg = TrainConfig(**train_over)
    trainer = Trainer(mcfg, tcfg, data=args.data, out_dir=out, resume=args.resume)
    if trainer.is_main:
        n = trainer.model.num_params()
        kind = "an autoregressive" if trainer.model.config.causal else "a diffusion"
        print(
            f"training {kind} model: {n:,} parameters on {trainer.device}, amp={tcfg.amp} -> {out}"
        )
    received: list[int] = []

    def on_signal(signum, frame):
        if received:  # a second signal: stop at once
            raise KeyboardInterrupt
        received.append(signum)
        print(
            f"\n{signal.Signals(signum).name}: saving a checkpoint, then exiting", file=sys.stderr
        )
        trainer.request_stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = trainer.fit()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        trainer.close()
    if trainer.is_main:
        val = result.get("val_loss")
        print(
            f"step {result['step']} {result['status']}" + (f", val_loss {val:.4f}" if val else "")
        )
    if received:
        return 128 + received[0]
    return 0


# ---- eval ------------------------------------------------------------------------------


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from .data import load_corpus, split
    from .diffusion import ar_bits_per_byte, bits_per_byte
    from .precision import resolve_device
    from .pretrained import load_pretrained

    device = resolve_device(args.device)
    model = load_pretrained(args.checkpoint, map_location=device)
    corpus = load_corpus(args.data)
    train, val = split(corpus, args.val_fraction)
    data = val if args.split == "val" else train
    seq_len = min(args.seq_len, model.config.max_seq_len - (1 if model.config.causal else 0))
    t0 = time.perf_counter()
    with torch.no_grad():
        if model.config.causal:
            r = ar_bits_per_byte(
                model, data, seq_len=seq_len, max_chunks=args.max_chunks, device=device
            )
        else:
            r = bits_per_byte(
                model,
                data,
                seq_len=seq_len,
                n_samples=args.samples,
                estimator=args.estimator,
                max_chunks=args.max_chunks,
                device=device,
                progress=not args.json,
            )
    result = {
        **r.to_dict(),
        "arch": "ar" if model.config.causal else "diffusion",
        "split": args.split,
        "data": str(args.data),
        "seq_len": seq_len,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        kind = "exact" if model.config.causal else "ELBO upper bound"
        err = (
            ""
            if model.config.causal
            else f" +/- {r.stderr:.4f} (stderr, {r.n_samples} samples/seq)"
        )
        print(
            f"{args.split} bits per byte ({kind}): {r.bits_per_byte:.4f}{err} "
            f"over {r.n_bytes:,} bytes"
        )
    return 0


# ---- sample / infill -------------------------------------------------------------------


def _show_step(total: int):
    def show(step: int, trace_step) -> None:
        print(f"[{step:>3}/{total}] {trace_step.text()!r}", flush=True)

    return show


def cmd_sample(args: argparse.Namespace) -> int:
    from .pretrained import load_pretrained
    from .sampling import generate, generate_ar

    model = load_pretrained(args.checkpoint)
    if model.config.causal:
        g = generate_ar(
            model, args.prompt, args.length, temperature=args.temperature, seed=args.seed
        )
    else:
        g = generate(
            model,
            args.prompt,
            args.length,
            args.steps,
            strategy=args.strategy,
            block_length=args.block_length,
            temperature=args.temperature,
            threshold=args.threshold,
            seed=args.seed,
            callback=_show_step(args.steps) if args.show_steps else None,
        )
    if args.show_steps:
        print(f"--- {g.nfe} network evaluations ---")
    print(args.prompt + g.text)
    return 0


def cmd_infill(args: argparse.Namespace) -> int:
    from .pretrained import load_pretrained
    from .sampling import infill

    model = load_pretrained(args.checkpoint)
    holes = args.text.count("\u2588")
    steps = args.steps or holes
    g = infill(
        model,
        args.text,
        steps=steps,
        strategy=args.strategy,
        block_length=args.block_length,
        temperature=args.temperature,
        threshold=args.threshold,
        seed=args.seed,
        callback=_show_step(steps) if args.show_steps else None,
    )
    print(g.text)
    return 0


# ---- parser ----------------------------------------------------------------------------


def _sampling_options(p: argparse.ArgumentParser) -> None:
    from .sampling import STRATEGIES

    p.add_argument(
        "--checkpoint",
        default="tiny",
        help="a run/model directory or a shipped name (default: tiny)",
    )
    p.add_argument("--steps", type=int, help="denoising steps")
    p.add_argument("--strategy", choices=STRATEGIES, default="low_confidence")
    p.add_argument("--block-length", type=int, default=None, help="semi-autoregressive block size")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--threshold", type=float, default=None, help="confidence threshold in (0, 1]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-steps", action="store_true", help="print every denoising step")


def build_parser() -> argparse.ArgumentParser:
    from .model import PRESETS, ModelConfig
    from .train import TrainConfig

    parser = _Parser(prog="ddlm", description="Byte-level masked diffusion language models.")
    parser.add_argument("--version", action="version", version=f"ddlm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="fine-tune: start from these weights (a model directory or a shipped name); "
        "ignored with --resume, which continues from the run's own checkpoint",
    )
    _add_dataclass_options(p, TrainConfig, "training options")
    _add_dataclass_options(p, ModelConfig, "model options (override the preset)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="validation bits per byte of a checkpoint")
    p.add_argument("--checkpoint", required=True, help="a run/model directory or a shipped name")
    p.add_argument("--data", default="pydoc")
    p.add_argument("--split", choices=("val", "train"), default="val")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument(
        "--samples", type=int, default=8, help="Monte Carlo samples per sequence (diffusion)"
    )
    p.add_argument(
        "--estimator", choices=("l", "t"), default="l", help="ELBO estimator (see bits_per_byte)"
    )
    p.add_argument(
        "--max-chunks", type=int, default=64, help="evaluate at most this many sequences"
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("sample", help="generate text after a prompt")
    p.add_argument("--prompt", required=True)
    p.add_argument("--length", type=int, default=128)
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
    if args.command == "sample" and args.steps is None:
        args.steps = args.length
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError, ConnectionError) as e:
        sys.stderr.write(f"ddlm {args.command}: error: {e}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
