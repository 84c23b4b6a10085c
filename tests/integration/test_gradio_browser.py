"""``vmed gradio`` in real headless Chromium, against ``vmed serve`` on the real tiny model.

The Gradio page talks to the endpoint only (it loads no model). A person's session: upload a phantom,
two streamed turns, retry the last one, undo it, switch to a DICOM slice (windowed by vmed before it is
sent), one more turn, download the transcript. Every answer shown must be the engine's own greedy answer
for the same image and history. The README's screenshots come
from ``scripts/screenshots.py`` (a trained model), not from this test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from _serve_helpers import tiny_engine

from vmed.inference import Engine, GenParams
from vmed.serve.api import create_app, serve_in_thread

pytestmark = [pytest.mark.browser, pytest.mark.integration]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return tiny_engine(tmp_path_factory)


def _expected(engine: Engine, image, history, question: str) -> str:
    text = engine.generate(image, history, question, GenParams(max_new_tokens=MAX_TOKENS, temperature=0.0)).text
    return text if text else "(empty answer)"


def test_gradio_upload_chat_retry_undo_switch_download(engine, tmp_path):
    gr = pytest.importorskip("gradio", reason="gradio is not installed (pip install 'vmed[gradio]')")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    from vmed.imaging import load_image
    from vmed.serve.gradio_app import EndpointChat, build_demo, launch_options

    assert gr.__version__
    examples = tmp_path / "examples"
    dcm = Path(get_testdata_file("CT_small.dcm"))
    q1, q2, q3 = "What organ is shown?", "Is there a nodule?", "Describe the image."
    inner = create_app(engine, model_name="vmed-tiny")
    completions = []

    async def app(scope, receive, send):  # counts the chat requests the page makes
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            completions.append(scope["method"])
        await inner(scope, receive, send)

    app.state = inner.state  # serve_in_thread reads the app's limits from there

    with serve_in_thread(app) as url:
        chat = EndpointChat(url, max_tokens=MAX_TOKENS)
        demo = build_demo(chat, examples_dir=examples)
        demo.queue()
        _, local, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, **launch_options())
        png = sorted((examples / "images").glob("*.png"))[0]
        try:
            with sync_api.sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
                    page.goto(local)
                    page.wait_for_selector("#vmed-file input[type=file]", state="attached", timeout=60_000)
                    page.set_input_files("#vmed-file input[type=file]", str(png))
                    page.wait_for_selector("#vmed-preview img", timeout=60_000)

                    bots = page.locator("#vmed-chat [data-testid='bot']")

                    def settled(n: int, expected: str) -> str:
                        """Wait until message n shows `expected` (streaming done), or time out; return what it shows."""
                        js = ("([n, text]) => { const b = document.querySelectorAll('#vmed-chat [data-testid=\"bot\"]');"
                              " return b.length === n && b[n - 1].innerText.trim() === text; }")
                        try:
                            page.wait_for_function(js, arg=[n, expected], timeout=60_000)
                        except sync_api.TimeoutError:
                            pass  # the assertion below shows what the page holds instead
                        return bots.nth(n - 1).inner_text().strip() if bots.count() >= n else "(no answer)"

                    def ask(question: str, n: int, expected: str) -> str:
                        page.fill("#vmed-question textarea", question)
                        page.press("#vmed-question textarea", "Enter")
                        return settled(n, expected)

                    image = load_image(png)
                    expected1 = _expected(engine, image, [], q1).strip()
                    first = ask(q1, 1, expected1)
                    assert first == expected1
                    history = [(q1, "" if first == "(empty answer)" else first)]
                    expected2 = _expected(engine, image, history, q2).strip()
                    second = ask(q2, 2, expected2)
                    assert second == expected2

                    # retry: the last answer is generated again (greedy: the same text), still two turns. The
                    # retried answer is checked in the session's transcript: once in CI the page's streamed text
                    # stopped updating mid-answer after a retry (not diagnosed; see issue 13's note).
                    bots.nth(1).hover()
                    page.locator("#vmed-chat button[aria-label='Retry']").last.click()
                    deadline = 60.0
                    while len(completions) < 3 and deadline > 0:
                        page.wait_for_timeout(100)
                        deadline -= 0.1
                    assert len(completions) == 3  # q1, q2 and the retried q2
                    retried: list = []
                    for _ in range(120):
                        with page.expect_download() as info:
                            page.click("#vmed-download")
                        retried = [json.loads(line) for line in Path(info.value.path()).read_text().splitlines()]
                        if retried and len(retried[0]["turns"]) == 2:
                            break
                        page.wait_for_timeout(500)
                    assert [t["answer"].strip() for t in retried[0]["turns"]] == [first, expected2]
                    settled(2, expected2)
                    assert bots.count() == 2

                    # undo: the last turn goes, its question comes back into the box
                    bots.nth(1).hover()
                    page.locator("#vmed-chat button[aria-label='Undo']").last.click()
                    page.wait_for_function("document.querySelectorAll('#vmed-chat [data-testid=\"bot\"]').length === 1")
                    page.wait_for_function(f"document.querySelector('#vmed-question textarea').value === {json.dumps(q2)}")

                    # a DICOM slice starts a new dialogue, windowed by vmed as the model sees it
                    page.locator("#vmed-file button[aria-label='Clear']").first.click()
                    page.set_input_files("#vmed-file input[type=file]", str(dcm))
                    page.wait_for_function("document.querySelectorAll('#vmed-chat [data-testid=\"bot\"]').length === 0")
                    page.wait_for_selector("#vmed-preview img", timeout=60_000)
                    expected3 = _expected(engine, load_image(dcm), [], q3).strip()
                    assert ask(q3, 1, expected3) == expected3
                    assert len(completions) == 4

                    records: list = []
                    for _ in range(20):  # the transcript file is rewritten just after the turn ends
                        with page.expect_download() as info:
                            page.click("#vmed-download")
                        records = [json.loads(line) for line in Path(info.value.path()).read_text().splitlines()]
                        if len(records) == 2:
                            break
                        page.wait_for_timeout(500)
                    assert [r["image"] for r in records] == [png.name, dcm.name]
                    assert [t["question"] for t in records[0]["turns"]] == [q1]
                    assert [t["question"] for t in records[1]["turns"]] == [q3]
                    assert records[0]["source"] == "gradio" and records[0]["summary"] is None
                finally:
                    browser.close()
        finally:
            demo.close()
