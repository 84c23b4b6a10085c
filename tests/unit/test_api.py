"""``vmed serve`` with the real tiny model through the real Engine, on a real uvicorn server.

Covers the OpenAI format (the official ``openai`` client, streaming and not), images as PNG and
DICOM data URLs, ``usage``, the context limit, system prompts and history, the web UI's routes, and
that prompts, images and DICOM tag values never reach the logs. The model-independent limits are in
``test_api_limits.py``.
"""

from __future__ import annotations

import base64
import io
import logging

import httpx
import numpy as np
import pytest
from PIL import Image

from _serve_helpers import ct_dicom_bytes, tiny_engine

from vmed.inference import Engine, GenParams
from vmed.serve.api import create_app, serve_in_thread
from vmed.serve.limits import ServeLimits


def png_bytes(size=(48, 48), seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(patient_name: str = "Anonymous^Patient", size: int = 32) -> bytes:
    """A small CT slice with a given PatientName tag: a soft-tissue disc (40 HU) in air (-1024 HU)."""
    yy, xx = np.mgrid[:size, :size]
    return ct_dicom_bytes(np.where(np.hypot(yy - size / 2, xx - size / 2) < size / 3, 40, -1024), patient_name)


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def user_message(text: str, url: str | None = None) -> dict:
    parts = [{"type": "text", "text": text}]
    if url:
        parts.insert(0, {"type": "image_url", "image_url": {"url": url}})
    return {"role": "user", "content": parts}


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> Engine:
    return tiny_engine(tmp_path_factory)


@pytest.fixture(scope="module")
def server(engine):
    app = create_app(engine, ServeLimits(max_concurrent=8), model_name="tiny-test")
    with serve_in_thread(app, log_level="info") as url:
        yield url


def _image(data: bytes) -> Image.Image:
    from vmed.imaging import load_image

    return load_image(data)


def test_openai_client_non_streaming_and_streaming(server, engine):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=server + "/v1", api_key="not-needed", max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny-test"]

    png = png_bytes()
    messages = [user_message("What is shown in the image?", data_url(png))]
    reply = client.chat.completions.create(model="tiny-test", messages=messages, max_tokens=12, seed=3)
    expected = engine.generate(_image(png), [], "What is shown in the image?", GenParams(max_new_tokens=12, seed=3))
    assert reply.object == "chat.completion" and reply.model == "tiny-test"
    assert reply.choices[0].message.role == "assistant"
    assert reply.choices[0].message.content == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.prompt_tokens == len(engine.prompt_ids(_image(png), [], "What is shown in the image?"))
    assert reply.usage.completion_tokens == expected.completion_tokens
    assert reply.usage.total_tokens == expected.prompt_tokens + expected.completion_tokens

    stream = client.chat.completions.create(
        model="tiny-test", messages=messages, max_tokens=12, seed=3, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == expected.text
    assert finish == [expected.finish_reason]
    assert chunks[-1].usage.prompt_tokens == expected.prompt_tokens
    assert chunks[-1].usage.completion_tokens == expected.completion_tokens


def test_sse_wire_format_ends_with_done(server):
    body = {"messages": [user_message("Describe it.", data_url(png_bytes()))], "max_tokens": 6, "stream": True}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert '"role": "assistant"' in events[0]


def test_text_only_history_and_system_prompt_reach_the_engine(server, engine):
    messages = [
        {"role": "system", "content": "Answer in one word."},
        user_message("Is there a lesion?", data_url(png_bytes(seed=1))),
        {"role": "assistant", "content": "yes"},
        user_message("Where is it?"),
    ]
    r = httpx.post(server + "/v1/chat/completions", json={"messages": messages, "max_tokens": 5, "temperature": 0.7, "seed": 5}, timeout=60)
    assert r.status_code == 200, r.text
    image = _image(png_bytes(seed=1))
    expected = engine.generate(
        image, [("Is there a lesion?", "yes")], "Where is it?", GenParams(max_new_tokens=5, temperature=0.7, seed=5),
        system="Answer in one word.",
    )
    assert r.json()["choices"][0]["message"]["content"] == expected.text
    assert r.json()["usage"]["prompt_tokens"] == expected.prompt_tokens
    text_only = httpx.post(server + "/v1/chat/completions", json={"messages": [user_message("Hello")], "max_tokens": 3}, timeout=60)
    assert text_only.json()["usage"]["prompt_tokens"] == len(engine.prompt_ids(None, [], "Hello"))


def test_dicom_data_url_is_windowed_and_answered(server, engine):
    dcm = dicom_bytes()
    r = httpx.post(server + "/v1/chat/completions", json={"messages": [user_message("Any findings?", data_url(dcm, "application/dicom"))], "max_tokens": 4}, timeout=60)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] == len(engine.prompt_ids(_image(dcm), [], "Any findings?"))
    rendered = httpx.post(server + "/v1/images/render?preset=soft-tissue", content=dcm, timeout=60)
    assert rendered.status_code == 200, rendered.text
    png = base64.b64decode(rendered.json()["data_url"].split(",", 1)[1])
    im = Image.open(io.BytesIO(png))
    assert im.format == "PNG" and im.size == (32, 32)
    assert np.asarray(im.convert("L")).std() > 10  # the windowed disc is visible
    assert httpx.post(server + "/v1/images/render?preset=nope", content=dcm).status_code == 400
    bad = httpx.post(server + "/v1/images/render", content=dcm[: len(dcm) // 2])
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_image"


def test_context_overflow_is_400_stating_both_numbers(server, engine):
    png = png_bytes()
    image = _image(png)
    per_word = len(engine.prompt_ids(image, [], "lung " * 101)) - len(engine.prompt_ids(image, [], "lung " * 100))
    words = (engine.context_length - len(engine.prompt_ids(image, [], "lung")) - 6) // per_word
    question = "lung " * words  # a long question that leaves a few tokens of room
    prompt = len(engine.prompt_ids(image, [], question))
    room = engine.context_length - prompt
    assert 0 < room < 40
    for stream in (False, True):
        body = {"messages": [user_message(question, data_url(png))], "max_tokens": room + 1, "stream": stream}
        r = httpx.post(server + "/v1/chat/completions", json=body, timeout=60)
        assert r.status_code == 400, r.text
        err = r.json()["error"]
        assert err["code"] == "context_length_exceeded" and err["param"] == "max_tokens"
        assert str(prompt) in err["message"] and str(room + 1) in err["message"] and str(engine.context_length) in err["message"]
    ok = httpx.post(server + "/v1/chat/completions", json={"messages": [user_message(question, data_url(png))], "max_tokens": room}, timeout=120)
    assert ok.status_code == 200 and ok.json()["usage"]["prompt_tokens"] == prompt
    # Without max_tokens the answer gets the room that is left, not the default of 256.
    auto = httpx.post(server + "/v1/chat/completions", json={"messages": [user_message(question, data_url(png))]}, timeout=120)
    assert auto.status_code == 200 and auto.json()["usage"]["completion_tokens"] <= room


def test_web_ui_routes(server):
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"] and "/web/app.js" in page.text
    assert "/v1/chat/completions" in httpx.get(server + "/web/app.js").text
    assert httpx.get(server + "/web/style.css").status_code == 200
    assert httpx.get(server + "/web/secret.py").status_code == 404
    presets = httpx.get(server + "/v1/images/presets").json()["presets"]
    assert "lung" in presets and {"center", "width"} <= set(presets["lung"])
    health = httpx.get(server + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny-test"


def test_prompts_images_and_dicom_tags_never_reach_the_logs(server, caplog, capfd):
    """Canaries in the prompt, the system prompt, a DICOM PatientName and bad requests; logs captured at INFO."""
    canary_prompt = "CANARYPROMPT7731"
    canary_system = "CANARYSYSTEM5520"
    canary_tag = "CANARY^TAGVALUE^9981"
    dcm = dicom_bytes(patient_name=canary_tag)
    dcm_b64 = base64.b64encode(dcm).decode()
    access = logging.getLogger("uvicorn.access")
    error = logging.getLogger("uvicorn.error")
    access.addHandler(caplog.handler)
    error.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            requests = [
                {"messages": [{"role": "system", "content": canary_system}, user_message(canary_prompt, data_url(dcm, "application/dicom"))], "max_tokens": 4},
                {"messages": [user_message(canary_prompt, data_url(dcm, "application/dicom"))], "max_tokens": 4, "stream": True},
                {"messages": [user_message(canary_prompt, data_url(dcm[:300], "application/dicom"))]},
                {"messages": [user_message(canary_prompt, "data:image/png;base64," + canary_prompt + "!!")]},
                {"messages": [user_message(canary_prompt)], "temperature": canary_prompt},
                {"messages": [user_message(canary_prompt * 300)], "max_tokens": 2000},
                {"messages": [{"role": "tool", "content": canary_prompt}]},
            ]
            statuses = [httpx.post(server + "/v1/chat/completions", json=body, timeout=60).status_code for body in requests]
            statuses.append(httpx.post(server + "/v1/images/render", content=dcm, timeout=60).status_code)
    finally:
        access.removeHandler(caplog.handler)
        error.removeHandler(caplog.handler)
    assert statuses == [200, 200, 400, 400, 400, 400, 400, 200]
    out, err = capfd.readouterr()
    logged = caplog.text + out + err
    assert "POST /v1/chat/completions" in logged  # the access log was captured
    assert "prompt_tokens=" in logged  # and vmed's own request log
    for canary in (canary_prompt, canary_system, canary_tag, "CANARY^TAGVALUE", dcm_b64[:40]):
        assert canary not in logged


def test_client_disconnect_mid_stream_cancels_and_frees_the_slot(server, engine):
    """A client that hangs up after the first chunk: the generation is cancelled and the server goes on."""
    import time

    body = {"messages": [user_message("Describe everything.", data_url(png_bytes()))], "max_tokens": 1500, "stream": True}
    with httpx.stream("POST", server + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if '"content"' in line:
                break
    deadline = time.monotonic() + 30
    while httpx.get(server + "/health").json()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert httpx.get(server + "/health").json()["in_flight"] == 0
    t0 = time.monotonic()
    ok = httpx.post(server + "/v1/chat/completions", json={"messages": [user_message("Hi")], "max_tokens": 2}, timeout=60)
    assert ok.status_code == 200
    assert time.monotonic() - t0 < 20  # not stuck behind the abandoned 1500-token generation
