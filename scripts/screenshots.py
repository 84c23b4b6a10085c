"""Retakes the README's screenshots with a trained model answering a phantom's own dialogue.

    .venv/bin/python scripts/screenshots.py --model demo_output/model --phantoms demo_output/phantoms

Serves ``--model`` in-process (as ``vmed serve`` does), opens the web UI (and, where gradio is installed,
``vmed gradio`` pointed at the same endpoint) in Debian's headless Chromium, uploads the first test phantom,
asks that record's questions and then "Describe the image.", and writes docs/screenshot-web.png and
docs/screenshot-gradio.png. It prints each question, the model's answer and the record's gold answer, so
what the picture shows can be checked against the data. Offline; needs chromium and playwright.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from vmed.constants import SUMMARY_PROMPT
from vmed.inference import Engine
from vmed.serve.api import create_app, serve_in_thread

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
REPO = Path(__file__).resolve().parents[1]


def first_test_record(phantoms: Path, turns: int) -> tuple[Path, list[tuple[str, str]], str]:
    record = json.loads((phantoms / "test.jsonl").read_text().splitlines()[0])
    image = phantoms / record["image"]
    qa = [(t["question"], t["answer"]) for t in record["turns"]][:turns]
    return image, qa, record.get("summary") or ""


def web(url: str, image: Path, questions: list[str], out: Path, sync_api) -> list[str]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 860})
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('status').textContent.length > 0")
            page.set_input_files("#file", str(image))
            page.wait_for_selector("#preview-img[src^='data:image/png']")
            answers = []
            for n, question in enumerate(questions, 1):
                page.fill("#question", question)
                page.click("#send")
                page.wait_for_function(f"document.querySelectorAll('.msg.assistant:not(.pending)').length === {n}",
                                       timeout=120_000)
                answers.append(page.locator(".msg.assistant").nth(n - 1).text_content())
            page.screenshot(path=str(out))
            return answers
        finally:
            browser.close()


def gradio(url: str, image: Path, questions: list[str], out: Path, sync_api) -> list[str]:
    from vmed.serve.gradio_app import EndpointChat, build_demo, launch_options

    demo = build_demo(EndpointChat(url, max_tokens=64), examples_dir=out.parent / ".gradio-examples")
    demo.queue()
    _, local, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, **launch_options())
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(local)
                page.wait_for_selector("#vmed-file input[type=file]", state="attached", timeout=60_000)
                page.set_input_files("#vmed-file input[type=file]", str(image))
                page.wait_for_selector("#vmed-preview img", timeout=60_000)
                bots = page.locator("#vmed-chat [data-testid='bot']")
                for n, question in enumerate(questions, 1):
                    page.fill("#vmed-question textarea", question)
                    page.press("#vmed-question textarea", "Enter")
                    page.wait_for_function(
                        f"document.querySelectorAll('#vmed-chat [data-testid=\"bot\"]').length === {n}", timeout=120_000)
                    page.wait_for_timeout(1500)  # let the streamed answer settle
                page.screenshot(path=str(out))
                return [bots.nth(i).inner_text().strip() for i in range(bots.count())]
            finally:
                browser.close()
    finally:
        demo.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a model folder or run (e.g. demo_output/model)")
    parser.add_argument("--phantoms", type=Path, required=True, help="the demo's phantom folder (test.jsonl, images/)")
    parser.add_argument("--turns", type=int, default=4, help="how many of the record's questions to ask before the summary")
    parser.add_argument("--served-name", default="vmed-demo", help="the model name the pages show")
    parser.add_argument("--docs", type=Path, default=REPO / "docs")
    args = parser.parse_args()
    try:
        from playwright import sync_api
    except ImportError:
        sys.exit("playwright is not installed (pip install playwright)")
    if not Path(CHROMIUM).exists():
        sys.exit(f"Debian chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    image, qa, summary = first_test_record(args.phantoms, args.turns)
    questions = [q for q, _ in qa] + [SUMMARY_PROMPT]
    gold = [a for _, a in qa] + [summary]
    engine = Engine.from_pretrained(args.model)
    with serve_in_thread(create_app(engine, model_name=args.served_name)) as url:
        shots = {"web": web(url, image, questions, args.docs / "screenshot-web.png", sync_api)}
        try:
            shots["gradio"] = gradio(url, image, questions, args.docs / "screenshot-gradio.png", sync_api)
        except ImportError:
            print("gradio is not installed: docs/screenshot-gradio.png not retaken")
    print(f"image: {image.name}")
    for surface, answers in shots.items():
        for question, answer, expected in zip(questions, answers, gold):
            print(f"[{surface}] {question!r}: model {answer!r} | gold {expected!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
