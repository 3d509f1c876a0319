"""The web page in a real browser (Debian's Chromium through Playwright; `make test-ui`): generate and get the same
image from the same seed, paint a mask and inpaint, watch a run's loss curve, see a bad input's error in the page
with the server still serving, and never a request off this machine. TORCHDIFFUSION_UI_SHOTS=DIR saves a
screenshot of each tab there (docs/figures); TORCHDIFFUSION_UI_RUNS=DIR serves that folder of 8x8 runs instead of a
freshly trained tiny one."""

from __future__ import annotations

import io
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ui

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 180_000  # generous: a shared 2-core machine under load renders slowly


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from ui_server import free_port, start, stop, train_tiny

    root = os.environ.get("TORCHDIFFUSION_UI_RUNS")  # screenshots: serve a better-trained 8x8 digits run
    if not root:
        root = tmp_path_factory.mktemp("runs")
        train_tiny(root / "tiny", steps=3)
    proc, url = start(root, "--port", str(free_port()))
    yield url, Path(root)
    assert proc.poll() is None, "the server died during the browser tests"
    stop(proc)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test-ui` installs Debian's chromium")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the app; after the test, every request it made must have gone to the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    pg.on("request", lambda r: requests.append(r.url))
    pg.goto(server[0])
    pg.wait_for_selector("#gen-about :text('data (1, 8, 8)')")  # the load event has set the run's fields
    yield pg
    host = re.match(r"(https?://[^/]+)", server[0]).group(1)
    outside = [u for u in requests if not (u.startswith(host) or u.startswith(("data:", "blob:")))]
    context.close()
    assert not outside, f"the page requested URLs off this machine: {outside[:5]}"


def shot(pg, name: str) -> None:
    where = os.environ.get("TORCHDIFFUSION_UI_SHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(Path(where) / f"ui_{name}.png"), full_page=True)


def gallery_pixels(pg, gallery: str) -> list[np.ndarray]:
    """The PNGs a gallery shows, fetched from the server and decoded."""
    from PIL import Image

    srcs = [img.get_attribute("src") for img in pg.locator(f"{gallery} img").all()]
    return [np.asarray(Image.open(io.BytesIO(pg.request.get(s).body()))) for s in srcs]


def wait_for_new_gallery(pg, gallery: str, old: list[str], count: int) -> None:
    pg.wait_for_function(
        """([sel, old, n]) => { const s = [...document.querySelectorAll(sel + ' img')].map(i => i.src);
             return s.length >= n && s.some(x => !old.includes(x)); }""", arg=[gallery, old, count])


def srcs(pg, gallery: str) -> list[str]:
    return [img.get_attribute("src") for img in pg.locator(f"{gallery} img").all()]


def set_number(pg, elem_id: str, value) -> None:
    box = pg.locator(f"#{elem_id} input").first
    box.fill(str(value))
    box.press("Tab")


def settings_text(pg, elem: str) -> str:
    return pg.locator(elem).inner_text() if pg.locator(elem).count() else ""


def run_and_wait(pg, button: str, settings: str) -> str:
    """Click and wait until the settings JSON names a new request (a gallery of identical images keeps its URLs:
    gradio names served files by their content; the settings box also shows progress text meanwhile)."""
    pattern = r"(generate|edit)-[0-9a-f]{12}"
    found = re.search(pattern, settings_text(pg, settings))
    pg.click(button)
    pg.wait_for_function("""([sel, old]) => { const e = document.querySelector(sel);
        const m = e && e.innerText.match(/(generate|edit)-[0-9a-f]{12}/);
        return m && m[0] !== old; }""", arg=[settings, found.group(0) if found else ""])
    return pg.locator(settings).inner_text()


def test_generate_shows_images_and_the_same_seed_gives_the_same_image(page):
    set_number(page, "gen-steps", 4)
    text = run_and_wait(page, "#gen-button", "#gen-settings")
    assert re.search(r'"?steps"?\s*:\s*4', text)
    first = gallery_pixels(page, "#gen-gallery")
    assert len(first) == 4 and first[0].shape == (8, 8)
    shot(page, "generate")
    run_and_wait(page, "#gen-button", "#gen-settings")  # same seed again
    again = gallery_pixels(page, "#gen-gallery")
    assert len(again) == 4 and all(np.array_equal(a, b) for a, b in zip(first, again))
    set_number(page, "gen-seed", 1)  # seed 1: image 0 is the old image 1
    old = srcs(page, "#gen-gallery")
    assert re.search(r'"seed"\s*:\s*1\s*,', run_and_wait(page, "#gen-button", "#gen-settings"))
    wait_for_new_gallery(page, "#gen-gallery", old, 4)  # the gallery may render after the settings
    shifted = gallery_pixels(page, "#gen-gallery")
    assert np.array_equal(shifted[0], first[1]) and not np.array_equal(shifted[0], first[0])
    # each image downloads as a PNG
    links = page.locator("#gen-files a").all()
    assert len(links) == 5 and pg_get(page, links[0].get_attribute("href"))[:8] == b"\x89PNG\r\n\x1a\n"


def pg_get(page, href: str) -> bytes:
    return page.request.get(href).body()


def test_a_painted_mask_inpaints(page, tmp_path):
    from PIL import Image

    img = np.zeros((64, 64), np.uint8)
    img[:, 32:] = 255
    Image.fromarray(img).save(tmp_path / "half.png")
    page.get_by_role("tab", name="Edit").click()
    page.locator("#edit-editor input[type=file]").set_input_files(str(tmp_path / "half.png"))
    page.wait_for_selector("#edit-editor canvas")
    time.sleep(1)  # the editor draws the upload
    page.locator("#edit-editor button[aria-label='Brush']").click()
    box = page.locator("#edit-editor canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 40, cy - 40)
    page.mouse.down()
    for k in range(9):
        page.mouse.move(cx - 40 + 10 * k, cy - 40 + 10 * k, steps=2)
    page.mouse.up()
    set_number(page, "edit-nfe", 5)
    text = run_and_wait(page, "#edit-button", "#edit-settings")
    masked = int(re.search(r'"?masked_pixels"?\s*:\s*(\d+)', text).group(1))
    assert 0 < masked < 64  # paint reached the mask, and only part of the image
    results = gallery_pixels(page, "#edit-gallery")
    assert len(results) == 4 and results[0].shape == (8, 8)
    shot(page, "edit")


def test_a_training_run_shows_its_loss_curve(page):
    page.get_by_role("tab", name="Watch training").click()
    page.wait_for_selector("#watch-status :text('step')")
    assert re.search(r"step \d+", page.locator("#watch-status").inner_text())
    page.wait_for_selector("#watch-loss canvas, #watch-loss svg")
    page.wait_for_selector("#watch-grids img")
    shot(page, "watch")


def test_a_new_run_appears_after_a_rescan(page, server):
    if os.environ.get("TORCHDIFFUSION_UI_RUNS"):
        pytest.skip("would write a run into the folder TORCHDIFFUSION_UI_RUNS names")
    new = server[1] / "zz-new-run"
    new.mkdir()
    (new / "metrics.jsonl").write_text('{"step": 7, "loss": 0.5, "images_per_s": 3.0}\n')
    page.get_by_role("tab", name="Watch training").click()
    page.click("#rescan")
    page.wait_for_selector("text=2 run(s) in all")
    page.locator("#watch-run input").click()
    page.get_by_role("option", name="zz-new-run").click()
    page.wait_for_selector("#watch-status :text('step 7')")


def test_compare_puts_samplers_side_by_side_with_seconds(page):
    page.get_by_role("tab", name="Compare samplers").click()
    set_number(page, "cmp-batch", 2)
    page.click("#cmp-button")
    for i in range(3):
        wait_for_new_gallery(page, f"#cmp-gallery-{i}", [], 2)
    assert re.search(r"\d+ calls, [\d.]+ s", page.locator("#cmp-note-0").inner_text())
    shot(page, "compare")


def test_a_bad_input_is_an_error_in_the_page_and_the_server_survives(page):
    page.locator("#gen-options textarea").fill("{etta: 1}")
    page.click("#gen-button")
    toast = page.locator(".toast-body").first
    toast.wait_for()
    assert "unknown option(s) etta for sampler '" in toast.inner_text()
    shot(page, "error")
    page.locator("#gen-options textarea").fill("")
    run_and_wait(page, "#gen-button", "#gen-settings")
    assert len(gallery_pixels(page, "#gen-gallery")) == 4
