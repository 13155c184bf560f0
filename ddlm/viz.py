"""Pictures: byte sequences as HTML (masks, highlights, confidence) and small matplotlib plots.

Everything here is a pure function of its inputs (no model calls), so the widgets can redraw a
recorded state instantly and tests can check exactly what was drawn.
"""

from __future__ import annotations

import html
import math

import torch

from .tokenizer import MASK_GLYPH, MASK_ID, N_BYTES

_STYLE = (
    "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; "
    "line-height: 1.5; white-space: pre-wrap; word-break: break-all; max-width: 100%"
)


def _utf8_width(first: int) -> int:
    if first < 0x80:
        return 1
    if first >> 5 == 0b110:
        return 2
    if first >> 4 == 0b1110:
        return 3
    if first >> 3 == 0b11110:
        return 4
    return 1


def segments(ids: torch.Tensor | list[int]) -> list[tuple[str, list[int]]]:
    """Split a sequence of ids into displayable pieces: (text, positions it covers).

    A complete UTF-8 character made of known bytes is one piece; a MASK is the glyph `█`;
    a byte that cannot be decoded on its own (e.g. half of a character whose other half is
    masked) shows as U+FFFD. PAD and EOS are skipped.
    """
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
    out: list[tuple[str, list[int]]] = []
    i = 0
    while i < len(ids):
        b = ids[i]
        if b == MASK_ID:
            out.append((MASK_GLYPH, [i]))
            i += 1
            continue
        if b >= N_BYTES:
            i += 1
            continue
        width = _utf8_width(b)
        chunk = ids[i : i + width]
        if width > 1 and len(chunk) == width and all(c < N_BYTES for c in chunk):
            try:
                out.append((bytes(chunk).decode("utf-8"), list(range(i, i + width))))
                i += width
                continue
            except UnicodeDecodeError:
                pass
        out.append((bytes([b]).decode("utf-8", errors="replace"), [i]))
        i += 1
    return out


def confidence_color(c: float) -> str:
    """A colour for a probability in [0, 1]: red (unsure) through yellow to green (sure)."""
    if c is None or math.isnan(c):
        return "transparent"
    c = min(max(c, 0.0), 1.0)
    hue = int(120 * c)  # 0 = red, 120 = green
    return f"hsl({hue}, 75%, 80%)"


def sequence_html(
    ids: torch.Tensor,
    revealed: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
    start: int = 0,
) -> str:
    """HTML for ids[start:]: masks as grey `█`, bytes revealed at this step highlighted
    (bold on yellow), and optionally each still-masked position tinted by the model's
    confidence in its current guess."""
    parts = []
    for text, pos in segments(ids[start:]):
        pos = [p + start for p in pos]
        glyph = html.escape(text).replace("\n", "↵\n")
        if text == MASK_GLYPH:
            c = float(confidence[pos[0]]) if confidence is not None else float("nan")
            bg = confidence_color(c)
            parts.append(f'<span class="m" style="color:#888;background:{bg}">{glyph}</span>')
        elif revealed is not None and any(bool(revealed[p]) for p in pos):
            parts.append(
                f'<span class="r" style="background:#ffe066;font-weight:bold">{glyph}</span>'
            )
        else:
            parts.append(glyph)
    return f'<div style="{_STYLE}">{"".join(parts)}</div>'


def confidence_strip_html(confidence: torch.Tensor, revealed: torch.Tensor | None = None) -> str:
    """One thin coloured cell per position: the confidence heatmap of a step."""
    cells = []
    for i, c in enumerate(confidence.float().tolist()):
        border = (
            "border-bottom:3px solid #333;" if revealed is not None and bool(revealed[i]) else ""
        )
        title = "" if math.isnan(c) else f' title="{i}: {c:.2f}"'
        cells.append(
            f'<span{title} style="display:inline-block;width:3px;height:14px;'
            f'background:{confidence_color(c) if not math.isnan(c) else "#eee"};{border}"></span>'
        )
    return f'<div style="line-height:0;max-width:100%;overflow:hidden">{"".join(cells)}</div>'


def plot_losses(records: list[dict], ax=None, title: str = "training loss"):
    """Plot `loss` (and `val_loss` where present) against `step` from metric records."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3), dpi=90)
    steps = [r["step"] for r in records if "loss" in r]
    ax.plot(steps, [r["loss"] for r in records if "loss" in r], label="train")
    val = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats per byte)")
    ax.set_title(title)
    ax.legend()
    return ax
