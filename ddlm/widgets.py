"""ipywidgets for the notebooks: each a pure render function plus a builder that returns a widget.

* `masking_explorer(text)`: a slider over the masking rate t (and a seed) shows the forward
  process on a real sentence.
* `denoising_player(generation)`: a slider over steps (with a play button) replays a recorded
  `Generation.trace`: masks, bytes revealed at that step, and a confidence heatmap.
* `sampler_panel(model)`: prompt, length, steps, strategy, temperature and threshold, a
  Generate button, and a player for the result.
* `loss_plot()`: an image of the loss curve that redraws as a Trainer reports metrics.

Each has a static form made by the same render functions, for readers without a kernel:
`filmstrip_html(generation)` (the player at a few steps), `masking_stills_html(text)` (the
explorer at a few values of t), `render_loss_png(records)` (the finished loss curve).

Builders never display anything; the notebook shows the returned widget on its last line.
Tests build them, set `slider.value`, and compare the widget's HTML with the render function.
Callbacks that fail show the error in the widget *and* raise, so tests cannot miss it.
"""

from __future__ import annotations

import html

import ipywidgets as W
import torch

from .diffusion import mask_tokens
from .sampling import STRATEGIES, Generation, SamplerConfig, generate
from .tokenizer import MASK_ID, ByteTokenizer
from .viz import confidence_strip_html, sequence_html

_tok = ByteTokenizer()


# ---- the forward process -------------------------------------------------------------


def render_masking(text: str, t: float, seed: int = 0) -> tuple[str, float]:
    """HTML of `text` with each byte masked with probability t, and the fraction masked."""
    x0 = _tok.encode(text)[None]
    xt, masked = mask_tokens(x0, t, torch.Generator().manual_seed(seed))
    frac = masked.float().mean().item() if masked.numel() else 0.0
    caption = (
        f"<b>t = {t:.2f}</b>: {int(masked.sum())} of {masked.numel()} bytes masked ({frac:.0%})"
    )
    return f"<div>{caption}</div>" + sequence_html(xt[0]), frac


def masking_stills_html(text: str, ts=(0.1, 0.5, 0.9), seed: int = 0) -> str:
    """The explorer's picture at a few values of t, one under the other: its static form, for
    a reader without a kernel (the same render function the slider redraws with)."""
    return "".join(
        f"<div style='margin-bottom:6px'>{render_masking(text, t, seed)[0]}</div>" for t in ts
    )


def masking_explorer(text: str, t: float = 0.3, seed: int = 0) -> W.VBox:
    """A slider over t and a seed box, showing `text` under the forward process."""
    slider = W.FloatSlider(
        value=t, min=0.0, max=1.0, step=0.01, description="t", continuous_update=True
    )
    seed_box = W.IntText(value=seed, description="seed", layout=W.Layout(width="160px"))
    out = W.HTML()

    def redraw(_=None):
        out.value = render_masking(text, slider.value, seed_box.value)[0]

    slider.observe(redraw, names="value")
    seed_box.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([slider, seed_box]), out])
    box.slider, box.seed, box.output = slider, seed_box, out
    return box


# ---- the reverse process -------------------------------------------------------------


def render_step(generation: Generation, step: int, show_prompt: bool = True) -> str:
    """HTML for state `step` of a recorded generation (0 = the all-MASK start)."""
    if not 0 <= step < len(generation.trace):
        raise ValueError(f"step must be in 0..{len(generation.trace) - 1}, got {step}")
    s = generation.trace[step]
    masked = int((s.ids == MASK_ID).sum())
    new = int(s.revealed.sum())
    caption = (
        f"<b>step {step} / {len(generation.trace) - 1}</b>: {masked} masked, "
        f"{new} revealed at this step"
    )
    start = 0 if show_prompt else generation.prompt_length
    body = sequence_html(s.ids.long(), s.revealed, s.confidence, start=start)
    strip = confidence_strip_html(s.confidence, s.revealed)
    return f"<div>{caption}</div>{body}<div style='margin-top:4px'>confidence</div>{strip}"


def filmstrip_html(generation: Generation, steps=None, show_prompt: bool = True) -> str:
    """The player's picture at a few steps (default four: the start, a third, two thirds and
    the end): its static form, for a reader on GitHub or nbviewer without a kernel."""
    last = len(generation.trace) - 1
    steps = sorted({0, last // 3, 2 * last // 3, last}) if steps is None else steps
    frames = (
        f"<div style='margin-bottom:8px'>{render_step(generation, s, show_prompt)}</div>"
        for s in steps
    )
    return "".join(frames)


def denoising_player(
    generation: Generation, step: int | None = None, interval_ms: int = 150
) -> W.VBox:
    """A play button and a slider replaying `generation.trace` (never re-runs the model)."""
    last = len(generation.trace) - 1
    slider = W.IntSlider(value=last if step is None else step, min=0, max=last, description="step")
    play = W.Play(value=slider.value, min=0, max=last, interval=interval_ms, description="play")
    W.jslink((play, "value"), (slider, "value"))
    out = W.HTML()

    def redraw(_=None):
        out.value = render_step(generation, slider.value)

    slider.observe(redraw, names="value")
    redraw()
    box = W.VBox([W.HBox([play, slider]), out])
    box.slider, box.play, box.output, box.generation = slider, play, out, generation
    return box


def _controls(prompt: str, length: int, steps: int) -> dict:
    """The panel's inputs, with full labels (no truncation) and tooltips."""
    wide = {"description_width": "initial"}  # the label's own width: never cut to "temperat..."
    rows = max(2, min(8, len(prompt) // 90 + prompt.count("\n") + 1))
    return {
        "prompt": W.Textarea(value=prompt, description="prompt", rows=rows, style=wide,
                             layout=W.Layout(width="95%")),
        "length": W.IntSlider(value=length, min=8, max=256, step=8, description="length (bytes)",
                              style=wide),
        "steps": W.IntSlider(value=steps, min=1, max=256, description="steps (network calls)",
                             style=wide),
        "strategy": W.Dropdown(options=list(STRATEGIES), value="low_confidence",
                               description="which masks to reveal", style=wide),
        "use_blocks": W.Checkbox(value=False, description="semi-autoregressive blocks", style=wide),
        "block": W.IntSlider(value=16, min=1, max=256, description="block length", style=wide,
                             disabled=True),
        "temperature": W.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.05, style=wide,
                                     description="temperature (0 = greedy)"),
        "use_threshold": W.Checkbox(value=False, description="threshold decoding", style=wide),
        "threshold": W.FloatSlider(value=0.9, min=0.05, max=1.0, step=0.05, style=wide,
                                   description="confidence threshold tau", disabled=True),
        "seed": W.IntText(value=0, description="seed", style=wide, layout=W.Layout(width="160px")),
    }  # fmt: skip


def sampler_panel(model, prompt: str = "The ", length: int = 64, steps: int = 32) -> W.VBox:
    """Controls for `generate` and a player for the result. `panel.generate()` runs it.

    Options that do not apply are disabled (the block length without blocks, tau without
    threshold decoding); while a generation runs, the status line counts its steps.
    """
    c = _controls(prompt, length, steps)
    for flag, option in (("use_blocks", "block"), ("use_threshold", "threshold")):
        c[flag].observe(lambda ch, o=option: setattr(c[o], "disabled", not ch["new"]), "value")
    button = W.Button(description="Generate", button_style="primary", tooltip="run the sampler")
    status, result = W.HTML(), W.VBox(layout=W.Layout(border_top="1px solid #ddd"))

    def on_generate(_=None) -> Generation:
        n = c["length"].value
        total = min(c["steps"].value, n)
        status.value = f"generating: step 0 / {total}"
        try:
            config = SamplerConfig(
                steps=total,
                strategy=c["strategy"].value,
                block_length=c["block"].value if c["use_blocks"].value else None,
                temperature=c["temperature"].value,
                threshold=c["threshold"].value if c["use_threshold"].value else None,
            )

            def progress(i, _state):
                status.value = f"generating: step {i} / {total}"

            g = generate(model, c["prompt"].value, n, config, seed=c["seed"].value,
                         callback=progress)  # fmt: skip
        except Exception as e:  # show it in the panel, then let it propagate
            status.value = f"<span style='color:#b00'>error: {html.escape(str(e))}</span>"
            raise
        status.value = f"{g.nfe} network evaluations"
        box.player, box.last = denoising_player(g), g
        result.children = (box.player,)
        return g

    button.on_click(on_generate)
    rows = [["prompt"], ["length", "steps"], ["strategy", "temperature"],
            ["use_blocks", "block"], ["use_threshold", "threshold"], ["seed"]]  # fmt: skip
    controls = W.VBox([W.HBox([c[k] for k in row]) for row in rows])
    action = W.HBox([button, status], layout=W.Layout(margin="12px 0 12px 0"))
    box = W.VBox([controls, action, result])
    for name, widget in c.items():
        setattr(box, name, widget)
    box.button, box.status, box.result = button, status, result
    box.generate, box.player, box.last = on_generate, None, None
    return box


# ---- training ------------------------------------------------------------------------


def render_loss_png(records: list[dict]) -> bytes:
    """The loss curve of `records` (Trainer metric dicts) as PNG bytes."""
    import io

    from matplotlib.figure import Figure  # no pyplot: no global backend state

    from .viz import plot_losses

    fig = Figure(figsize=(6, 3), dpi=80)
    plot_losses(records, ax=fig.subplots())
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def loss_plot() -> W.Image:
    """An image widget with a `callback(record)` to pass to `Trainer(callbacks=[...])`.

    Each metric record is kept in `widget.records` and the curve is redrawn.
    """
    img = W.Image(format="png", layout=W.Layout(width="480px"))
    img.records = []

    def callback(record: dict) -> None:
        img.records.append(record)
        if any("loss" in r for r in img.records):
            img.value = render_loss_png(img.records)

    img.callback = callback
    return img
