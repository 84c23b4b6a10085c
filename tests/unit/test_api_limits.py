"""HTTP-layer limits of ``vmed serve`` that do not depend on the model.

These tests use ``FakeEngine`` (a stand-in with the Engine's interface and the real tiny tokenizer)
because what they check happens before or around generation: body size (413), concurrency (429),
/health during a generation, image decoding and URL-fetch policy (400), schema errors (400). The
model-dependent behaviour (answers, streaming, usage, the context limit, the openai client, log
privacy) is tested with the real tiny model in ``test_api.py``.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import logging
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from _fuzz_api import huge_png_header

from vmed.inference.params import GenParams, GenResult
from vmed.serve.api import create_app, messages_to_conversation, serve_in_thread
from vmed.serve.limits import ApiError, ImageFetcher, ServeLimits, is_public_address, parse_data_url
from vmed.serve.schemas import ChatMessage


@functools.lru_cache(maxsize=1)
def _tokenizer():
    from vmed.model.tokenizer import build_tiny_tokenizer

    return build_tiny_tokenizer()


class FakeEngine:
    """The Engine interface with canned answers; ``gate`` (if set) blocks generation until released."""

    num_image_tokens = 4
    context_length = 256

    def __init__(self, gate: threading.Event | None = None):
        self.tokenizer = _tokenizer()
        self.gate = gate
        self.started = threading.Event()
        self.calls: list[tuple] = []
        self.cancels: list[threading.Event | None] = []

    def prompt_ids(self, image, history, question, system=None) -> list[int]:
        from vmed.data.template import encode_prompt

        n = self.num_image_tokens if image is not None else 0
        return encode_prompt(self.tokenizer, history, question, num_image_tokens=n, **({} if system is None else {"system": system}))

    def generate(self, image, history, question, params: GenParams, system=None, cancel=None) -> GenResult:
        self.calls.append((image, list(history), question, params, system))
        self.cancels.append(cancel)
        self.started.set()
        if self.gate is not None:
            deadline = time.monotonic() + 10
            while not self.gate.is_set() and not (cancel is not None and cancel.is_set()):
                assert time.monotonic() < deadline, "test gate never released"
                time.sleep(0.01)
        text = "fake answer"
        return GenResult(text=text, prompt_tokens=10, completion_tokens=2, finish_reason="stop")

    def stream(self, image, history, question, params: GenParams, system=None):
        result = self.generate(image, history, question, params, system)
        yield from ["fake ", "answer"]
        return result


def png_bytes(size=(32, 32), color=(120, 30, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def image_request(url: str, question: str = "What is shown?", **extra) -> dict:
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
    return {"model": "vmed", "messages": [{"role": "user", "content": content}], **extra}


@pytest.fixture()
def client():
    app = create_app(FakeEngine(), ServeLimits(max_body_bytes=200_000, max_images=2, max_image_pixels=1_000_000), model_name="fake")
    with TestClient(app) as c:
        yield c


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]


def test_valid_request_reaches_the_engine_with_the_decoded_image(client):
    r = client.post("/v1/chat/completions", json=image_request(data_url(png_bytes((40, 24)))))
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "fake answer"


@pytest.mark.parametrize("width, height, pixels", [(20000, 20000, "400,000,000"), (2000, 1000, "2,000,000")])
def test_image_over_pixel_budget_is_400_naming_the_limit(client, width, height, pixels):
    """The PNG's header claims the size and its pixel data is a token: refused from the header, never decoded."""
    err = _error(client.post("/v1/chat/completions", json=image_request(data_url(huge_png_header(width, height)))), 400)
    assert err["code"] == "image_too_large"
    assert "1000000 pixels" in err["message"] and "--max-image-pixels" in err["message"]
    assert pixels in err["message"]


def test_too_many_images_is_400(client):
    part = {"type": "image_url", "image_url": {"url": data_url(png_bytes())}}
    body = {"messages": [{"role": "user", "content": [part, part, part, {"type": "text", "text": "q"}]}]}
    err = _error(client.post("/v1/chat/completions", json=body), 400)
    assert err["code"] == "too_many_images" and "3" in err["message"] and "2" in err["message"]


@pytest.mark.parametrize(
    "url, code, words",
    [
        ("data:image/png;base64,@@not*base64@@", "invalid_base64", "base64"),
        (data_url(b"this is plain text, not an image at all"), "invalid_image", "unreadable"),
        (data_url(png_bytes()[:60]), "invalid_image", "unreadable"),
        (data_url(png_bytes(), "text/html"), "unsupported_media_type", "text/html"),
        ("data:image/png,rawbytes", "invalid_image_url", "base64"),
        ("file:///etc/passwd", "image_url_refused", "file"),
        ("http://example.org/x.png", "image_url_refused", "disabled"),
        ("https://example.org/x.png", "image_url_refused", "disabled"),
    ],
)
def test_bad_images_are_400_with_the_reason(client, url, code, words):
    err = _error(client.post("/v1/chat/completions", json=image_request(url)), 400)
    assert err["code"] == code
    assert words in err["message"]
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": -5}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": "hot"}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"n": 2}, "n"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(client, extra, param):
    err = _error(client.post("/v1/chat/completions", json=image_request(data_url(png_bytes()), **extra)), 400)
    assert err["param"] == param


def test_schema_errors_are_400_openai_style(client):
    assert _error(client.post("/v1/chat/completions", json={"messages": []}), 400)["param"] == "messages"
    err = _error(client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert "JSON" in err["message"]
    err = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}), 400)
    assert "last message" in err["message"]
    image_only = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png_bytes())}}]}]}
    assert "question is empty" in _error(client.post("/v1/chat/completions", json=image_only), 400)["message"]
    _error(client.get("/v1/nothing-here"), 404)


def test_declared_body_over_limit_is_413(client):
    body = json.dumps(image_request(data_url(b"\x00" * 300_000))).encode()
    err = _error(client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"}), 413)
    assert "200000" in err["message"]


def test_messages_to_conversation_pairs_turns_and_takes_system():
    msgs = [
        ChatMessage(role="system", content="be brief"),
        ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "data:a"}}, {"type": "text", "text": "q1"}]),
        ChatMessage(role="assistant", content="a1"),
        ChatMessage(role="user", content="q2"),
        ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": "data:b"}}, {"type": "text", "text": "more"}]),
    ]
    conv = messages_to_conversation(msgs, max_images=4)
    assert conv.system == "be brief"
    assert conv.history == [("q1", "a1")]
    assert conv.question == "q2\nmore"
    assert conv.image_urls == ["data:a", "data:b"]
    with pytest.raises(ApiError):
        messages_to_conversation(msgs, max_images=1)


def test_parse_data_url_media_types():
    assert parse_data_url(data_url(b"abc", "application/dicom")) == ("application/dicom", b"abc")
    with pytest.raises(ApiError, match="unsupported media type"):
        parse_data_url(data_url(b"abc", "image/svg+xml"))


# --- a real uvicorn server: raw sockets for the 413 cases, threads for 429 and /health ---------------


def _raw_request(base_url: str, head: bytes, body_parts: list[bytes]) -> bytes:
    """Send ``head`` and ``body_parts`` (never a complete body), then read the response."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head)
        for part in body_parts:
            s.sendall(part)
            time.sleep(0.05)
        response = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            response += chunk
    return response


def test_body_limit_refuses_before_reading_declared_and_chunked_bodies():
    app = create_app(FakeEngine(), ServeLimits(max_body_bytes=50_000))
    with serve_in_thread(app) as url:
        # A declared Content-Length of 1 GB: 413 comes back although not one body byte was sent.
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        response = _raw_request(url, head, [])
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"body_too_large" in response and b"50000 bytes" in response
        # A chunked body without a length: 413 once the received chunks pass the limit, before the body ends
        # (the terminating chunk is never sent).
        head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"%x\r\n%s\r\n" % (20_000, b"y" * 20_000)
        response = _raw_request(url, head, [chunk] * 3)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"body_too_large" in response
        # Under the limit, a chunked body is read normally (here: not JSON -> 400).
        response = _raw_request(url, head, [chunk, b"0\r\n\r\n"])
        assert response.startswith(b"HTTP/1.1 400"), response[:200]
        # The server keeps serving.
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_health_answers_during_generation_and_excess_requests_get_429_quickly():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    app = create_app(engine, ServeLimits(max_concurrent=1))
    with serve_in_thread(app) as url:
        results: list[httpx.Response] = []
        worker = threading.Thread(
            target=lambda: results.append(httpx.post(url + "/v1/chat/completions", json=image_request(data_url(png_bytes())), timeout=30))
        )
        worker.start()
        try:
            assert engine.started.wait(10)
            t0 = time.perf_counter()
            health = httpx.get(url + "/health", timeout=5)
            assert health.status_code == 200 and health.json()["in_flight"] == 1
            busy = httpx.post(url + "/v1/chat/completions", json=image_request(data_url(png_bytes())), timeout=5)
            assert time.perf_counter() - t0 < 2
            err = _error(busy, 429)
            assert err["type"] == "rate_limit_error"
        finally:
            gate.set()
            worker.join(10)
        assert results and results[0].status_code == 200
        assert httpx.get(url + "/health").json()["in_flight"] == 0


# --- URL fetch policy, with a fake resolver and transport (no network) ---------------------------------


def _fetcher(handler, resolve: dict[str, list[str]], **kw) -> ImageFetcher:
    return ImageFetcher(
        allowed_hosts=kw.pop("allowed", ("images.example.org", "cdn.example.org")),
        resolver=lambda host, port: resolve[host],
        transport=httpx.MockTransport(handler),
        **kw,
    )


PUBLIC = {"images.example.org": ["93.184.216.34"], "cdn.example.org": ["93.184.216.35"], "evil.example.org": ["93.184.216.36"]}


def test_fetch_allowed_host_connects_to_the_checked_address():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers["host"], request.extensions.get("sni_hostname")))
        return httpx.Response(200, content=png_bytes())

    data = _fetcher(handler, PUBLIC).fetch("https://images.example.org/a.png?x=1")
    assert data == png_bytes()
    assert seen == [("https://93.184.216.34/a.png?x=1", "images.example.org", "images.example.org")]


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.5", "172.16.4.4", "169.254.169.254", "::1", "fd00::1", "0.0.0.0", "::ffff:127.0.0.1"])
def test_fetch_refuses_private_addresses_even_for_allowed_hosts(address):
    assert not is_public_address(address)
    fetcher = _fetcher(lambda r: httpx.Response(200, content=png_bytes()), {"images.example.org": ["93.184.216.34", address]})
    with pytest.raises(ApiError, match="private"):
        fetcher.fetch("http://images.example.org/a.png")


def test_fetch_checks_every_redirect():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/to-evil":
            return httpx.Response(302, headers={"location": "http://evil.example.org/x.png"})
        if request.url.path == "/to-cdn":
            return httpx.Response(301, headers={"location": "https://cdn.example.org/ok.png"})
        if request.url.path == "/to-private":
            return httpx.Response(302, headers={"location": "http://cdn.example.org/p.png"})
        if request.url.path == "/loop":
            return httpx.Response(302, headers={"location": "/loop"})
        return httpx.Response(200, content=b"IMG")

    assert _fetcher(handler, PUBLIC).fetch("http://images.example.org/to-cdn") == b"IMG"
    with pytest.raises(ApiError, match="not in the server's allowlist"):
        _fetcher(handler, PUBLIC).fetch("http://images.example.org/to-evil")
    with pytest.raises(ApiError, match="private"):
        _fetcher(handler, {**PUBLIC, "cdn.example.org": ["10.0.0.7"]}).fetch("http://images.example.org/to-private")
    with pytest.raises(ApiError, match="redirected more than"):
        _fetcher(handler, PUBLIC).fetch("http://images.example.org/loop")


def test_fetch_size_cap_and_timeout():
    big = _fetcher(lambda r: httpx.Response(200, content=b"x" * 5000), PUBLIC, max_bytes=1000)
    with pytest.raises(ApiError, match="larger than"):
        big.fetch("http://images.example.org/big.png")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(ApiError, match="longer than"):
        _fetcher(slow, PUBLIC, timeout_s=0.5).fetch("http://images.example.org/slow.png")


def test_allowed_url_image_is_used_by_the_api():
    fetcher = _fetcher(lambda r: httpx.Response(200, content=png_bytes((48, 16))), PUBLIC)
    engine = FakeEngine()
    app = create_app(engine, ServeLimits(), fetcher=fetcher)
    with TestClient(app) as c:
        assert c.post("/v1/chat/completions", json=image_request("https://images.example.org/a.png")).status_code == 200
        err = _error(c.post("/v1/chat/completions", json=image_request("https://other.example.org/a.png")), 400)
        assert "allowlist" in err["message"]
    assert engine.calls[0][0].size == (48, 16)


class BrokenEngine(FakeEngine):
    """An engine whose generation fails with a message that quotes the input."""

    def generate(self, image, history, question, params, system=None, cancel=None):
        raise RuntimeError(f"kaboom while answering {question!r}")

    def stream(self, image, history, question, params, system=None):
        yield "partial "
        raise RuntimeError(f"kaboom while answering {question!r}")


def test_engine_failure_is_a_generic_500_without_the_input_in_logs_and_the_server_goes_on(caplog, capfd):
    canary = "CANARY500QUESTION"
    app = create_app(BrokenEngine(), ServeLimits())
    with serve_in_thread(app, log_level="info") as url, caplog.at_level(logging.INFO):
        body = {"messages": [{"role": "user", "content": canary}], "max_tokens": 4}
        err = _error(httpx.post(url + "/v1/chat/completions", json=body, timeout=30), 500)
        assert err["type"] == "server_error" and canary not in err["message"]
        with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=30) as r:
            events = [line for line in r.iter_lines() if line]
        assert '"server_error"' in events[-2] and events[-1] == "data: [DONE]"
        assert httpx.get(url + "/health").json()["in_flight"] == 0
    out, errout = capfd.readouterr()
    logged = caplog.text + out + errout
    assert "RuntimeError" in logged  # the failure is logged (type and place) ...
    assert canary not in logged  # ... without the message that quotes the question
