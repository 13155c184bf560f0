"""The training recipe: every option of a run (`TrainConfig`) and the learning-rate schedule.

The loop that follows the recipe is `ddlm.train.Trainer`; `ddlm train --help` shows each
field's help text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .configs import from_dict, option
from .diffusion import DEFAULT_MASK_EPS, MASKINGS, WEIGHTINGS
from .precision import AMP_MODES, DEVICES

# Keys of train_config.json that are not options: fields older versions wrote (the trainer
# used to draw samples itself), and "run", the facts the trainer records beside the options.
NOT_OPTIONS = ("sample_every", "sample_length", "sample_steps", "run")


@dataclass
class TrainConfig:
    steps: int = option(300, "optimizer steps to train for (in total, counting resumed ones)")
    batch_size: int = option(16, "sequences per micro-batch (per process under torchrun)")
    seq_len: int = option(256, "bytes per training sequence")
    lr: float = option(2e-3, "peak learning rate")
    min_lr_ratio: float = option(0.1, "the cosine decays to lr * min_lr_ratio")
    warmup_steps: int = option(
        30, "linear warmup over this many steps: step k (from 0) runs at lr * (k + 1) / this"
    )
    weight_decay: float = option(0.1, "AdamW decoupled weight decay (matrices only)")
    beta1: float = option(0.9, "AdamW first-moment decay")
    beta2: float = option(0.95, "AdamW second-moment decay")
    grad_accum: int = option(1, "micro-batches per optimizer step")
    grad_clip: float = option(1.0, "clip the global gradient norm to this (0 = off)")
    amp: str = option(
        "auto", "16-bit autocast; fp16 is CUDA only, with a gradient scaler", choices=AMP_MODES
    )
    device: str = option("auto", "where to train; auto = CUDA if available", choices=DEVICES)
    compile: bool = option(
        False,
        "wrap the model in torch.compile (20-60 s of compiling, again per new length): 1.2-1.5x"
        " faster steps on an Intel Xeon with AMX, not on every CPU (bench/RESULTS.md)",
    )
    fuse: bool = option(
        False,
        "run RMSNorm and the Mish gate as one compiled loop each (ddlm.fused; some seconds of"
        " compiling, again per new length): about 1.1x faster bf16 steps on an Intel Xeon with"
        " AMX (bench/RESULTS.md)",
    )
    mask_eps: float = option(DEFAULT_MASK_EPS, "smallest masking rate t (diffusion loss)")
    stratified_t: bool = option(True, "low-discrepancy draw of t across the batch (MDLM)")
    masking: str = option(
        "rate",
        "diffusion loss: 'rate' masks each byte with probability t, weight 1/t; 'count' masks "
        "exactly ceil(t n) of n bytes, weight n/l (LLaDA Eq. 6)",
        choices=MASKINGS,
    )
    t_power: float = option(
        1.0,
        "importance-sample t = u^power (u uniform), weighted to keep the same ELBO; 1 = uniform",
    )
    subs: bool = option(
        False, "MDLM's SUBS: MASK and PAD logits at -inf in the loss (a clean byte is neither)"
    )
    complementary: bool = option(
        False,
        "each sequence twice per batch, with complementary masks (half as many sequences)",
    )
    weighting: str = option(
        "elbo",
        "diffusion loss: 'elbo' weighs a masked byte by 1/t (the bound); 'flat' averages the "
        "masked bytes' cross-entropy with no 1/t (lower variance, not a bound; val_loss and "
        "`ddlm eval` stay the ELBO)",
        choices=WEIGHTINGS,
    )
    random_length_frac: float = option(
        0.0, "fraction of batches cut to a random length (LLaDA uses 0.01)"
    )
    prompt_frac: float = option(
        0.0, "leading fraction of each sequence kept clean as a prompt (diffusion)"
    )
    clean_prefix_frac: float = option(
        0.0, "fraction of batches whose first k ~ U{0..T-17} bytes stay clean (diffusion)"
    )
    eos: bool = option(
        False, "end each document of the corpus with EOS, so the model learns to end a text"
    )
    val_fraction: float = option(0.1, "last fraction of the corpus held out for validation")
    eval_every: int = option(100, "steps between validation losses (0 = only at the end)")
    eval_batches: int = option(8, "validation batches per evaluation")
    ckpt_every: int = option(100, "steps between checkpoints (0 = only at the end)")
    log_every: int = option(10, "steps between metric records")
    seed: int = option(0, "seeds the weights, the data order and the masks")

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

        for f in dataclasses.fields(self):  # every field: its type, then its choices
            value, kind = getattr(self, f.name), _KINDS[f.type]
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
                raise bad(f.name, f"must be {_KIND_NAMES[f.type]}")
            if kind is not str and not math.isfinite(value):
                raise bad(f.name, "must be finite")
            if f.metadata.get("choices") and value not in f.metadata["choices"]:
                raise bad(f.name, f"accepted values are {f.metadata['choices']}")
        for f in ("steps", "batch_size", "seq_len", "grad_accum", "eval_batches", "log_every"):
            if getattr(self, f) <= 0:
                raise bad(f, "must be a positive integer")
        for f in ("warmup_steps", "eval_every", "ckpt_every", "seed"):
            if getattr(self, f) < 0:
                raise bad(f, "must be a non-negative integer")
        if self.lr <= 0:
            raise bad("lr", "must be positive")
        checks = {
            "min_lr_ratio": 0 <= self.min_lr_ratio <= 1,
            "weight_decay": self.weight_decay >= 0,
            "grad_clip": self.grad_clip >= 0,
            "beta1": 0 <= self.beta1 < 1,
            "beta2": 0 <= self.beta2 < 1,
            "mask_eps": 0 <= self.mask_eps < 1,
            "t_power": self.t_power > 0,
            "random_length_frac": 0 <= self.random_length_frac <= 1,
            "prompt_frac": 0 <= self.prompt_frac < 1,
            "clean_prefix_frac": 0 <= self.clean_prefix_frac <= 1,
            "val_fraction": 0 < self.val_fraction < 1,
        }
        for f, ok in checks.items():
            if not ok:
                raise bad(f, "is out of range (see `ddlm train --help`)")
        if self.complementary and (
            self.batch_size % 2 or self.masking != "rate" or self.t_power != 1.0
        ):
            raise bad(
                "complementary",
                "needs an even batch_size, masking='rate' and t_power=1 (each sequence twice, "
                "its rates drawn in pairs t and 1 - t)",
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        return from_dict(cls, d, retired=NOT_OPTIONS)


# A field's annotation (a string, under `from __future__ import annotations`) -> what it accepts.
_KINDS = {"int": int, "float": (int, float), "bool": bool, "str": str}
_KIND_NAMES = {"int": "an integer", "float": "a number", "bool": "True or False", "str": "a string"}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then a cosine that reaches cfg.lr * cfg.min_lr_ratio at step
    cfg.steps (just after the last step, whose index is cfg.steps - 1)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))
