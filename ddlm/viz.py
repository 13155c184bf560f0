"""Pictures: byte sequences as HTML (masks, highlights, confidence) and small matplotlib plots.

Everything here is a pure function of its inputs (no model calls), so the widgets can redraw a
recorded state instantly and tests can check exactly what was drawn.
"""

from __future__ import annotations

import html
import math

import torch

from .tokenizer import EOS_ID, MASK_GLYPH, MASK_ID, N_BYTES

TEXT_STYLE = (
    "font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 13px; "
    "line-height: 1.5; white-space: break-spaces; word-break: break-all; max-width: 100%"
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


def segments(
    ids: torch.Tensor | list[int], eos_glyph: str | None = None
) -> list[tuple[str, list[int]]]:
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
            if b == EOS_ID and eos_glyph is not None and (i == 0 or ids[i - 1] != EOS_ID):
                out.append((eos_glyph, [i]))
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


def confidence_color(c: float, lightness: int = 80) -> str:
    """A colour for a probability in [0, 1]: red (unsure) through yellow to green (sure).

    `lightness` 80 is a background tint; about 40 is dark enough for a glyph's own colour.
    """
    if c is None or math.isnan(c):
        return "transparent"
    return f"hsl({_hue(c)}, 75%, {lightness}%)"


def confidence_rgb(c: float, lightness: int = 80) -> tuple[float, float, float]:
    """`confidence_color` as an (r, g, b) triple in [0, 1], for matplotlib pictures."""
    import colorsys

    return colorsys.hls_to_rgb(_hue(c) / 360, lightness / 100, 0.75)


def _hue(c: float) -> int:
    return int(120 * min(max(c, 0.0), 1.0))  # 0 = red, 120 = green


# A revealed space in generated text: a real space (it copies as one) with a faint dot drawn
# behind it, so that a run of spaces the model wrote can be seen and counted.
_SPACE = (
    '<span class="s" style="background:radial-gradient(circle, #aaa 0 1.5px, transparent 2px)">'
    " </span>"
)
_PROMPT_COLOR = "#777"
EOS_GLYPH = "EOS"  # where the model ended the text


def sequence_html(
    ids: torch.Tensor,
    revealed: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
    start: int = 0,
    fill: torch.Tensor | None = None,
) -> str:
    """HTML for ids[start:]: masks as `█` coloured by the model's confidence in its current
    guess (grey when there is none), bytes revealed at this step in bold on yellow.

    With `fill` (bool (T,): the positions being generated), the given text (a prompt) is
    dimmed, and the generated text shows its spaces as faint dots and its newlines as `↵`.
    Without it, every newline shows as `↵`. An EOS shows once, as a grey "EOS" box.
    """
    parts, prompt = [], ""  # a run of given text is gathered into one dimmed span
    for text, pos in segments(ids[start:], eos_glyph=EOS_GLYPH):
        pos = [p + start for p in pos]
        generated = fill is None or bool(fill[pos[0]])
        glyph = html.escape(text).replace("\n", "↵\n" if generated else "\n")
        if not generated and text != MASK_GLYPH:
            prompt += glyph
            continue
        if prompt:
            parts.append(f'<span class="p" style="color:{_PROMPT_COLOR}">{prompt}</span>')
            prompt = ""
        if text == EOS_GLYPH:
            parts.append(
                '<span class="e" style="color:#fff;background:#777;font-size:11px">EOS</span>'
            )
        elif text == MASK_GLYPH:
            c = float(confidence[pos[0]]) if confidence is not None else float("nan")
            color = "#bbb" if math.isnan(c) else confidence_color(c, 42)
            parts.append(f'<span class="m" style="color:{color}">{glyph}</span>')
        else:
            if fill is not None and text == " ":
                glyph = _SPACE
            if revealed is not None and any(bool(revealed[p]) for p in pos):
                glyph = (
                    f'<span class="r" style="background:#ffe066;font-weight:bold">{glyph}</span>'
                )
            parts.append(glyph)
    if prompt:
        parts.append(f'<span class="p" style="color:{_PROMPT_COLOR}">{prompt}</span>')
    return f'<div class="seq" style="{TEXT_STYLE}">{"".join(parts)}</div>'


def confidence_strip_html(
    confidence: torch.Tensor, revealed: torch.Tensor | None = None, fill: torch.Tensor | None = None
) -> str:
    """The confidence heatmap of a step: one cell per generated position (every position
    without `fill`), in one row that always fits its container (the cells share its width).

    A cell is coloured by the model's confidence in its guess there (light grey once the byte
    is known); a dark underline marks the bytes revealed at this step.
    """
    keep = range(len(confidence)) if fill is None else torch.nonzero(fill).flatten().tolist()
    values = confidence.float().tolist()
    cells = []
    for i in keep:
        c = values[i]
        under = "#333" if revealed is not None and bool(revealed[i]) else "transparent"
        title = "" if math.isnan(c) else f' title="byte {i}: {c:.2f}"'
        background = "#eee" if math.isnan(c) else confidence_color(c)
        cells.append(
            f'<span{title} style="flex:1 1 0;min-width:0;background:{background};'
            f'border-bottom:3px solid {under}"></span>'
        )
    return (
        '<div class="strip" style="display:flex;width:100%;max-width:100%;height:14px;'
        f'box-sizing:border-box">{"".join(cells)}</div>'
    )


def legend_html() -> str:
    """One line saying what the player's marks and colours mean."""
    scale = "".join(
        '<span style="display:inline-block;width:10px;height:10px;'
        f'background:{confidence_color(c)}"></span>'
        for c in (0.0, 0.25, 0.5, 0.75, 1.0)
    )
    items = [
        f'<span style="color:{confidence_color(0.1, 42)}">{MASK_GLYPH}</span>'
        f'<span style="color:{confidence_color(0.9, 42)}">{MASK_GLYPH}</span> masked '
        "(coloured by the model's confidence in its guess)",
        '<span style="background:#ffe066;font-weight:bold">ab</span> revealed at this step',
        f"{_SPACE}{_SPACE} spaces, ↵ newlines",
        f"confidence 0 {scale} 1",
    ]
    return (
        '<div class="legend" style="font-size:12px;color:#555;white-space:normal">'
        + " &nbsp;·&nbsp; ".join(items)
        + "</div>"
    )


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


def plot_chains(text: str, ts=(0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0, dpi: int = 90):
    """The two chains of a masked diffusion model in one figure (a matplotlib Figure).

    Left, the forward process: `text` masked by `diffusion.mask_tokens` at each t of `ts`,
    top to bottom. One seed draws one uniform time per byte, so the masks are nested: a byte
    masked at t stays masked at every later t. Right, the reverse chain: the same states from
    t = 1 back to 0, each row filling the masks that the forward chain added last. A real
    sampler fills them with the bytes its model predicts; this picture fills in the originals.
    """
    import matplotlib.pyplot as plt

    from .diffusion import mask_tokens

    x0 = torch.tensor(list(text.encode()))[None]
    masks = [mask_tokens(x0, t, torch.Generator().manual_seed(seed))[1][0] for t in ts]
    n, rows = x0.shape[1], len(ts)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 0.3 * n + 1.2), 0.3 * rows + 1.3), dpi=dpi)
    halves = (
        ("forward chain: t goes 0 → 1", range(rows), "#d62728"),
        ("reverse chain: t goes 1 → 0", range(rows - 1, -1, -1), "#ffd43b"),
    )
    for ax, (title, order, mark) in zip(axes, halves):
        previous = None
        for y, r in enumerate(order):
            for i, byte in enumerate(x0[0].tolist()):
                hidden = bool(masks[r][i])
                changed = previous is not None and hidden != bool(masks[previous][i])
                if changed and not hidden:  # filled at this step of the reverse chain
                    ax.add_patch(plt.Rectangle((i, y), 1, 1, color=mark, lw=0))
                glyph = MASK_GLYPH if hidden else chr(byte) if byte != 32 else "·"
                color = mark if changed and hidden else "#999" if hidden or byte == 32 else "#000"
                ax.text(i + 0.5, y + 0.5, glyph, ha="center", va="center", fontsize=9,
                        family="monospace", color=color)  # fmt: skip
            previous = r
        ax.set(xlim=(0, n), ylim=(rows, 0), xticks=[], title=title)
        ax.set_yticks([y + 0.5 for y in range(rows)], [f"t = {ts[r]:.2f}" for r in order])
        ax.tick_params(length=0)
        for side in ax.spines.values():
            side.set_visible(False)
    key = [("#999", "masked"), ("#d62728", "masked at this row"),
           ("#ffd43b", "filled at this row")]  # fmt: skip
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=label) for c, label in key]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig
