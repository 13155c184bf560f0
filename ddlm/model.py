"""The mask predictor: a bidirectional Transformer over bytes.

Nie et al., "Large Language Diffusion Models" (LLaDA), arXiv 2502.09992: the network of a
masked diffusion LM is an ordinary Transformer *without* a causal mask. Given a partly
masked sequence x_t it predicts, at every position, a distribution over the original byte.

    ids (B, T) -> embedding (B, T, dim)
               -> n_layers x [ x + Attn(RMSNorm(x)) ; x + FFN(RMSNorm(x)) ]   (pre-norm blocks)
               -> RMSNorm -> head -> logits (B, T, vocab_size), float32

The same class with `causal=True` is the autoregressive baseline of the same size.
Nothing here knows about time t: like LLaDA, the model infers the noise level from how
many MASKs it sees.

Weights live in a folder of two files, config.json and model.safetensors (the Hugging Face
layout); `DiffusionLM.from_pretrained` is the one loader, for shipped names and folders alike.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .attention import LatentAttention, LayerCache, MultiHeadAttention, build_attention_mask
from .configs import differences, from_dict, option
from .digits import EMBEDDINGS, SUBTOKENS, DigitEmbedding
from .ffn import ACTIVATIONS, GatedFFN, ffn_hidden_size
from .files import CheckpointError, load_tensors, read_json, refuse_pickle, save_tensors, write_json
from .norm import RMSNorm
from .tokenizer import VOCAB_SIZE

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
# The small checkpoints shipped in the repository's data/ folder (found from an editable
# install or a checkout on sys.path).
CHECKPOINT_DIR = Path(__file__).resolve().parent.parent / "data" / "checkpoints"
SHIPPED = ("tiny", "tiny-ar")


@dataclass
class ModelConfig:
    vocab_size: int = option(VOCAB_SIZE, "256 bytes + PAD, MASK, EOS")
    dim: int = option(192, "width of the residual stream")
    n_layers: int = option(6, "number of Transformer blocks", aliases=("--layers",))
    n_heads: int = option(6, "attention heads; head width is dim // n_heads", aliases=("--heads",))
    attention: str = option(
        "mla", "'mla' (latent attention) or 'mha' (plain multi-head)", choices=("mla", "mha")
    )
    kv_latent_dim: int = option(64, "MLA: width of the compressed key/value latent c_kv")
    q_latent_dim: int | None = option(None, "MLA: width of a query latent; None = full rank")
    rope: str = option(
        "full",
        "MLA: 'full' (rotate per-head q, k) or 'decoupled' (DeepSeek-V2)",
        choices=("full", "decoupled"),
    )
    rope_dim: int | None = option(
        None, "rotary features per head; None = head width (full) or half of it (decoupled)"
    )
    rope_theta: float = option(10000.0, "RoPE base; larger = slower-turning pairs, longer reach")
    ffn_activation: str = option(
        "mish",
        "gate activation: 'mish', 'silu' (SwiGLU) or 'gelu'",
        choices=tuple(sorted(ACTIVATIONS)),
    )
    ffn_hidden: int | None = option(None, "FFN hidden width; None = 8/3 * dim rounded up to 64")
    max_seq_len: int = option(1024, "longest sequence the model accepts (prompt + answer)")
    causal: bool = option(False, "True = autoregressive twin (causal mask, next-byte loss)")
    norm_eps: float = option(1e-6, "RMSNorm epsilon")
    dropout: float = option(0.0, "dropout on attention weights, FFN output and embeddings")
    subtokens: int = option(
        1,
        "partial masking (MDM-Prime): mask each byte's 8 bits in this many digits, each on "
        "its own: 1 (whole bytes, plain masking), 2 (nibbles), 4 (bit pairs) or 8 (bits)",
        choices=SUBTOKENS,
    )
    subtoken_embedding: str = option(
        "sum",
        "with subtokens > 1, how a partly masked byte is embedded: 'sum' (one vector per "
        "digit value, summed) or 'table' (one vector per partial state)",
        choices=EMBEDDINGS,
    )

    def __post_init__(self) -> None:
        def bad(field: str, why: str) -> ValueError:
            return ValueError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")

        for field in ("vocab_size", "dim", "n_layers", "n_heads", "max_seq_len"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) <= 0:
                raise bad(field, "must be a positive integer")
        if self.dim % self.n_heads:
            raise bad("dim", f"must be divisible by n_heads={self.n_heads}")
        if self.attention not in ("mla", "mha"):
            raise bad("attention", "accepted values are 'mla' and 'mha'")
        if self.rope not in ("full", "decoupled"):
            raise bad("rope", "accepted values are 'full' and 'decoupled'")
        if self.rope == "decoupled" and self.attention != "mla":
            raise bad("rope", "'decoupled' needs attention='mla'; use 'full' with 'mha'")
        if self.attention == "mla":
            if not 0 < self.kv_latent_dim <= self.dim:
                raise bad("kv_latent_dim", f"must be in 1..dim ({self.dim})")
            if self.q_latent_dim is not None and not 0 < self.q_latent_dim <= self.dim:
                raise bad("q_latent_dim", f"must be None or in 1..dim ({self.dim})")
        if self.rope_dim is not None:
            if self.rope_dim <= 0 or self.rope_dim % 2:
                raise bad("rope_dim", "must be a positive even number (RoPE rotates pairs)")
            if self.rope == "full" and self.rope_dim > self.head_dim:
                raise bad(
                    "rope_dim", f"must be at most the head width {self.head_dim} in 'full' mode"
                )
        elif self.head_dim % 2 or (self.rope == "decoupled" and self.head_dim % 4):
            raise bad("n_heads", "gives a head width whose rotary part is odd; set rope_dim")
        if self.ffn_activation not in ACTIVATIONS:
            raise bad("ffn_activation", f"accepted values are {sorted(ACTIVATIONS)}")
        if self.ffn_hidden is not None and self.ffn_hidden <= 0:
            raise bad("ffn_hidden", "must be None or a positive integer")
        if self.rope_theta <= 0:
            raise bad("rope_theta", "must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise bad("dropout", "must be in [0, 1)")
        if self.norm_eps <= 0:
            raise bad("norm_eps", "must be positive")
        if self.subtokens not in SUBTOKENS:
            raise bad("subtokens", f"accepted values are {SUBTOKENS}")
        if self.subtokens > 1 and self.causal:
            raise bad("subtokens", "partial masking is a diffusion objective; use 1 with causal")
        if self.subtoken_embedding not in EMBEDDINGS:
            raise bad("subtoken_embedding", f"accepted values are {EMBEDDINGS}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def hidden(self) -> int:
        """The FFN hidden width actually used."""
        return self.ffn_hidden or ffn_hidden_size(self.dim)

    @classmethod
    def preset(cls, name: str, **overrides) -> ModelConfig:
        """A named configuration (see PRESETS), with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return from_dict(cls, d)


PRESETS: dict[str, dict] = {
    # ~2.5 M parameters: learns words from the embedded corpus in minutes on 2 CPU cores.
    "tiny": dict(dim=192, n_layers=6, n_heads=6, kv_latent_dim=64, max_seq_len=1024),
    # ~9.7 M parameters: a better model for a GPU or a patient CPU.
    "small": dict(dim=384, n_layers=6, n_heads=6, kv_latent_dim=96, max_seq_len=1024),
    # The original project's configuration, its FFN width (3 x dim) included, so that speed
    # and size compare like for like (ddlm's own rule would give 1408).
    "seed": dict(
        dim=512, n_layers=8, n_heads=16, kv_latent_dim=128, max_seq_len=768, ffn_hidden=1536
    ),
}


class Block(nn.Module):
    """One pre-norm Transformer block: x + Attn(RMSNorm(x)), then x + FFN(RMSNorm(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        common = dict(
            dim=cfg.dim,
            n_heads=cfg.n_heads,
            max_seq_len=cfg.max_seq_len,
            rope_dim=cfg.rope_dim,
            rope_theta=cfg.rope_theta,
            causal=cfg.causal,
            dropout=cfg.dropout,
        )
        if cfg.attention == "mla":
            self.attn = LatentAttention(
                **common,
                kv_latent_dim=cfg.kv_latent_dim,
                q_latent_dim=cfg.q_latent_dim,
                rope=cfg.rope,
                norm_eps=cfg.norm_eps,
            )
        else:
            self.attn = MultiHeadAttention(**common)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = GatedFFN(cfg.dim, cfg.hidden, cfg.ffn_activation, cfg.dropout)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, cache: LayerCache | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), mask, cache)
        return x + self.ffn(self.ffn_norm(x))


class DiffusionLM(nn.Module):
    """The mask predictor (or, with `causal=True`, its autoregressive twin)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = (
            nn.Embedding(config.vocab_size, config.dim)
            if config.subtokens == 1
            else DigitEmbedding(config.subtokens, config.dim, config.subtoken_embedding)
        )
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.apply(self._init_weights)
        # GPT-2's scaled init: each block adds two residual branches, so shrink the
        # matrices that write into the residual stream by 1/sqrt(2 * n_layers).
        for name, p in self.named_parameters():
            if name.endswith(("attn.out.weight", "ffn.w2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        cache: list[LayerCache] | None = None,
    ) -> torch.Tensor:
        """ids (B, T) int64, attention_mask (B, T) bool or None -> logits (B, T, vocab) float32.

        `cache` (from `new_cache`) is an optional prefix cache: in "record" mode the full
        sequence is processed and the prefix stored; in "use" (or "extend") mode `ids` holds
        only the positions after the prefix, and logits are returned for those positions.
        """
        if ids.dim() != 2:
            raise ValueError(f"ids must be (B, T), got shape {tuple(ids.shape)}")
        T = ids.shape[1]
        start = cache[0].prefix_len if cache is not None and cache[0].mode != "record" else 0
        if start + T > self.config.max_seq_len:
            raise ValueError(
                f"sequence length {start + T} exceeds the model's "
                f"max_seq_len={self.config.max_seq_len}"
            )
        mask = build_attention_mask(attention_mask, self.config.causal, T)  # once for all layers
        x = self.drop(self.embed(ids))  # (B, T, dim)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, cache[i] if cache is not None else None)
        return self.head(self.norm(x)).float()  # (B, T, vocab), float32 even under autocast

    def deepened(self, n_layers: int) -> DiffusionLM:
        """A copy with `n_layers` blocks: the trained blocks in order, with the new ones spread
        evenly after them (after blocks 0, 2, 4 for 6 -> 9), each starting as the identity
        (its two output projections, attn.out and ffn.w2, are zero, so it adds nothing to the
        residual stream until training moves them). The deeper model computes exactly what
        this one does, and fine-tuning then has more capacity to work with (depth growth as in
        Gong et al., "Efficient Training of BERT by Progressively Stacking", ICML 2019, here
        function-preserving)."""
        old = self.config.n_layers
        if not isinstance(n_layers, int) or n_layers <= old:
            raise ValueError(f"n_layers must be an integer above the current {old}, got {n_layers}")
        grown = DiffusionLM(dataclasses.replace(self.config, n_layers=n_layers))
        new = n_layers - old
        # After which old block each new one goes: spread as evenly as the counts allow.
        after = [j * old // new for j in range(new)]
        order: list[int | None] = []
        for i in range(old):
            order.append(i)
            order.extend([None] * after.count(i))
        with torch.no_grad():
            for name in ("embed", "norm", "head"):
                getattr(grown, name).load_state_dict(getattr(self, name).state_dict())
            for target, source in zip(grown.blocks, order, strict=True):
                if source is not None:
                    target.load_state_dict(self.blocks[source].state_dict())
                else:
                    target.attn.out.weight.zero_()
                    target.ffn.w2.weight.zero_()
        p = next(self.parameters())
        return grown.to(device=p.device, dtype=p.dtype).train(self.training)

    def new_cache(self, prefix_len: int, suffix_from: int | None = None) -> list[LayerCache]:
        """An empty prefix cache (one LayerCache per block) in "record" mode. With
        `suffix_from`, a dual cache: the positions from there on are kept too, and "use" mode
        then takes the positions prefix_len..suffix_from-1 alone."""
        if not 0 < prefix_len <= self.config.max_seq_len:
            raise ValueError(
                f"prefix_len must be in 1..{self.config.max_seq_len}, got {prefix_len}"
            )
        if suffix_from is not None and not prefix_len < suffix_from <= self.config.max_seq_len:
            raise ValueError(
                f"suffix_from must lie after prefix_len={prefix_len}, got {suffix_from}"
            )
        return [LayerCache(prefix_len, suffix_from=suffix_from) for _ in self.blocks]

    # ---- counting -------------------------------------------------------------------

    def num_params(self, exclude_embedding: bool = False) -> int:
        """Number of parameters (optionally without the input embedding: a table, or the digit
        tables of `subtokens > 1`)."""
        n = sum(p.numel() for p in self.parameters())
        return n - sum(p.numel() for p in self.embed.parameters()) if exclude_embedding else n

    def matmul_params(self) -> int:
        """Parameters that take part in a matrix multiply per token (all Linear weights)."""
        return sum(m.weight.numel() for m in self.modules() if isinstance(m, nn.Linear))

    def flops_per_token(self, seq_len: int | None = None, training: bool = True) -> float:
        """Estimated FLOPs per token, the figure benchmarks divide into achieved FLOP/s.

        Forward: 2 FLOPs (multiply + add) per matmul weight, plus attention's two matrix
        products per layer, 2*T*H*d_qk for Q K^T and 2*T*H*d_v for A V (the full T x T
        square: bidirectional attention has no causal half to skip; we count the causal
        baseline the same way). Training is 3x forward (backward costs twice the forward).
        Embedding lookups, norms, softmax and activations are ignored (a few percent).
        """
        cfg = self.config
        T = seq_len or cfg.max_seq_len
        attn = self.blocks[0].attn
        d_qk = cfg.head_dim + getattr(attn, "q_rope_dim", 0)
        attention = cfg.n_layers * 2 * T * cfg.n_heads * (d_qk + cfg.head_dim)
        forward = 2 * self.matmul_params() + attention
        return float(3 * forward if training else forward)

    def kv_cache_elements_per_token(self) -> int:
        """Numbers kept per token by a key/value cache, summed over layers."""
        return sum(b.attn.kv_cache_elements_per_token() for b in self.blocks)

    # ---- files: config.json + model.safetensors ---------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, step: int | None = None) -> None:
        """Write config.json and model.safetensors into `directory` (created if needed)."""
        directory = Path(directory)
        refuse_pickle(directory)
        meta = {"format": "ddlm", "step": str(step if step is not None else -1)}
        write_json(directory / CONFIG_NAME, self.config.to_dict())
        save_tensors(directory / WEIGHTS_NAME, dict(self.state_dict()), meta)

    @classmethod
    def from_pretrained(
        cls,
        name_or_dir: str | os.PathLike,
        map_location: str | torch.device = "cpu",
        config: ModelConfig | None = None,
    ) -> DiffusionLM:
        """The one loader: a shipped model by name ("tiny", "tiny-ar") or a directory holding
        config.json and model.safetensors (a run directory works). Returned in eval mode.

        If `config` is given it must equal the stored one (otherwise CheckpointError).
        Nothing is unpickled.
        """
        directory = resolve_checkpoint(name_or_dir)
        try:
            stored = ModelConfig.from_dict(read_json(directory / CONFIG_NAME))
        except (TypeError, ValueError) as e:
            if isinstance(e, CheckpointError):
                raise
            raise CheckpointError(
                f"{directory / CONFIG_NAME} is not a valid ModelConfig ({e})"
            ) from e
        diff = differences(stored, config.to_dict()) if config is not None else {}
        if diff:
            raise CheckpointError(
                f"checkpoint config differs from the requested one: {diff} (requested, stored)"
            )
        model = cls(stored)
        weights = directory / WEIGHTS_NAME
        model.load_weights(load_tensors(weights), str(weights))
        return model.to(map_location).eval()

    def load_weights(self, tensors: dict[str, torch.Tensor], source: str) -> None:
        """Copy `tensors` into the model, with a clear error if they belong to another model."""
        own = self.state_dict()
        missing = sorted(set(own) - set(tensors))
        unexpected = sorted(set(tensors) - set(own))
        wrong = [k for k in own if k in tensors and own[k].shape != tensors[k].shape]
        details = []
        if missing:
            details.append(f"missing {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:3]}{' ...' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            details.append(
                f"{k} has shape {tuple(tensors[k].shape)}, model wants {tuple(own[k].shape)}"
            )
        if details:
            raise CheckpointError(
                f"the weights in {source} do not match this model's config: " + "; ".join(details)
            )
        self.load_state_dict(tensors)


def resolve_checkpoint(name_or_dir: str | os.PathLike) -> Path:
    """The directory of a shipped checkpoint name, or `name_or_dir` itself once checked."""
    name = str(name_or_dir)
    if name in SHIPPED:
        path = CHECKPOINT_DIR / name
        if not path.is_dir():
            raise CheckpointError(
                f"shipped checkpoint {name!r} not found at {path}; it comes with a checkout of the "
                "repository (install with `pip install -e .` from the checkout)"
            )
        return path
    path = Path(name).expanduser()
    refuse_pickle(path)
    if not path.exists():
        raise CheckpointError(
            f"{name!r} is neither a shipped checkpoint ({', '.join(SHIPPED)}) nor a directory"
        )
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a directory holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    return path


def load_pretrained(
    name_or_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> DiffusionLM:
    """Alias of `DiffusionLM.from_pretrained` (the name the notebooks use)."""
    return DiffusionLM.from_pretrained(name_or_dir, map_location=map_location)


def require_arch(model: DiffusionLM, causal: bool, caller: str, alternative: str) -> None:
    """Refuse a model of the other architecture, naming the function to use instead."""
    if bool(model.config.causal) != causal:
        kind = "a causal (autoregressive)" if model.config.causal else "a bidirectional (diffusion)"
        raise ValueError(f"{caller} got {kind} model; use {alternative} for it")
