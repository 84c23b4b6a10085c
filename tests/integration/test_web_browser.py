"""The web UI in real headless Chromium (Debian's ``chromium`` + Playwright), against the real tiny model.

Uploads a phantom image, asks two questions and checks that the streamed answers are the engine's,
switches to a DICOM slice (rendered windowed by the server), downloads the transcript (dialogue
records) and resets. Skips with the reason when Chromium or Playwright is missing. The README's
screenshots come from ``scripts/screenshots.py`` (a trained model), not from this test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from _serve_helpers import ct_dicom_bytes, tiny_engine

from vmed.inference import Engine, GenParams
from vmed.serve.api import create_app, serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _browser(playwright):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (apt-get install -y chromium); the web UI was not tested")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def phantom_png(path: Path, size: int = 64) -> Path:
    """A chest-like phantom: body outline, two dark lungs, a bright nodule in the right lung."""
    try:
        from vmed.data.phantom import generate_phantoms

        made = generate_phantoms(path.parent / "phantoms", n=1, seed=0, size=size)
        images = sorted((Path(made["test"]).parent / "images").glob("*.png")) if isinstance(made, dict) and "test" in made else []
        if images:
            shutil.copy(images[0], path)
            return path
    except ImportError:
        pass
    im = Image.new("L", (size, size), 10)
    d = ImageDraw.Draw(im)
    d.ellipse((4, 8, size - 4, size - 6), fill=150)
    d.ellipse((12, 16, size // 2 - 3, size - 14), fill=40)
    d.ellipse((size // 2 + 3, 16, size - 12, size - 14), fill=40)
    d.ellipse((size // 2 + 10, 28, size // 2 + 17, 35), fill=230)
    im.convert("RGB").save(path)
    return path


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return tiny_engine(tmp_path_factory)


def _expected(engine: Engine, image: Image.Image | None, history, question: str) -> str:
    text = engine.generate(image, history, question, GenParams(max_new_tokens=16, temperature=0.0)).text
    return text if text else "(empty answer)"


def dicom_file(path: Path, size: int = 48) -> Path:
    """A CT-like DICOM slice: a soft-tissue body (40 HU) in air with an air-filled lung field."""
    import numpy as np

    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    hu = np.where(r < size * 0.45, 40, -1000) + np.where(r < size * 0.25, -800, 0)
    path.write_bytes(ct_dicom_bytes(hu, "Phantom^Web"))
    return path


def test_upload_chat_switch_download_reset(engine, tmp_path):
    """A person's session: upload, two streamed turns, switch to DICOM, one more turn, download, reset."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    from vmed.imaging import load_image

    png = phantom_png(tmp_path / "phantom.png")
    dcm = dicom_file(tmp_path / "slice.dcm")
    q1, q2, q3 = "What organ is shown?", "Is there a nodule?", "Describe the image."
    app = create_app(engine, model_name="vmed-tiny")
    with serve_in_thread(app) as url, sync_api.sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 760}, accept_downloads=True)
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('status').textContent.includes('vmed-tiny')")
            page.evaluate("document.getElementById('max-tokens').value = '16'")

            page.set_input_files("#file", str(png))
            page.wait_for_selector("#preview-img[src^='data:image/png']")
            assert "phantom.png" in page.text_content("#preview-caption")

            def ask(question: str, n: int) -> str:
                page.fill("#question", question)
                page.click("#send")
                page.wait_for_function(f"document.querySelectorAll('.msg.assistant:not(.pending)').length === {n}", timeout=60_000)
                return page.locator(".msg.assistant").nth(n - 1).text_content()

            image = load_image(png)
            first = ask(q1, 1)
            assert first == _expected(engine, image, [], q1)
            second = ask(q2, 2)
            raw_first = "" if first == "(empty answer)" else first
            assert second == _expected(engine, image, [(q1, raw_first)], q2)

            page.select_option("#preset", "lung")  # applies to the next upload
            page.set_input_files("#file", str(dcm))
            page.wait_for_selector(".divider:has-text('Switched to slice.dcm')")
            shown = page.get_attribute("#preview-img", "src")
            third = ask(q3, 3)
            rendered = load_image(dcm, preset="lung")
            assert third == _expected(engine, rendered, [], q3)  # a new image starts a new dialogue
            assert shown.startswith("data:image/png;base64,")

            with page.expect_download() as info:
                page.click("#download")
            lines = Path(info.value.path()).read_text().splitlines()
            records = [json.loads(line) for line in lines]
            assert [r["image"] for r in records] == ["phantom.png", "slice.dcm"]
            assert [t["question"] for t in records[0]["turns"]] == [q1, q2]
            assert [t["question"] for t in records[1]["turns"]] == [q3]
            assert records[0]["source"] == "web" and records[0]["summary"] is None

            page.click("#reset")
            assert page.locator(".msg").count() == 0
            fourth = ask(q1, 1)
            assert fourth == _expected(engine, rendered, [], q1)
        finally:
            browser.close()
