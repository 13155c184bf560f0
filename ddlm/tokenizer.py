"""Bytes as tokens: the byte-level tokenizer.

Every UTF-8 byte is its own token: ids 0..255 are the byte values themselves, so
any text (any language, code, emoji) is representable and there is nothing to train.
A few special ids sit above the bytes:

    PAD  = 256   fills the end of shorter sequences in a batch; never predicted
    MASK = 257   the absorbing state of masked diffusion: "this byte is unknown"
    EOS  = 258   end of text; lets a sampler produce text shorter than its canvas

`decode` shows MASK as the glyph U+2588 (FULL BLOCK, `█`); the sampler's infilling
uses the same glyph to mark bytes to fill, so what you see is what you can type.

Shapes: `encode` returns (T,) int64; `encode_batch` returns ids (B, T) and a
boolean attention mask (B, T) that is True on real bytes and False on padding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

N_BYTES = 256
PAD_ID = 256
MASK_ID = 257
EOS_ID = 258
SPECIAL_IDS = {"PAD": PAD_ID, "MASK": MASK_ID, "EOS": EOS_ID}
VOCAB_SIZE = 259

MASK_GLYPH = "\u2588"  # █, the visible placeholder for a masked byte
_MASK_GLYPH_BYTES = MASK_GLYPH.encode("utf-8")  # b'\xe2\x96\x88'


def _as_list(ids: torch.Tensor | Sequence[int] | Iterable[int]) -> list[int]:
    if isinstance(ids, torch.Tensor):
        if ids.dim() != 1:
            raise ValueError(
                f"expected a 1-D sequence of ids, got a tensor of shape {tuple(ids.shape)}"
            )
        return ids.tolist()
    return [int(i) for i in ids]


class ByteTokenizer:
    """UTF-8 bytes as token ids, plus PAD, MASK and EOS.

    >>> tok = ByteTokenizer()
    >>> tok.encode("hé").tolist()
    [104, 195, 169]
    """

    pad_id = PAD_ID
    mask_id = MASK_ID
    eos_id = EOS_ID
    vocab_size = VOCAB_SIZE
    mask_glyph = MASK_GLYPH

    def encode(self, text: str | bytes, *, glyph_as_mask: bool = False) -> torch.Tensor:
        """Text (UTF-8 encoded) or raw bytes -> (T,) int64 ids.

        With `glyph_as_mask=True`, each `█` in the text becomes one MASK id instead of
        its three UTF-8 bytes: this is how infilling marks the bytes to fill.
        """
        if isinstance(text, str):
            data = text.encode("utf-8")
        elif isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
        else:
            raise TypeError(f"encode expects str or bytes, got {type(text).__name__}")
        if not glyph_as_mask or _MASK_GLYPH_BYTES not in data:
            if not data:
                return torch.zeros(0, dtype=torch.long)
            return torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
        ids: list[int] = []
        for k, part in enumerate(data.split(_MASK_GLYPH_BYTES)):
            if k:
                ids.append(MASK_ID)
            ids.extend(part)
        return torch.tensor(ids, dtype=torch.long)

    def _check(self, ids: list[int]) -> None:
        for i in ids:
            if not 0 <= i < VOCAB_SIZE:
                raise ValueError(f"token id {i} is outside the vocabulary [0, {VOCAB_SIZE})")

    def decode(self, ids: torch.Tensor | Sequence[int]) -> str:
        """Ids -> readable text. Never raises on bytes that are not valid UTF-8.

        Runs of bytes are decoded with replacement characters (U+FFFD) where UTF-8
        is broken, e.g. when a MASK splits a multi-byte character. MASK shows as `█`;
        PAD and EOS are not shown.
        """
        ids = _as_list(ids)
        self._check(ids)
        out: list[str] = []
        run = bytearray()
        for i in ids:
            if i < N_BYTES:
                run.append(i)
                continue
            if run:
                out.append(run.decode("utf-8", errors="replace"))
                run.clear()
            if i == MASK_ID:
                out.append(MASK_GLYPH)
        if run:
            out.append(run.decode("utf-8", errors="replace"))
        return "".join(out)

    def decode_bytes(self, ids: torch.Tensor | Sequence[int]) -> bytes:
        """Ids -> the exact bytes they stand for; special ids are dropped."""
        ids = _as_list(ids)
        self._check(ids)
        return bytes(i for i in ids if i < N_BYTES)

    def encode_batch(
        self, texts: Sequence[str | bytes], pad_to: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode several texts and right-pad them with PAD to a common length.

        Returns `ids` (B, T) int64 and `attention_mask` (B, T) bool, True on real
        bytes. `pad_to` fixes T (it must be at least the longest text).
        """
        if len(texts) == 0:
            raise ValueError("encode_batch needs at least one text")
        seqs = [self.encode(t) for t in texts]
        longest = max(len(s) for s in seqs)
        length = longest if pad_to is None else pad_to
        if length < longest:
            raise ValueError(f"pad_to={pad_to} is shorter than the longest text ({longest} bytes)")
        ids = torch.full((len(seqs), length), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.bool)
        for b, s in enumerate(seqs):
            ids[b, : len(s)] = s
            mask[b, : len(s)] = True
        return ids, mask
