"""A byte as digits, and the ids of partly masked bytes (the input side of partial masking).

`ddlm.subbyte` masks each digit of a byte on its own (MDM-Prime, arXiv 2505.18495); this
module holds what the model needs for that: which bits form each digit, one input id for every
partly masked byte, and `DigitEmbedding`, which turns those ids into vectors.

With `subtokens = s` (1, 2, 4 or 8) a byte is s digits of w = 8 / s bits, in base b = 2^w;
digit j holds bits [w j, w (j + 1)). A fully visible byte keeps its byte id, a fully masked one
is MASK, PAD and EOS keep theirs, and each partly masked byte gets an id above the specials
(3^8 - 2^8 - 1 = 6,304 of them for bits). With s = 1 there are none.

Shapes: x0 (B, T) int64 ids; visible (B, T) int64, a bit mask 0..255 of the bits shown.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn as nn

from .tokenizer import EOS_ID, MASK_ID, PAD_ID, VOCAB_SIZE

SUBTOKENS = (1, 2, 4, 8)  # digits per byte
EMBEDDINGS = ("table", "sum")  # how a partly masked byte is embedded (see DigitEmbedding)
ALL_BITS = 255


@dataclass(frozen=True)
class DigitCode:
    """The digits of a byte for one `subtokens` s, and the ids of partly masked bytes."""

    s: int

    def __post_init__(self) -> None:
        if self.s not in SUBTOKENS:
            raise ValueError(f"subtokens must be one of {SUBTOKENS}, got {self.s!r}")

    @property
    def width(self) -> int:  # bits per digit
        return 8 // self.s

    @property
    def base(self) -> int:
        return 2**self.width

    @functools.cached_property
    def digit_bits(self) -> torch.Tensor:
        """(s,) the bit mask of each digit: digit j covers bits [w j, w (j + 1)). Built once
        per code (the loss reads it every step); callers never write into it."""
        return torch.tensor([(self.base - 1) << (self.width * j) for j in range(self.s)])

    @functools.cached_property
    def _tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        # A digit state is 0..b-1 (shown) or b (masked); a byte's s states, read in base
        # b + 1, give a code in 0..(b+1)^s - 1. id_of_code maps it to the network's id;
        # digits_of_id maps every id back to its s digit states (specials: all masked).
        b, s = self.base, self.s
        codes = torch.arange((b + 1) ** s)
        states = torch.stack([(codes // (b + 1) ** j) % (b + 1) for j in range(s)], -1)
        shown = states < b  # (codes, s)
        byte = (states.clamp_max(b - 1) * b ** torch.arange(s)).sum(-1)
        partial = shown.any(-1) & ~shown.all(-1)
        id_of_code = torch.where(shown.all(-1), byte, torch.full_like(codes, MASK_ID))
        id_of_code[partial] = VOCAB_SIZE + torch.arange(int(partial.sum()))
        digits_of_id = torch.full((VOCAB_SIZE + int(partial.sum()), s), b)
        digits_of_id[id_of_code] = states
        digits_of_id[[PAD_ID, EOS_ID]] = b
        return id_of_code, digits_of_id

    @property
    def n_ids(self) -> int:
        """Input ids a model needs: the plain vocabulary plus one per partly masked byte."""
        return VOCAB_SIZE + (self.base + 1) ** self.s - self.base**self.s - 1

    def input_ids(self, x0: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """The network's input (B, T): each byte of x0 with only its `visible` bits shown."""
        byte = x0 < 256
        code = torch.zeros_like(x0)
        for j, bits in enumerate(self.digit_bits.tolist()):
            shown = (visible & bits) == bits
            digit = (x0 & bits) >> (self.width * j)
            code += torch.where(shown, digit, self.base) * (self.base + 1) ** j
        id_of_code = self._tables[0].to(x0.device)
        return torch.where(byte, id_of_code[code.clamp_max(len(id_of_code) - 1)], x0)

    def digits(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., s) digit states of input ids: 0..b-1 shown, b masked (MASK, PAD, EOS too)."""
        return self._tables[1].to(ids.device)[ids]


@functools.cache
def digit_code(subtokens: int) -> DigitCode:
    """The shared `DigitCode` for `subtokens` (its tables are built once)."""
    return DigitCode(subtokens)


# ---- the input embedding ----------------------------------------------------------------


class DigitEmbedding(nn.Module):
    """Embeds ids that may be partly masked bytes, as a sum of one vector per digit state.

    `embedding="table"` is an ordinary `nn.Embedding` over all `DigitCode.n_ids` ids: every
    partial state learns its own vector (6,563 rows for s = 8). `embedding="sum"` composes a
    byte from its digits: e(id) = sum_j E_j[digit_j] + S[PAD or EOS or neither], s tables of
    b + 1 rows each, so what the model learns about "the high nibble is 6" is shared by every
    byte that has it.
    """

    def __init__(self, subtokens: int, dim: int, embedding: str = "sum") -> None:
        super().__init__()
        if embedding not in EMBEDDINGS:
            raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
        self.code = digit_code(subtokens)
        self.mode = embedding
        if embedding == "table":
            self.table = nn.Embedding(self.code.n_ids, dim)
        else:
            self.digit = nn.Embedding(self.code.s * (self.code.base + 1), dim)
            self.special = nn.Embedding(3, dim)  # 0: a byte (any digits shown), 1: PAD, 2: EOS

    def forward(self, ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, dim)
        if self.mode == "table":
            return self.table(ids)
        offsets = torch.arange(self.code.s, device=ids.device) * (self.code.base + 1)
        digits = self.code.digits(ids) + offsets  # (B, T, s)
        kind = (ids == PAD_ID).long() + 2 * (ids == EOS_ID).long()
        return self.digit(digits).sum(-2) + self.special(kind)
