"""The trainer: AdamW, warmup + cosine schedule, mixed precision, exact resume.

The loop only (minGPT's shape): draw a batch, compute the loss, accumulate, clip, step the
optimizer, follow the schedule, and tell the callbacks. The trainer takes built parts: a model
(`build_model` seeds, then builds, so a run follows from its configs), a corpus tensor
(`data.load_corpus`) and an optimizer (by default `configure_optimizer`'s AdamW); the command
line builds them from its options. Everything else is someone else's:
the loss is `objectives.loss` (the masked-diffusion loss, or next-byte cross-entropy for a
`causal=True` twin), batch shaping is `data.random_length` and
`diffusion.clean_prefix_length`, the run directory is `checkpoint`, processes under
torchrun are `distributed`, and logged samples and live plots are callbacks
(`callbacks.LogSamples`, `widgets.loss_plot`).

Resuming restores weights, optimizer moments, gradient-scaler state, the step, and every
random generator (data crops, masking, dropout), so on CPU in float32 a resumed run is
bit-identical to an uninterrupted one. It refuses a corpus other than the one the run trained
on, unless asked to go on with new data (`new_data=True`). While it writes the run directory
(resuming, `fit`), the trainer holds the directory's lock: a second writer is refused.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from . import checkpoint, distributed, fused, objectives
from .data import Batcher, corpus_sha256, random_length, split
from .diffusion import clean_prefix_length
from .files import CheckpointError
from .model import DiffusionLM, ModelConfig
from .precision import autocast, dtype_name, resolve_amp, resolve_device
from .tokenizer import EOS_ID
from .train_config import TrainConfig, lr_at


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay matrices only; norms' gains and 1-D tensors keep their scale."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def build_model(config: ModelConfig, seed: int) -> DiffusionLM:
    """A fresh model for `config`, its weights drawn right after `torch.manual_seed(seed)`.

    `build_model(model_config, train.seed)` is how a run builds its model, so the run follows
    from its two configs. The global generator is left where the draw ends, and dropout draws
    on from there: that too follows from the seed."""
    if not isinstance(config, ModelConfig):
        raise TypeError(f"build_model takes a ModelConfig, got {type(config).__name__}")
    torch.manual_seed(seed)
    return DiffusionLM(config)


def configure_optimizer(model: torch.nn.Module, train: TrainConfig) -> torch.optim.AdamW:
    """The trainer's default optimizer (minGPT's `configure_optimizers`): AdamW over
    `param_groups`, with the config's lr, betas and weight decay. The trainer then sets each
    step's learning rate by the schedule (`lr_at`), in every group."""
    groups = param_groups(model, train.weight_decay)
    return torch.optim.AdamW(groups, lr=train.lr, betas=(train.beta1, train.beta2))


def _check_parts(model, train, data) -> None:
    """Refuse a model, config or corpus the trainer cannot use, naming what to pass instead."""
    if not isinstance(model, DiffusionLM):
        raise TypeError(
            f"Trainer takes a built model, not a {type(model).__name__}: DiffusionLM(config) or "
            "ddlm.train.build_model(config, seed)"
        )
    if not isinstance(train, TrainConfig):
        raise TypeError(f"Trainer takes a TrainConfig, not a {type(train).__name__}")
    if not isinstance(data, torch.Tensor):
        raise TypeError(
            f"Trainer takes the corpus as a 1-D tensor of ids, not a {type(data).__name__}: "
            "ddlm.data.load_corpus(source, eos=train.eos)"
        )
    if data.dim() != 1:
        raise ValueError(f"the corpus must be a 1-D tensor of ids, got shape {tuple(data.shape)}")
    if train.seq_len > model.config.max_seq_len:
        raise ValueError(
            f"TrainConfig.seq_len={train.seq_len} exceeds the model's max_seq_len="
            f"{model.config.max_seq_len}"
        )
    objectives.check_diffusion_options(
        model, prompt_frac=train.prompt_frac, clean_prefix_frac=train.clean_prefix_frac
    )


def _check_optimizer(optimizer, model: DiffusionLM) -> None:
    """An optimizer given to the trainer must step this model's parameters (one built over
    another model, or over this one before `deepened`, would train nothing here)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, not a {type(optimizer).__name__}"
        )
    own = {id(p) for p in model.parameters()}
    if any(id(p) not in own for group in optimizer.param_groups for p in group["params"]):
        raise ValueError(
            "the optimizer holds parameters that are not this model's: build it over "
            "model.parameters(), e.g. ddlm.train.configure_optimizer(model, train)"
        )


Callback = Callable[[dict], "dict | None"]


class Trainer:
    """Trains a DiffusionLM (or its causal twin) on a corpus, from built parts.

    `model` is a DiffusionLM (`build_model(config, train.seed)` for a fresh one), `data` the
    corpus as a 1-D tensor of ids (`data.load_corpus`), and `optimizer` one over the model's
    parameters; None means `configure_optimizer(model, train)`. The trainer moves the model
    to its device (an optimizer built before that still holds its parameters) and sets the
    learning rate of every group each step. With `out_dir`, the run is checkpointed there;
    `resume=True` continues from the checkpoint found there, its weights and optimizer state
    loaded into the model and optimizer given, on the corpus it trained on, or on another one
    with `new_data=True` (the data position then restarts, and train_config.json records the
    change).
    `callbacks` receive every metric record (a dict) as it is made; one that returns a dict
    adds its items to the record before it is logged (how `LogSamples` logs a sample).
    """

    def __init__(
        self,
        model: DiffusionLM,
        train: TrainConfig,
        data: torch.Tensor,
        optimizer: torch.optim.Optimizer | None = None,
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        callbacks: list[Callback] | None = None,
        progress: bool = True,
        new_data: bool = False,
    ):
        _check_parts(model, train, data)
        if optimizer is not None:
            _check_optimizer(optimizer, model)
        if resume and out_dir is None:
            raise ValueError("resume=True needs out_dir")
        self.cfg, self.progress = train, progress
        self.callbacks = list(callbacks or [])
        self._stop_requested, self._stop_at = False, None
        self.world = distributed.setup(resolve_device(train.device))
        self.device, self.is_main = self.world.device, self.world.is_main
        self.amp_dtype = resolve_amp(train.amp, self.device)
        self._set_data(data)
        self.model = model.to(self.device)
        self.optimizer = optimizer if optimizer is not None else configure_optimizer(model, train)
        fp16 = self.amp_dtype == torch.float16 and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.step, self.tokens_seen, self.skipped_steps, self.elapsed = 0, 0, 0, 0.0
        self._open_run(out_dir, resume, new_data)
        net = distributed.wrap(self.model, self.world)
        self.net = torch.compile(net) if train.compile else net

    def _set_data(self, corpus: torch.Tensor) -> None:
        """The split, its fingerprint, and the generators of crops and masks (one per rank)."""
        cfg, rank = self.cfg, self.world.rank
        self.train_data, self.val_data = split(corpus, cfg.val_fraction)
        self.corpus_id = {"sha256": corpus_sha256(corpus), "size": len(corpus)}
        self.batcher = Batcher(self.train_data, cfg.seq_len, cfg.batch_size, cfg.seed + rank)
        Batcher(self.val_data, cfg.seq_len, 1)  # fails early if validation is too short
        self.mask_gen = torch.Generator().manual_seed(cfg.seed + 10_000 + rank)

    def _open_run(self, out_dir, resume: bool, new_data: bool) -> None:
        """Take the run directory: resume the run in it, or refuse one already there."""
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run = checkpoint.RunDir(out_dir) if out_dir is not None else None
        self.writer = self.run if self.is_main else None  # rank 0 writes the run directory
        self.saving, self.data_changes = False, []
        self._on_disk = None  # the step of the checkpoint this trainer last read or wrote
        with self._lock():
            if resume:
                self._resume(new_data)
            elif self.run is not None and self.run.has_run():
                raise FileExistsError(
                    f"{self.out_dir} already holds a training run; pass resume=True (--resume) "
                    "to continue it, or choose another directory"
                )

    def request_stop(self) -> None:
        """Ask the loop to save a checkpoint and return after the current step (signal-safe)."""
        self._stop_requested = True

    def fit(self, stop_after: int | None = None) -> dict:
        """Train until `steps` (or a stop request). Returns the last metric record.

        `stop_after=N` saves a checkpoint and returns once step N is done, without touching
        the schedule (which still runs to `steps`): a long run split into sittings, each one
        an exact, repeatable command, continued with `resume=True`."""
        cfg = self.cfg
        if self.step >= cfg.steps:
            return {"step": self.step, "status": "already-complete"}
        if stop_after is not None and stop_after <= self.step:
            raise ValueError(f"stop_after={stop_after} is not after the run's step {self.step}")
        self._stop_requested, self._stop_at = False, stop_after
        with self._lock():
            if self.writer is not None and self.writer.step() != self._on_disk:
                raise CheckpointError(
                    f"the run in {self.out_dir} moved on to step {self.writer.step()} since "
                    f"this Trainer last saw it at step {self._on_disk}; resume it with a new "
                    "Trainer"
                )
            self._write_configs()
            last = self._loop()
            self.save_checkpoint()
        if self.writer is not None:
            self.writer.close()
        status = "complete"
        if self.step < cfg.steps:
            status = "stopped" if self.step == stop_after else "interrupted"
        return {**last, "step": self.step, "status": status}

    def _done(self) -> bool:
        """Is this the last step of this call of fit (the schedule's end, stop_after, or a
        stop request)?"""
        return self.step >= self.cfg.steps or self.step == self._stop_at or self._stop_requested

    def _loop(self) -> dict:
        from tqdm.auto import tqdm

        cfg = self.cfg
        show = self.progress and self.is_main
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not show, desc="train")
        meter, last = _Meter(), {}
        # TrainConfig.fuse: RMSNorm and the Mish gate as compiled loops (ddlm.fused)
        with fused.fused() if cfg.fuse else nullcontext():
            try:
                while not self._done():
                    t0 = time.perf_counter()
                    loss, tokens = self.train_step()
                    self.elapsed += time.perf_counter() - t0
                    self.step += 1
                    self.tokens_seen += tokens
                    meter.add(loss, tokens)
                    bar.update(1)
                    record = self._record(meter)
                    if record is not None:
                        last = self._emit(record)
                        bar.set_postfix(loss=f"{last.get('loss', float('nan')):.3f}")
                        if "val_loss" in last and show:
                            bar.write(f"step {self.step}: val_loss {last['val_loss']:.4f}")
                    if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and not self._done():
                        self.save_checkpoint()  # the last step's is fit's
            finally:
                bar.close()
        return last

    def train_step(self) -> tuple[float, int]:
        """One optimizer step over grad_accum micro-batches: (mean loss, tokens seen)."""
        cfg = self.cfg
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, cfg)
        self.net.train()
        total, tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            x0 = random_length(next(self.batcher), cfg.random_length_frac, self.mask_gen)
            x0 = x0.to(self.device, non_blocking=True)
            tokens += x0.numel() * self.world.size
            last = micro == cfg.grad_accum - 1
            sync = nullcontext() if last or self.world.size == 1 else self.net.no_sync()
            with sync:  # DDP averages gradients only on the last micro-batch's backward
                with autocast(self.device, self.amp_dtype):
                    loss = self._loss(self.net, x0, self.mask_gen, train=True)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        norm = None
        if cfg.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        finite = math.isfinite(total) and (norm is None or bool(torch.isfinite(norm)))
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        if self.scaler.is_enabled():  # the scaler itself skips a step whose gradients overflowed
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.skipped_steps += int(self.scaler.get_scale() < scale)
        elif finite:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        return total, tokens

    @torch.no_grad()
    def evaluate(self) -> float:
        """Validation loss (nats per byte) on a fixed set of batches and masks."""
        cfg = self.cfg
        val = Batcher(self.val_data, cfg.seq_len, cfg.batch_size, seed=1234)
        gen = torch.Generator().manual_seed(4321)
        was_training = self.model.training
        self.model.eval()
        try:
            total = 0.0
            for _ in range(cfg.eval_batches):
                with autocast(self.device, self.amp_dtype):
                    total += self._loss(self.model, next(val).to(self.device), gen).item()
        finally:
            self.model.train(was_training)
        return total / cfg.eval_batches

    def _loss(self, net, x0: torch.Tensor, gen: torch.Generator, train: bool = False):
        # Training draws the clean prefix (and t stratified or not); evaluation keeps it fixed.
        cfg = self.cfg
        prefix = cfg.clean_prefix_frac if train else 0.0
        return objectives.loss(
            net,
            self.model,
            x0,
            eps=cfg.mask_eps,
            stratified=cfg.stratified_t if train else True,
            masking=cfg.masking,
            t_power=cfg.t_power,
            subs=cfg.subs,
            complementary=cfg.complementary and train,
            weighting=cfg.weighting if train else "elbo",  # validation reports the ELBO
            generator=gen,
            prompt_len=clean_prefix_length(x0.shape[1], cfg.prompt_frac, prefix, gen),
        )

    def _record(self, meter: _Meter) -> dict | None:
        """The metric record for this step, if one is due (log, eval, or the last step)."""
        cfg, step = self.cfg, self.step
        record = None
        if step % cfg.log_every == 0 or self._done():
            record = {"step": step, **meter.take(), "lr": lr_at(step - 1, cfg)}
            record.update(tokens=self.tokens_seen, skipped_steps=self.skipped_steps)
            record["elapsed_s"] = round(self.elapsed, 3)
            if self.scaler.is_enabled():
                record["grad_scale"] = float(self.scaler.get_scale())
        if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.steps:
            record = {**(record or {"step": step}), "val_loss": self.evaluate()}
        return record

    def _emit(self, record: dict) -> dict:
        for cb in self.callbacks:
            extra = cb(record)
            if isinstance(extra, dict):
                record = {**record, **extra}
        if self.writer is not None:
            self.writer.log(record)
        return record

    # ---- the run directory (see ddlm.checkpoint) ---------------------------------------

    def run_facts(self) -> dict:
        """What the config alone does not say: the precision and device `auto` resolved to,
        and which corpus (its SHA-256 and size; the embedded one differs between Pythons).
        A corpus with EOS (int16 ids) is hashed as its little-endian int16 ids and counted in
        symbols, its EOS among them."""
        corpus = torch.cat([self.train_data, self.val_data])
        facts = {
            "amp": dtype_name(self.amp_dtype),
            "device": str(self.device),
            "corpus_sha256": self.corpus_id["sha256"],
        }
        if corpus.dtype == torch.uint8:
            facts["corpus_bytes"] = len(corpus)
        else:
            facts["corpus_symbols"] = len(corpus)
            facts["corpus_eos"] = int((corpus == EOS_ID).sum())
        if self.data_changes:  # resumed on new data on purpose (new_data=True)
            facts["data_changes"] = self.data_changes
        return {
            **facts,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }

    def _write_configs(self) -> None:
        if self.writer is not None:
            self.writer.write_train_config({**self.cfg.to_dict(), "run": self.run_facts()})

    def _lock(self):
        """The run directory's write lock, held by rank 0 (nothing without a run directory)."""
        return self.writer.lock() if self.writer is not None else nullcontext()

    def save_checkpoint(self) -> None:
        """Write a checkpoint into the run directory (rank 0 only), atomically as a unit; a
        step already saved is not saved again."""
        if self.run is None or self._on_disk == self.step:
            return
        if self.writer is not None:
            state = {
                **self.state_dict(),
                "train_config": self.cfg.to_dict(),
                "model_config": self.model.config.to_dict(),
                "world_size": self.world.size,
                "corpus": self.corpus_id,
            }
            self.saving = True  # the command line's second Ctrl-C waits for the save
            try:
                self.writer.save(self.model, self.optimizer, state)
            finally:
                self.saving = False
        distributed.barrier(self.world)
        self._on_disk = self.step

    def state_dict(self) -> dict:
        """The loop's own state: counters, the gradient scaler and every random generator
        (data crops, masks, dropout; tensors among the values). With the model's and the
        optimizer's state, it is all a checkpoint holds."""
        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "skipped_steps": self.skipped_steps,
            "elapsed_s": self.elapsed,
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng.torch": torch.get_rng_state(),
            "rng.data": self.batcher.state(),
            "rng.mask": self.mask_gen.get_state(),
        }
        if self.device.type == "cuda":
            state["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned (without "rng.data", the data position is
        left where it is)."""
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng.torch"])
        if "rng.data" in state:
            self.batcher.set_state(state["rng.data"])
        self.mask_gen.set_state(state["rng.mask"])
        if "rng.cuda" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng.cuda"], self.device)
        self.step, self.tokens_seen = state["step"], state["tokens_seen"]
        self.skipped_steps, self.elapsed = state["skipped_steps"], state.get("elapsed_s", 0.0)

    def _resume(self, new_data: bool) -> None:
        state = self.run.load(self.model, self.optimizer)
        change = self.run.corpus_change(state, self.corpus_id)
        if change and not new_data:
            was, now = change["from"], change["to"]
            raise CheckpointError(
                f"the run in {self.out_dir} trained on a corpus with sha256 {was['sha256']} "
                f"(size {was['size']}); this one has sha256 {now['sha256']} (size {now['size']}):"
                " resume on the same data, or pass new_data=True (--new-data) to go on with it"
            )
        recorded = (self.run.train_config() or {}).get("run", {}).get("data_changes", [])
        self.data_changes = recorded + ([change] if change and change not in recorded else [])
        if change is not None:  # on new data, the data position restarts
            del state["rng.data"]
        self.model.to(self.device)
        self.load_state_dict(state)
        self._on_disk = self.step
        if self.writer is not None:
            self.writer.truncate_log(self.step)

    def close(self) -> None:
        """Leave the process group cleanly (torchrun)."""
        distributed.teardown(self.world)


class _Meter:
    """Mean loss and tokens per second since the last record."""

    def __init__(self):
        self.loss, self.n, self.tokens, self.start = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.tokens += tokens
        if math.isfinite(loss):
            self.loss, self.n = self.loss + loss, self.n + 1

    def take(self) -> dict:
        now = time.perf_counter()
        out = {
            "loss": self.loss / max(self.n, 1),
            "tokens_per_s": self.tokens / max(now - self.start, 1e-9),
        }
        self.__init__()
        return out
