import pytest
import torch
from helpers import tiny_config

import ddlm
from ddlm.sampling import generate
from ddlm.tokenizer import MASK_GLYPH
from ddlm.viz import segments, sequence_html
from ddlm.widgets import (
    denoising_player,
    filmstrip_html,
    masking_explorer,
    masking_stills_html,
    render_masking,
    render_step,
    sampler_panel,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return ddlm.DiffusionLM(tiny_config()).eval()


def test_segments_group_utf8_and_masks():
    ids = ddlm.ByteTokenizer().encode("aé€").tolist()
    assert [t for t, _ in segments(ids)] == ["a", "é", "€"]
    assert segments([0xC3, 257])[0][0] == "\ufffd" and segments([0xC3, 257])[1][0] == MASK_GLYPH


def test_masking_explorer_follows_the_slider():
    text = "The assert statement is a convenient way to insert debugging assertions."
    w = masking_explorer(text)
    for t in (0.0, 0.5, 1.0):
        w.slider.value = t
        assert w.output.value == render_masking(text, t, 0)[0]
    assert w.output.value.count(MASK_GLYPH) == len(text.encode())
    w.slider.value = 0.0
    assert MASK_GLYPH not in w.output.value
    w.slider.value = 0.5
    before = w.output.value
    w.seed.value = 3
    assert w.output.value != before


def test_denoising_player_replays_the_trace(model):
    g = generate(model, "ab", 16, steps=8, seed=0)
    w = denoising_player(g)
    assert w.slider.max == 8 and w.slider.value == 8
    counts = []
    for step in range(9):
        w.slider.value = step
        assert w.output.value == render_step(g, step)
        counts.append(w.output.value.count('class="m"'))
    assert counts[0] == 16 and counts[-1] == 0
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    # Highlights: the bytes revealed at a step are marked.
    w.slider.value = 3
    assert w.output.value.count('class="r"') >= 1
    with pytest.raises(ValueError):
        render_step(g, 99)


def test_sampler_panel_generates_and_shows_a_player(model):
    panel = sampler_panel(model, prompt="hi", length=16, steps=8)
    g = panel.generate()
    assert g.nfe == 8 and panel.player is not None
    assert panel.result.children[0] is panel.player
    assert "8 network evaluations" in panel.status.value
    panel.use_threshold.value = True
    panel.threshold.value = 0.05
    g2 = panel.generate()
    assert g2.nfe <= 8


def test_sampler_panel_errors_raise_and_show(model):
    panel = sampler_panel(model, prompt="x" * 60, length=16)
    with pytest.raises(ValueError, match="context"):
        panel.generate()
    assert "error" in panel.status.value


def test_sequence_html_escapes():
    out = sequence_html(ddlm.ByteTokenizer().encode("<b>&"))
    assert "&lt;b&gt;&amp;" in out


def test_loss_plot_redraws_on_each_record():
    from ddlm.widgets import loss_plot

    w = loss_plot()
    assert w.value == b""
    w.callback({"step": 1, "loss": 5.0})
    first = w.value
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    w.callback({"step": 2, "loss": 4.0, "val_loss": 4.5})
    assert w.value != first and len(w.records) == 2


def test_static_pictures_are_the_widgets_own_renders(model):
    g = generate(model, "ab", 12, steps=6, seed=0)
    strip = filmstrip_html(g)
    for step in (0, 2, 4, 6):  # the start, a third, two thirds, the end
        assert render_step(g, step) in strip
    assert render_step(g, 1) not in strip
    assert (
        filmstrip_html(g, steps=[3]) == f"<div style='margin-bottom:8px'>{render_step(g, 3)}</div>"
    )
    stills = masking_stills_html("hello world", ts=(0.2, 0.7), seed=3)
    assert render_masking("hello world", 0.2, 3)[0] in stills
    assert render_masking("hello world", 0.7, 3)[0] in stills


def test_sampler_panel_disables_what_does_not_apply_and_counts_steps(model):
    panel = sampler_panel(model, prompt="hi", length=16, steps=8)
    assert panel.threshold.disabled and panel.block.disabled
    panel.use_threshold.value = True
    assert not panel.threshold.disabled
    panel.use_blocks.value, panel.block.value = True, 8
    assert not panel.block.disabled
    seen = []
    panel.status.observe(lambda ch: seen.append(ch["new"]), "value")
    g = panel.generate()
    assert g.nfe <= 8 and (g.trace[1].revealed.nonzero() < 2 + 8).all()  # the first block first
    assert "generating: step 1 / 8" in seen and seen[-1].endswith("network evaluations")
    panel.use_blocks.value = False
    assert panel.block.disabled
    for widget in (panel.temperature, panel.threshold, panel.strategy, panel.steps):
        assert widget.style.description_width == "initial"  # labels are never cut short
