import pytest
import torch
from helpers import tiny_config

import ddlm
from ddlm.sampling import SamplerConfig, generate
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
    assert panel.confidence.value == SamplerConfig().confidence == "pmi"
    g = panel.generate()
    assert g.nfe == 8 + 1 and panel.player is not None  # 8 steps and PMI's prior
    assert panel.result.children[0] is panel.player
    assert "9 network evaluations" in panel.status.value
    panel.confidence.value = "probability"  # LLaDA's ranking: no prior to compute
    assert panel.generate().nfe == 8
    panel.strategy.value = "random"
    assert panel.confidence.disabled and panel.generate().nfe == 8
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
    assert g.nfe <= 8 + 1 and (g.trace[1].revealed.nonzero() < 2 + 8).all()  # the first block first
    steps = [m for m in seen if m.startswith("generating: step")]
    assert steps[1] == "generating: step 1 / 8" and len(steps) == len(g.trace)  # 0, then each
    assert seen[-1].endswith("network evaluations")
    panel.use_blocks.value = False
    assert panel.block.disabled
    panel.prompt.value = "x\n" * 5
    assert panel.prompt.rows == 6  # the box follows its text
    for widget in (panel.temperature, panel.threshold, panel.strategy, panel.steps):
        assert widget.style.description_width == "initial"  # labels are never cut short


def test_the_player_shows_its_legend_whitespace_and_a_strip_over_the_answer_only(model):
    # A prompt with spaces and a newline, 24 generated bytes: the strip has exactly one cell
    # per generated byte (however long the prompt), in a row whose cells share its width.
    prompt = "a b\nc d " * 4
    g = generate(model, prompt, 24, steps=6, seed=0)
    for step in range(len(g.trace)):
        out = render_step(g, step)
        assert 'class="legend"' in out
        strip = out[out.index('class="strip"') :]
        assert strip.count("flex:1 1 0;min-width:0") == 24
        assert "display:flex;width:100%" in strip
    # The prompt is dimmed; its spaces stay plain (marks are for generated whitespace only).
    s = g.trace[0]
    body = sequence_html(s.ids.long(), s.revealed, s.confidence, fill=g.fill)
    assert 'class="s"' not in body and body.count('class="p"') > 0
    # A generated space gets the dot mark, a generated newline the ↵; both stay real text.
    ids = ddlm.ByteTokenizer().encode("ab x\ny")
    fill = torch.tensor([False, False, True, True, True, True])
    out = sequence_html(ids, fill=fill)
    assert out.count('class="s"') == 1 and "↵\n" in out and "ab" in out


def test_masks_are_coloured_by_confidence_and_eos_shows_once():
    from ddlm.tokenizer import EOS_ID, MASK_ID
    from ddlm.viz import EOS_GLYPH, confidence_color

    ids = torch.tensor([104, 105, MASK_ID, MASK_ID, EOS_ID, EOS_ID, EOS_ID])
    conf = torch.tensor([float("nan"), float("nan"), 0.25, 0.75, 0.5, 0.5, 0.5])
    out = sequence_html(ids, confidence=conf)
    assert (
        f"color:{confidence_color(0.25, 42)}" in out
        and f"color:{confidence_color(0.75, 42)}" in out
    )
    assert out.count(EOS_GLYPH) == 1  # the end, once, not one box per EOS position
    assert "#bbb" in sequence_html(torch.tensor([MASK_ID]))  # no confidence yet: plain grey


def test_the_explorer_shows_the_models_guesses_on_request(model):
    from ddlm.diffusion import mask_tokens
    from ddlm.widgets import model_guesses

    text = "hello world, hello masks"
    w = masking_explorer(text, t=0.5, model=model)
    assert "guesses" not in w.output.value  # off until asked for
    w.guesses.value = True
    assert w.output.value == render_masking(text, 0.5, 0, model)[0]
    x0 = ddlm.ByteTokenizer().encode(text)[None]
    xt, masked = mask_tokens(x0, 0.5, torch.Generator().manual_seed(0))
    predicted, _ = model_guesses(model, xt)
    right = int((predicted[masked] == x0[masked]).sum())
    assert f"({right} of {int(masked.sum())} right" in w.output.value
    assert masking_explorer(text).guesses.disabled  # no model, nothing to show
    assert render_masking(text, 0.5, 0, model)[0] in masking_stills_html(text, (0.5,), 0, model)


@pytest.mark.parametrize("length", [1, 7, 64, 300])
def test_the_strip_shares_its_width_at_any_length(length):
    # One flex cell per generated byte, none with a fixed width: the row fits any container
    # (the browser test measures it at 1400 and 900 px); the prompt adds no cells.
    from ddlm.viz import confidence_strip_html

    fill = torch.cat([torch.zeros(40, dtype=torch.bool), torch.ones(length, dtype=torch.bool)])
    conf = torch.rand(40 + length)
    strip = confidence_strip_html(conf, torch.zeros_like(fill), fill=fill)
    assert strip.count("<span") == length == strip.count("flex:1 1 0;min-width:0")
    assert "width:3px" not in strip and "display:flex;width:100%" in strip


def test_a_widget_without_a_kernel_says_what_it_is(model):
    # GitHub shows a widget's text/plain form; it must not be `VBox(children=(...))`.
    from ddlm.widgets import loss_plot

    g = generate(model, "ab", 8, steps=4, seed=0)
    widgets = [masking_explorer("hello"), denoising_player(g), sampler_panel(model), loss_plot()]
    for w in widgets:
        text = w._repr_mimebundle_()["text/plain"]
        assert "children" not in text and "run the notebook to use it" in text and len(text) < 100
    import ipywidgets as W

    assert all(isinstance(w, W.DOMWidget) for w in widgets)  # still real widgets


def test_filmstrip_png_is_a_picture_of_the_chosen_steps(model):
    from ddlm.widgets import filmstrip_png

    g = generate(model, "ab", 12, steps=6, seed=0)
    png = filmstrip_png(g)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    one, four = filmstrip_png(g, steps=[3]), filmstrip_png(g, steps=[0, 2, 4, 6])
    assert one[:8] == four[:8] == b"\x89PNG\r\n\x1a\n" and len(four) > len(one)
    with pytest.raises(ValueError, match="steps"):
        filmstrip_png(g, steps=[7])


def test_the_panels_picture_shows_its_controls_and_its_last_result(model):
    from ddlm.widgets import panel_settings, sampler_panel_png

    panel = sampler_panel(model, prompt="hi", length=16, steps=8)
    with pytest.raises(ValueError, match="generate"):
        sampler_panel_png(panel)  # nothing to show yet
    panel.confidence.value = "probability"
    panel.use_blocks.value, panel.block.value = True, 8
    panel.generate()
    lines = panel_settings(panel)
    assert "'hi'" in lines[0] and "16 bytes, 8 steps" in lines[1]
    assert "ranked by: probability" in lines[2] and "blocks: 8, threshold decoding: off" in lines[4]
    panel.strategy.value = "random"  # random order ranks nothing, and the picture says so
    assert "ranked by: -" in panel_settings(panel)[2]
    png = sampler_panel_png(panel)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(sampler_panel_png(panel, steps=[0, 2, 4, 8])) > len(
        sampler_panel_png(panel, steps=[8])
    )
    with pytest.raises(ValueError, match="steps"):
        sampler_panel_png(panel, steps=[9])


def test_masking_stills_png_draws_each_t(model):
    from ddlm.widgets import masking_stills_png

    one = masking_stills_png("hello world", ts=(0.5,), seed=3)
    three = masking_stills_png("hello world", ts=(0.2, 0.5, 0.9), seed=3, model=model)
    assert one[:8] == three[:8] == b"\x89PNG\r\n\x1a\n" and len(three) > len(one)


def test_race_player_shows_both_models_after_the_same_number_of_passes(model):
    from ddlm.ar import generate_ar
    from ddlm.widgets import StepClock, race_filmstrip_png, race_index, race_player, render_race

    torch.manual_seed(0)
    twin = ddlm.DiffusionLM(tiny_config(causal=True)).eval()
    clock = StepClock()
    ar = generate_ar(twin, "ab", 16, seed=0, callback=clock)
    dm = generate(model, "ab", 16, SamplerConfig.tiny(steps=8), seed=0)  # 8 steps + the prior
    assert len(clock.seconds) == len(ar.trace) == 17 and clock.seconds == sorted(clock.seconds)
    racers = [("autoregressive", ar), ("diffusion", dm)]
    w = race_player(racers, seconds=[clock.seconds, None], passes=5)
    assert w.slider.max == 16 and "race player" in repr(w)
    for passes, ar_known, dm_known in ((0, 0, 0), (1, 1, 0), (5, 5, 8), (9, 9, 16), (16, 16, 16)):
        w.slider.value = passes
        png, shown = render_race(racers, passes, [clock.seconds, None])
        assert w.image.value == png and w.shown == shown
        assert [s["known"] for s in shown] == [ar_known, dm_known]
        assert shown[1]["state"] == race_index(dm, passes)
    # The twin writes left to right; the diffusion model fills in wherever it is surest.
    w.slider.value = 5
    assert w.shown[0]["answer"].endswith(MASK_GLYPH * 11)
    assert w.shown[0]["answer"].count(MASK_GLYPH) == 11
    assert w.shown[1]["answer"].count(MASK_GLYPH) == 8
    film = race_filmstrip_png(racers)
    assert film[:8] == b"\x89PNG\r\n\x1a\n" and len(film) > len(w.image.value)


def test_plot_chains_draws_both_chains_with_a_key():
    import matplotlib.pyplot as plt

    from ddlm.viz import plot_chains

    fig = plot_chains("ab cd", ts=(0.0, 0.5, 1.0), seed=1)
    forward, reverse = fig.axes
    assert [t.get_text() for t in forward.get_yticklabels()] == ["t = 0.00", "t = 0.50", "t = 1.00"]
    assert [t.get_text() for t in reverse.get_yticklabels()] == ["t = 1.00", "t = 0.50", "t = 0.00"]
    rows = [[t.get_text() for t in forward.texts[5 * r : 5 * r + 5]] for r in range(3)]
    assert rows[0] == ["a", "b", "·", "c", "d"] and rows[2] == [MASK_GLYPH] * 5
    assert len(fig.legends[0].get_texts()) == 3
    plt.close(fig)
