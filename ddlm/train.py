"""The trainer: AdamW, warmup + cosine schedule, mixed precision, exact resume, DDP.

One loop trains both kinds of model: a bidirectional DiffusionLM with the masked-diffusion
loss (`diffusion.diffusion_loss`), or a `causal=True` twin with next-byte cross-entropy
(`diffusion.ar_loss`), so the two can be compared at equal size and compute.

A run directory (see `ddlm.checkpoint`) receives config.json, model.safetensors,
train_state.safetensors + train_state.json and metrics.jsonl. Resuming restores weights,
optimizer moments, gradient-scaler state, the step, and every random generator (data
crops, masking, dropout), so on CPU in float32 a resumed run is bit-identical to an
uninterrupted one.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel; each
rank draws different crops and masks, and only rank 0 writes files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from . import checkpoint as ckpt
from .data import Batcher, load_corpus, split
from .diffusion import DEFAULT_MASK_EPS, ar_loss, diffusion_loss
from .files import atomic_write_text
from .model import DiffusionLM, ModelConfig
from .precision import AMP_MODES, DEVICES, autocast, resolve_amp, resolve_device
from .sampling import generate, generate_ar

STATE_TENSORS = "train_state.safetensors"
STATE_JSON = "train_state.json"
TRAIN_CONFIG = "train_config.json"
METRICS = "metrics.jsonl"


@dataclass
class TrainConfig:
    steps: int = 300  # optimizer steps to train for (in total, counting resumed ones)
    batch_size: int = 16  # sequences per micro-batch (per process under torchrun)
    seq_len: int = 256  # bytes per training sequence
    lr: float = 2e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    warmup_steps: int = 30  # linear warmup from 0 to lr
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only)
    beta1: float = 0.9  # AdamW first-moment decay
    beta2: float = 0.95  # AdamW second-moment decay
    grad_accum: int = 1  # micro-batches per optimizer step
    grad_clip: float = 1.0  # clip the global gradient norm to this (0 = off)
    amp: str = "auto"  # "auto" | "bf16" | "fp16" (CUDA, with a gradient scaler) | "off"
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    compile: bool = False  # wrap the model in torch.compile
    mask_eps: float = DEFAULT_MASK_EPS  # smallest masking rate t (diffusion loss)
    stratified_t: bool = True  # low-discrepancy draw of t across the batch (MDLM)
    random_length_frac: float = 0.0  # fraction of batches cut to a random length (LLaDA uses 1%)
    prompt_frac: float = (
        0.0  # leading fraction of each sequence kept clean as a "prompt" (diffusion)
    )
    clean_prefix_frac: float = (
        0.0  # fraction of batches whose first k ~ U{0..T-16} bytes stay clean
    )
    val_fraction: float = 0.1  # last fraction of the corpus held out for validation
    eval_every: int = 100  # steps between validation losses (0 = never; always at the end)
    eval_batches: int = 8  # validation batches per evaluation
    sample_every: int = 100  # steps between logged samples (0 = never)
    sample_length: int = 64  # bytes per logged sample
    sample_steps: int = 32  # denoising steps per logged sample
    ckpt_every: int = 100  # steps between checkpoints (0 = only at the end)
    log_every: int = 10  # steps between metric lines
    seed: int = 0  # seeds the weights, the data order and the masks

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

        for f in ("steps", "batch_size", "seq_len", "grad_accum", "eval_batches", "log_every"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) <= 0:
                raise bad(f, "must be a positive integer")
        for f in ("warmup_steps", "eval_every", "sample_every", "ckpt_every", "seed"):
            if not isinstance(getattr(self, f), int) or getattr(self, f) < 0:
                raise bad(f, "must be a non-negative integer")
        if self.lr <= 0:
            raise bad("lr", "must be positive")
        if not 0 <= self.min_lr_ratio <= 1:
            raise bad("min_lr_ratio", "must be in [0, 1]")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise bad("weight_decay" if self.weight_decay < 0 else "grad_clip", "must be >= 0")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise bad("beta1", "beta1 and beta2 must be in [0, 1)")
        if self.amp not in AMP_MODES:
            raise bad("amp", f"accepted values are {AMP_MODES}")
        if self.device not in DEVICES:
            raise bad("device", f"accepted values are {DEVICES}")
        if not 0 <= self.mask_eps < 1:
            raise bad("mask_eps", "must be in [0, 1)")
        if not 0 <= self.random_length_frac <= 1:
            raise bad("random_length_frac", "must be in [0, 1]")
        if not 0 <= self.prompt_frac < 1:
            raise bad("prompt_frac", "must be in [0, 1)")
        if not 0 <= self.clean_prefix_frac <= 1:
            raise bad("clean_prefix_frac", "must be in [0, 1]")
        if not 0 < self.val_fraction < 1:
            raise bad("val_fraction", "must be in (0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then a cosine down to cfg.lr * cfg.min_lr_ratio at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    # Decay matrices only: norms' gains and 1-D tensors keep their scale.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    keep = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


class _MetricLog:
    """metrics.jsonl plus optional TensorBoard (used when the package is installed)."""

    def __init__(self, out_dir: Path | None, enabled: bool):
        self.path = out_dir / METRICS if (out_dir and enabled) else None
        self.tb = None
        if self.path is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(log_dir=str(out_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                self.tb = None

    def truncate_after(self, step: int) -> None:
        """Drop lines logged after `step` (a run killed after its last checkpoint)."""
        if self.path is None or not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
        atomic_write_text(self.path, "\n".join(kept) + ("\n" if kept else ""))

    def write(self, record: dict) -> None:
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self.tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class Trainer:
    """Trains a DiffusionLM (or its causal twin) on a byte corpus.

    `model` is a ModelConfig (a fresh model is built, seeded by `train.seed`) or a DiffusionLM.
    `data` is a corpus source for `load_corpus` or a 1-D uint8 tensor. With `out_dir`, the
    run is checkpointed there; `resume=True` continues from the checkpoint found there.
    `callbacks` receive every metric record (a dict) as it is logged.
    """

    def __init__(
        self,
        model: ModelConfig | DiffusionLM,
        train: TrainConfig,
        data: str | os.PathLike | torch.Tensor = "pydoc",
        out_dir: str | os.PathLike | None = None,
        resume: bool = False,
        callbacks: list[Callable[[dict], None]] | None = None,
        progress: bool = True,
    ):
        self.cfg = train
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks or [])
        self.progress = progress
        self._stop_requested = False

        # Processes: torchrun sets WORLD_SIZE/RANK/LOCAL_RANK.
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.is_main = self.rank == 0
        self.device = resolve_device(train.device)
        if self.world > 1:
            if self.device.type == "cuda":
                self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
                torch.cuda.set_device(self.device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.amp_dtype = resolve_amp(train.amp, self.device)

        corpus = data if isinstance(data, torch.Tensor) else load_corpus(data)
        self.train_data, self.val_data = split(corpus, train.val_fraction)

        torch.manual_seed(train.seed)
        if isinstance(model, ModelConfig):
            model = DiffusionLM(model)
        if train.seq_len > model.config.max_seq_len:
            raise ValueError(
                f"TrainConfig.seq_len={train.seq_len} exceeds the model's max_seq_len="
                f"{model.config.max_seq_len}"
            )
        if (train.prompt_frac or train.clean_prefix_frac) and model.config.causal:
            raise ValueError(
                "TrainConfig.prompt_frac and clean_prefix_frac apply to diffusion models, "
                "not causal ones"
            )
        self.model = model.to(self.device)
        self.batcher = Batcher(
            self.train_data, train.seq_len, train.batch_size, seed=train.seed + self.rank
        )
        Batcher(self.val_data, train.seq_len, 1)  # fails early if validation is too short
        self.mask_gen = torch.Generator().manual_seed(train.seed + 10_000 + self.rank)
        self.optimizer = torch.optim.AdamW(
            _param_groups(self.model, train.weight_decay),
            lr=train.lr,
            betas=(train.beta1, train.beta2),
        )
        self.scaler = torch.amp.GradScaler(
            self.device.type, enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda"
        )
        self.step = 0
        self.tokens_seen = 0
        self.skipped_steps = 0
        self.elapsed = 0.0
        self.log = _MetricLog(self.out_dir, self.is_main)
        if resume:
            if self.out_dir is None:
                raise ValueError("resume=True needs out_dir")
            self._load_checkpoint()
        elif self.out_dir is not None and (self.out_dir / STATE_JSON).exists():
            raise FileExistsError(
                f"{self.out_dir} already holds a training run; pass resume=True (--resume) to "
                "continue it, or choose another directory"
            )
        net = self.model
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)
        self.net = torch.compile(net) if train.compile else net

    # ---- public ----------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask the loop to save a checkpoint and return after the current step (signal-safe)."""
        self._stop_requested = True

    def fit(self) -> dict:
        """Train until `steps` (or a stop request). Returns the last metric record."""
        cfg = self.cfg
        from tqdm.auto import tqdm

        if self.step >= cfg.steps:
            return {"step": self.step, "status": "already-complete"}
        if self.out_dir is not None and self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            ckpt.write_json(self.out_dir / TRAIN_CONFIG, cfg.to_dict())
            ckpt.write_json(self.out_dir / ckpt.CONFIG_NAME, self.model.config.to_dict())
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (self.progress and self.is_main),
            desc="train",
            dynamic_ncols=True,
        )
        last: dict = {}
        window_tokens, window_start, window_loss, window_n = 0, time.perf_counter(), 0.0, 0
        status = "complete"
        try:
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                loss = self._train_step()
                self.elapsed += time.perf_counter() - t0
                self.step += 1
                step_tokens = self._step_tokens * self.world  # random-length batches count as cut
                self.tokens_seen += step_tokens
                window_tokens += step_tokens
                if math.isfinite(loss):
                    window_loss, window_n = window_loss + loss, window_n + 1
                bar.update(1)
                record: dict | None = None
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    now = time.perf_counter()
                    record = {
                        "step": self.step,
                        "loss": window_loss / max(window_n, 1),
                        "lr": lr_at(self.step - 1, cfg),
                        "tokens_per_s": window_tokens / max(now - window_start, 1e-9),
                        "tokens": self.tokens_seen,
                        "skipped_steps": self.skipped_steps,
                        "elapsed_s": round(self.elapsed, 3),
                    }
                    if self.scaler.is_enabled():
                        record["grad_scale"] = float(self.scaler.get_scale())
                    bar.set_postfix(
                        loss=f"{record['loss']:.3f}",
                        lr=f"{record['lr']:.1e}",
                        tok_s=f"{record['tokens_per_s']:.0f}",
                    )
                    window_tokens, window_start, window_loss, window_n = 0, now, 0.0, 0
                if (cfg.eval_every and self.step % cfg.eval_every == 0) or self.step == cfg.steps:
                    record = {**(record or {"step": self.step}), "val_loss": self.evaluate()}
                    self._say(bar, f"step {self.step}: val_loss {record['val_loss']:.4f}")
                if cfg.sample_every and self.step % cfg.sample_every == 0 and self.is_main:
                    record = {**(record or {"step": self.step}), "sample": self.sample()}
                    self._say(bar, f"step {self.step} sample: {record['sample']!r}")
                if record is not None:
                    self._emit(record)
                    last = record
                if cfg.ckpt_every and self.step % cfg.ckpt_every == 0 and self.step < cfg.steps:
                    self.save_checkpoint()
                if self._stop_requested:
                    status = "interrupted"
                    break
        finally:
            bar.close()
        self.save_checkpoint()
        self.log.close()
        return {**last, "step": self.step, "status": status}

    @torch.no_grad()
    def evaluate(self) -> float:
        """Validation loss (nats per byte) on a fixed set of batches and masks."""
        cfg = self.cfg
        val = Batcher(self.val_data, cfg.seq_len, cfg.batch_size, seed=1234)
        gen = torch.Generator().manual_seed(4321)
        was_training = self.model.training
        self.model.eval()
        total = 0.0
        try:
            for _ in range(cfg.eval_batches):
                x0 = next(val).to(self.device)
                with autocast(self.device, self.amp_dtype):
                    if self.model.config.causal:
                        loss = ar_loss(self.model, x0)
                    else:
                        loss = diffusion_loss(
                            self.model,
                            x0,
                            eps=cfg.mask_eps,
                            generator=gen,
                            prompt_len=self._prompt_len(x0),
                        )
                total += loss.item()
        finally:
            self.model.train(was_training)
        return total / cfg.eval_batches

    def sample(self, prompt: bytes | None = None) -> str:
        """A short sample continuing the start of the validation text (for the log)."""
        cfg = self.cfg
        prompt = prompt if prompt is not None else bytes(self.val_data[:32].tolist())
        room = self.model.config.max_seq_len - len(prompt)
        length = max(1, min(cfg.sample_length, room))
        if self.model.config.causal:
            return generate_ar(self.model, prompt, length, seed=0).text
        steps = max(1, min(cfg.sample_steps, length))
        return generate(self.model, prompt, length, steps, seed=0).text

    # ---- the step --------------------------------------------------------------------

    def _train_step(self) -> float:
        cfg = self.cfg
        lr = lr_at(self.step, cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.net.train()
        total = 0.0
        self._step_tokens = 0
        for micro in range(cfg.grad_accum):
            x0 = self._maybe_shorten(next(self.batcher)).to(self.device, non_blocking=True)
            self._step_tokens += x0.numel()
            sync = micro == cfg.grad_accum - 1 or self.world == 1
            ctx = (
                self.net.no_sync() if (not sync and hasattr(self.net, "no_sync")) else nullcontext()
            )
            with ctx:
                with autocast(self.device, self.amp_dtype):
                    if self.model.config.causal:
                        loss = ar_loss(self.net, x0)
                    else:
                        loss = diffusion_loss(
                            self.net,
                            x0,
                            eps=cfg.mask_eps,
                            stratified=cfg.stratified_t,
                            generator=self.mask_gen,
                            prompt_len=self._train_prompt_len(x0),
                        )
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.item() / cfg.grad_accum
        self.scaler.unscale_(self.optimizer)
        norm = (
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            if cfg.grad_clip > 0
            else None
        )
        finite = math.isfinite(total) and (norm is None or bool(torch.isfinite(norm)))
        if self.scaler.is_enabled():
            # The scaler skips the step itself when gradients overflowed; count it.
            scale_before = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scaler.get_scale() < scale_before:
                self.skipped_steps += 1
        elif finite:
            self.optimizer.step()
        else:
            self.skipped_steps += 1
        self.optimizer.zero_grad(set_to_none=True)
        return total

    def _maybe_shorten(self, x0: torch.Tensor) -> torch.Tensor:
        """With probability random_length_frac, cut the batch to a random length in 16..T.

        A model trained only on full windows has never seen a short sequence; at sampling time
        a short prompt plus answer is exactly that. LLaDA trains 1% of its data at random
        lengths for this reason. The draw uses the masking generator, so resume stays exact.
        """
        frac = self.cfg.random_length_frac
        if frac <= 0 or float(torch.rand(1, generator=self.mask_gen)) >= frac:
            return x0
        T = x0.shape[1]
        length = int(torch.randint(min(16, T), T + 1, (1,), generator=self.mask_gen))
        return x0[:, :length]

    def _prompt_len(self, x0: torch.Tensor) -> int:
        """Bytes kept clean at the start of each sequence (TrainConfig.prompt_frac)."""
        return int(self.cfg.prompt_frac * x0.shape[1])

    def _train_prompt_len(self, x0: torch.Tensor) -> int:
        """prompt_frac, or for a clean_prefix_frac share of batches a random clean prefix.

        Sampling continues a prompt: a clean prefix followed by a solid run of MASKs. Plain
        training at a high masking rate instead leaves clean bytes scattered everywhere, so a
        model can be good at one and poor at the other. A clean prefix of random length (as in
        LLaDA's supervised stage, where the prompt is never masked) shows it the sampling
        situation. Drawn from the masking generator, so resume stays exact.
        """
        frac = self.cfg.clean_prefix_frac
        if frac <= 0 or float(torch.rand(1, generator=self.mask_gen)) >= frac:
            return self._prompt_len(x0)
        T = x0.shape[1]
        return int(torch.randint(0, max(1, T - 16), (1,), generator=self.mask_gen))

    def _say(self, bar, message: str) -> None:
        if self.progress and self.is_main:
            bar.write(message)

    def _emit(self, record: dict) -> None:
        if self.is_main:
            self.log.write(record)
        for cb in self.callbacks:
            cb(record)

    # ---- checkpoints -----------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Write the run directory (rank 0 only). Every file is replaced atomically."""
        if self.out_dir is None:
            return
        if self.is_main:
            opt_tensors, opt_meta = ckpt.optimizer_to_tensors(self.optimizer)
            tensors = dict(opt_tensors)
            tensors["rng.torch"] = torch.get_rng_state()
            tensors["rng.data"] = self.batcher.state()
            tensors["rng.mask"] = self.mask_gen.get_state()
            if torch.cuda.is_available() and self.device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
            state = {
                "step": self.step,
                "tokens_seen": self.tokens_seen,
                "skipped_steps": self.skipped_steps,
                "elapsed_s": self.elapsed,
                "optimizer": opt_meta,
                "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
                "train_config": self.cfg.to_dict(),
                "model_config": self.model.config.to_dict(),
                "world_size": self.world,
            }
            # Order: state first, weights last. Each is atomic; on resume the step recorded
            # in all three must agree.
            ckpt.save_tensors(self.out_dir / STATE_TENSORS, tensors, {"step": str(self.step)})
            ckpt.write_json(self.out_dir / STATE_JSON, state)
            ckpt.save_pretrained(self.model, self.out_dir, step=self.step)
        if self.world > 1:
            dist.barrier()

    def _load_checkpoint(self) -> None:
        out = self.out_dir
        if not (out / STATE_JSON).exists():
            raise ckpt.CheckpointError(
                f"{out} holds no training state ({STATE_JSON}) to resume from"
            )
        state = ckpt.read_json(out / STATE_JSON)
        stored = ModelConfig.from_dict(state["model_config"])
        if stored != self.model.config:
            raise ckpt.CheckpointError(
                f"the run in {out} was trained with a different model config; "
                f"stored {stored}, requested {self.model.config}"
            )
        tensors = ckpt.load_tensors(out / STATE_TENSORS)
        from safetensors import safe_open

        with safe_open(out / STATE_TENSORS, framework="pt") as f:
            tensor_step = int((f.metadata() or {}).get("step", -1))
        weight_step = ckpt.weights_step(out)
        if not state["step"] == tensor_step == weight_step:
            raise ckpt.CheckpointError(
                f"the files in {out} come from different steps (state {state['step']}, optimizer "
                f"{tensor_step}, weights {weight_step}): the run was killed while saving; "
                "model.safetensors is still a complete model for from_pretrained"
            )
        ckpt.load_state_into(self.model, ckpt.load_tensors(out / ckpt.WEIGHTS_NAME), str(out))
        self.model.to(self.device)
        ckpt.optimizer_from_tensors(self.optimizer, tensors, state["optimizer"])
        if state.get("scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(tensors["rng.torch"])
        self.batcher.set_state(tensors["rng.data"])
        self.mask_gen.set_state(tensors["rng.mask"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.step = state["step"]
        self.tokens_seen = state["tokens_seen"]
        self.skipped_steps = state["skipped_steps"]
        self.elapsed = state.get("elapsed_s", 0.0)
        if self.is_main:
            self.log.truncate_after(self.step)

    def close(self) -> None:
        """Leave the process group cleanly (a barrier first, as torchrun needs)."""
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
