"""The notebooks in a real browser: JupyterLab driven by Playwright in headless Chromium.

The widget tests in tests/test_widgets.py prove the callbacks; these prove that a reader who
opens JupyterLab sees the slider move the text. The test starts `jupyter lab` on 127.0.0.1 with a
random token, opens copies of 00_overview and 08_sampling, runs all cells, and acts like a user.

Needs Debian's `chromium` (/usr/bin/chromium) and the `playwright` Python package (never its
browser downloads). In CI a missing browser fails the test; elsewhere it is skipped with the reason.
Set DDLM_SCREENSHOTS to a folder to keep the PNGs (bench/../data/gallery is made from them).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MASK = "\u2588"


def _require_browser() -> None:
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(
            "Debian's chromium at /usr/bin/chromium (apt-get install chromium chromium-driver)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    _require_browser()
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "notebooks"
    root.mkdir()
    for name in ("00_overview.ipynb", "08_sampling.ipynb"):
        shutil.copy(ROOT / "notebooks" / name, root / name)  # never touch the committed ones
    (tmp / "bench").mkdir()  # 08 reads the committed short-prompt results from ../bench
    for name in sorted(p.name for p in (ROOT / "bench").glob("short_prompts*.json")):
        shutil.copy(ROOT / "bench" / name, tmp / "bench" / name)
    settings = tmp / "settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False})
    )
    # Render every cell: with JupyterLab's default windowing, the outputs of cells far below the
    # viewport (08's panel, near its end) are not in the page until scrolled to.
    notebook = tmp / "settings" / "@jupyterlab" / "notebook-extension"
    notebook.mkdir(parents=True)
    (notebook / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    env = {
        **os.environ,
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
    }
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--allow-root", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--ServerApp.disable_check_xsrf=False",
    ]  # fmt: skip
    log = open(tmp / "lab.log", "w")
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(
                        "jupyter lab did not start:\n" + (tmp / "lab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield {"url": url, "token": token, "tmp": tmp}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            user_data_dir=str(lab["tmp"] / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1200, "height": 900},
        )
        try:
            yield ctx
        finally:
            ctx.close()


def _wait_idle(page, timeout_ms: int) -> None:
    """Wait until the visible notebook's kernel reports idle."""
    page.wait_for_function(
        "() => { const e = document.querySelector("
        "'.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook-ExecutionIndicator');"
        " return e !== null && e.dataset.status === 'idle'; }",
        timeout=timeout_ms,
    )


def _open_and_run(browser, lab, name: str):
    page = browser.new_page()
    page.goto(f"{lab['url']}/lab/tree/{name}?reset&token={lab['token']}")  # reset: one tab only
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    # JupyterLab may ask which kernel to start; the notebook's own (python3) is preselected.
    try:
        page.locator(".jp-Dialog button", has_text="Select").click(timeout=15_000)
    except Exception:  # no dialog: the kernel started by itself
        pass
    _wait_idle(page, 90_000)
    page.locator("div.lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator("li.lm-Menu-item[data-command='runmenu:run-all']").click()
    time.sleep(2)
    _wait_idle(page, 420_000)  # a whole notebook; generous for a busy 2-core machine
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    tracebacks = [t for t in errors.all_inner_texts() if "Traceback" in t or "Error" in t]
    assert not tracebacks, tracebacks[:1]
    return page


def _player(page, index: int = 0):
    """The n-th denoising player on the page: its slider handle, caption and text. The race
    player of 00 (class ddlm-race) has a play button too, but a picture instead of text."""
    box = page.locator(".widget-vbox:not(.ddlm-race):has(> .widget-hbox > .widget-play)")
    box = box.nth(index)
    box.scroll_into_view_if_needed()
    return box


def _state(box) -> tuple[int, int, str]:
    html = box.locator(".widget-html-content").first
    text = html.inner_text()
    m = re.search(r"step (\d+) / (\d+)", text)
    assert m, text[:200]
    body = html.locator("div.seq").first.inner_text()
    return int(m.group(1)), body.count(MASK), body


# Every element of a widget's output must lie inside the notebook's output area: the strip,
# the legend, the text and each row of controls. Returns the offenders (empty when it fits).
_OVERFLOW_JS = """(box) => {
    const area = box.closest('.jp-OutputArea-output').getBoundingClientRect();
    const bad = [];
    for (const el of box.querySelectorAll('.strip, .legend, .seq, .widget-hbox, .widget-html, '
            + '.widget-inline-hbox, textarea, button')) {
        const r = el.getBoundingClientRect();
        if (r.width > 0 && (r.left < area.left - 1 || r.right > area.right + 1))
            bad.push(`${el.className}: ${Math.round(r.left)}..${Math.round(r.right)} `
                     + `outside ${Math.round(area.left)}..${Math.round(area.right)}`);
    }
    for (const el of box.querySelectorAll('.noUi-target')) {
        if (el.getBoundingClientRect().width < 80) bad.push('a slider crushed to a stub');
    }
    for (const el of box.querySelectorAll('.widget-label')) {
        if (el.scrollWidth > el.clientWidth + 1) bad.push(`label cut: ${el.innerText}`);
    }
    return bad;
}"""


def _fits(page, box, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 1000})
    time.sleep(0.8)  # JupyterLab relays out on resize
    box.scroll_into_view_if_needed()
    offenders = box.evaluate(_OVERFLOW_JS)
    assert not offenders, (width, offenders[:5])


def _shot(page, box, name: str) -> None:
    folder = (
        Path(os.environ.get("DDLM_SCREENSHOTS", "")) if os.environ.get("DDLM_SCREENSHOTS") else None
    )
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        box.scroll_into_view_if_needed()
        box.screenshot(path=str(folder / name))


def test_opening_a_notebook_does_not_mark_it_modified(browser, lab):
    # JupyterLab rewrites the kernelspec and language_info metadata with what the kernel says;
    # run_all.py stores exactly that, so a notebook opened on the Python that executed it is
    # not modified (on another Python version, language_info.version differs).
    page = browser.new_page()
    page.goto(f"{lab['url']}/lab/tree/08_sampling.ipynb?reset&token={lab['token']}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=90_000)
    try:
        page.locator(".jp-Dialog button", has_text="Select").click(timeout=15_000)
    except Exception:
        pass
    _wait_idle(page, 90_000)  # the kernel has started and reported its language
    time.sleep(2)
    tab = page.locator(".lm-TabBar-tab", has_text="08_sampling.ipynb")
    assert "jp-mod-dirty" not in (tab.get_attribute("class") or "")
    page.close()


def test_overview_slider_replays_the_trace(browser, lab):
    import torch

    import ddlm

    page = _open_and_run(browser, lab, "00_overview.ipynb")
    page.set_viewport_size({"width": 1400, "height": 1000})
    box = _player(page)
    handle = box.locator(".widget-slider .noUi-handle")
    step, masks, _ = _state(box)
    assert step == 8
    # The expected trace, recomputed here exactly as the notebook does: the shipped preset.
    torch.manual_seed(0)
    config = ddlm.SamplerConfig.tiny(steps=32)
    g = ddlm.generate(ddlm.load_pretrained("tiny"), "The assert statement", 64, config, seed=0)
    _shot(page, box, "player-step08.png")

    # Keyboard: each ArrowRight moves one step; the page shows that step of the trace.
    handle.focus()
    seen = []
    for _ in range(4):
        page.keyboard.press("ArrowRight")
        time.sleep(0.4)
        step, masks, body = _state(box)
        seen.append((step, masks))
        expected = g.trace[step].text()
        assert re.sub(r"\s|↵", "", body) == re.sub(r"\s", "", expected)
    assert [s for s, _ in seen] == [9, 10, 11, 12]
    assert all(a[1] > b[1] for a, b in zip(seen, seen[1:]))  # masks fall as the slider moves right
    _shot(page, box, "player-step12.png")

    # Drag the handle to the far right: the last step, no masks left.
    track = box.locator(".widget-slider .noUi-target")
    hb, tb = handle.bounding_box(), track.bounding_box()
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(tb["x"] + tb["width"] + 50, hb["y"] + hb["height"] / 2, steps=8)
    page.mouse.up()
    time.sleep(0.5)
    step, masks, _ = _state(box)
    assert step == 32 and masks == 0
    _shot(page, box, "player-step32.png")
    legend = box.locator(".legend").first.inner_text()
    assert "masked" in legend and "revealed at this step" in legend and "confidence" in legend
    # The strip has one cell per generated byte and, like everything else, fits the area at a
    # wide and a narrow window.
    assert box.locator(".strip").first.evaluate("s => s.children.length") == 64
    _fits(page, box, 1400)
    _fits(page, box, 900)
    _shot(page, box, "player-900px.png")
    page.set_viewport_size({"width": 1400, "height": 1000})

    # Home, then play: the steps advance by themselves.
    handle.focus()
    page.keyboard.press("Home")
    time.sleep(0.4)
    assert _state(box)[0] == 0
    box.locator(".widget-play button").first.click()
    time.sleep(2.0)
    assert _state(box)[0] > 0

    # The race: one slider over network passes (16 at first) redraws the picture of both models.
    race = page.locator(".widget-vbox.ddlm-race").first
    race.scroll_into_view_if_needed()
    image = race.locator("img.widget-image").first
    before = image.get_attribute("src")
    race.locator(".widget-slider .noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(
        "([el, old]) => el.getAttribute('src') !== old",
        arg=[image.element_handle(), before],
        timeout=10_000,
    )
    assert race.locator(".widget-readout").first.inner_text().strip() == "17"
    _shot(page, race, "race-1400px.png")
    _fits(page, race, 900)
    page.close()


def test_sampler_panel_generates_in_the_page(browser, lab):
    page = _open_and_run(browser, lab, "08_sampling.ipynb")
    page.set_viewport_size({"width": 1400, "height": 1000})
    panel = page.locator(".jp-OutputArea-output > .widget-vbox:has(.widget-textarea)").last
    panel.scroll_into_view_if_needed()
    # Options that do not apply are disabled until their box is ticked.
    tau = panel.locator(".widget-slider:has-text('confidence threshold tau') .noUi-target")
    block = panel.locator(".widget-slider:has-text('block length') .noUi-target")
    assert tau.get_attribute("disabled") is not None
    assert block.get_attribute("disabled") is not None
    panel.locator(".widget-checkbox:has-text('threshold decoding') input").check()
    page.wait_for_function("el => !el.hasAttribute('disabled')", arg=tau.element_handle())
    panel.locator(".widget-checkbox:has-text('threshold decoding') input").uncheck()
    page.wait_for_function("el => el.hasAttribute('disabled')", arg=tau.element_handle())
    area = panel.locator(".widget-textarea textarea")
    area.fill("")
    prompt = "Return a new list containing the items of the iterable in sorted order."
    area.type(prompt)
    panel.locator("button", has_text="Generate").click()
    # Run All already generated once (the notebook's still picture of the panel), so wait for
    # a player that shows *this* prompt, not just for a finished status line.
    want = re.sub(r"\s|↵", "", prompt)
    page.wait_for_function(
        """([el, want]) => [...el.querySelectorAll('.widget-play')].some(
            p => p.closest('.widget-vbox').innerText.replace(/\\s|↵/g, '').includes(want))""",
        arg=[panel.element_handle(), want],
        timeout=60_000,
    )
    box = panel.locator(".widget-vbox:has(> .widget-hbox > .widget-play)").first
    step, masks, body = _state(box)
    assert masks == 0 and step > 0
    assert re.sub(r"\s|↵", "", prompt) in re.sub(r"\s|↵", "", body)
    _fits(page, panel, 1400)
    _shot(page, panel, "panel-1400px.png")
    _fits(page, panel, 900)
    _shot(page, panel, "panel-900px.png")
    page.close()
