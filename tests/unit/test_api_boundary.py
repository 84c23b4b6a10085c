"""The HTTP error boundary (issue 11 §1) and server resources (§5), with ``FakeEngine`` and a real uvicorn.

Every refusal is a 4xx with an OpenAI-style body naming the field; slow clients cannot hold a
concurrency slot or a socket for long; a client that goes away stops its generation.
"""

from __future__ import annotations

import base64
import socket
import threading
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from test_api_limits import FakeEngine, _error, data_url, image_request, png_bytes
from vmed.serve.api import create_app, serve_in_thread
from vmed.serve.limits import ServeLimits, parse_data_url


@pytest.fixture()
def client():
    app = create_app(FakeEngine(), ServeLimits(max_body_bytes=200_000), model_name="fake")
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def _post_raw(client, raw: bytes) -> httpx.Response:
    return client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})


def test_lone_surrogate_is_400_naming_the_field(client):
    for raw, param in [
        (b'{"messages": [{"role": "user", "content": "x \\ud800"}]}', "messages.0.content"),
        (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "\\udfff y"}]}]}', "messages.0.content"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stop": "\\ud83d"}', "stop"),
        (b'{"messages": [{"role": "system", "content": "\\ud800"}, {"role": "user", "content": "x"}]}', "messages.0.content"),
    ]:
        err = _error(_post_raw(client, raw), 400)
        assert err["param"].startswith(param) and "surrogate" in err["message"], err
    ok = _post_raw(client, '{"messages": [{"role": "user", "content": "lung \\ud83e\\udec1"}]}'.encode())  # a valid pair: 🫁
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "extra, param",
    [
        ({"stream": "yes"}, "stream"), ({"stream": 1}, "stream"), ({"max_tokens": "5"}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"), ({"max_tokens": 5.0}, "max_tokens"), ({"temperature": "0.5"}, "temperature"),
        ({"temperature": True}, "temperature"), ({"seed": "1"}, "seed"), ({"seed": 2**63}, "seed"), ({"seed": -(2**63) - 1}, "seed"),
        ({"seed": 10**400}, "seed"), ({"top_p": "1"}, "top_p"), ({"n": True}, "n"), ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage"),
    ],
)
def test_loose_types_are_refused_naming_the_field(client, extra, param):
    err = _error(client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], **extra}), 400)
    assert err["param"] == param, err


def test_in_range_values_are_accepted(client):
    for extra in ({"temperature": 1e-300}, {"temperature": 1}, {"seed": 2**63 - 1}, {"seed": -(2**63)}, {"stream": False}, {"max_tokens": 5}):
        assert client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}], **extra}).status_code == 200


@pytest.mark.parametrize("url", ["http://[::1", "http://a.png]", "https://[zz]/x.png", "http://host:99999/x.png", "http://host:port/x", "ftp://[::1"])
def test_malformed_image_urls_are_400_even_with_urls_disabled(client, url):
    err = _error(client.post("/v1/chat/completions", json=image_request(url)), 400)
    assert err["param"] == "messages" and err["code"] in ("invalid_image_url", "image_url_refused")


def test_data_urls_as_rfc_2397_and_common_clients_write_them(client):
    png = png_bytes()
    b64 = base64.b64encode(png).decode()
    mime = base64.encodebytes(png).decode()  # line breaks every 76 characters, as MIME encoders write
    assert "\n" in mime
    for url in (f"DATA:image/png;base64,{b64}", f"Data:IMAGE/PNG;BASE64,{b64}", f"data:image/png;base64,{mime}",
                f"data:image/png;name=x.png;base64,{b64}", f"data:image/png;base64,{mime.replace(chr(10), chr(13) + chr(10))}"):
        assert parse_data_url(url)[1] == png
        assert client.post("/v1/chat/completions", json=image_request(url)).status_code == 200, url
    err = _error(client.post("/v1/chat/completions", json=image_request("data:image/png;base64," + b64.replace("+", "-").replace("/", "_") + "-_")), 400)
    assert err["code"] == "invalid_base64" and "URL-safe" in err["message"] and "position" in err["message"]
    err = _error(client.post("/v1/chat/completions", json=image_request("data:image/png;base64," + b64[:-3])), 400)
    assert err["code"] == "invalid_base64"


def test_image_placeholder_text_next_to_an_image_never_reaches_the_model_as_a_slot(client):
    r = client.post("/v1/chat/completions", json=image_request(data_url(png_bytes()), question="<image> <image> What is it?"))
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert "<image>" in r.json()["error"]["message"] and r.json()["error"]["param"] == "messages"


def test_render_refusals_are_4xx(client):
    assert _error(client.post("/v1/images/render", content=b""), 400)["code"] == "invalid_image"
    assert _error(client.post("/v1/images/render?preset=%F0%9F%AB%81", content=b"x"), 400)["param"] == "preset"
    assert _error(client.post("/v1/images/render", content=b"not an image"), 400)["code"] == "invalid_image"


# ---- malformed DICOMs and TIFFs: the imaging layer raises ImageError, the API answers 400 -------------------


def _dicom(**overrides) -> bytes:
    import numpy as np
    from _serve_helpers import ct_dicom_bytes

    data = ct_dicom_bytes(np.full((16, 16), 40), "Anon^Patient")
    if not overrides:
        return data
    import io

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    for key, value in overrides.items():
        if key == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = value
        elif key == "ModalityLUTSequence":
            from pydicom.dataset import Dataset
            from pydicom.sequence import Sequence

            item = Dataset()
            item.LUTDescriptor, item.LUTData = value
            ds.ModalityLUTSequence = Sequence([item])
            del ds.RescaleSlope, ds.RescaleIntercept
    buf = io.BytesIO()
    ds.save_as(buf)
    return buf.getvalue()


def _bad_rescale_slope() -> bytes:
    """RescaleSlope (0028,1053) DS written as 'abc ' (pydicom refuses to set such a value, so patch the bytes)."""
    data = _dicom()
    good = b"\x28\x00\x53\x10DS\x04\x001.0 "
    assert data.count(good) == 1
    return data.replace(good, b"\x28\x00\x53\x10DS\x04\x00abc ")


def _bad_tiff() -> bytes:
    import io

    from PIL import Image

    tiff = io.BytesIO()
    Image.new("L", (16, 16), 9).save(tiff, format="TIFF")
    raw = bytearray(tiff.getvalue())
    raw[4:8] = (len(raw) + 1000).to_bytes(4, "little")  # the first IFD offset points past the end
    return bytes(raw)


MALFORMED = {
    "bad RescaleSlope": _bad_rescale_slope,
    "short modality LUT": lambda: _dicom(ModalityLUTSequence=([4096, 0, 16], b"\x00\x01")),
    "TransferSyntaxUID 1.2.3.4.5": lambda: _dicom(TransferSyntaxUID="1.2.3.4.5"),
    "TIFF with a bad IFD offset": _bad_tiff,
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_dicom_and_tiff_are_400_on_render_and_in_chat(client, name):
    """Needs vmed.imaging to raise ImageError for every decoder failure (the lead's typed-error change)."""
    data = MALFORMED[name]()
    err = _error(client.post("/v1/images/render", content=data), 400)
    assert err["code"] in ("invalid_image", "image_too_large"), err
    err = _error(client.post("/v1/chat/completions", json=image_request(data_url(data, "application/dicom"))), 400)
    assert err["param"] == "messages"
    assert client.get("/health").json()["in_flight"] == 0


# ---- server resources: slots, slow clients, disconnects --------------------------------------------------


def _connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Read until the server closes the connection or ``seconds`` pass; -> (closed, what was received)."""
    s.settimeout(0.2)
    received = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def test_slow_uploads_to_render_never_take_a_slot_and_time_out():
    """4 clients trickling a render body (the reported DoS): chat keeps answering 200; each upload gets 408."""
    app = create_app(FakeEngine(), ServeLimits(max_concurrent=1, body_timeout_s=1.5))
    with serve_in_thread(app) as url:
        head = b"POST /v1/images/render HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n"
        slow = [_connect(url) for _ in range(4)]
        t0 = time.monotonic()
        for s in slow:
            s.sendall(head + b"\x89")
        for _ in range(3):  # while the uploads trickle, every chat request is served
            assert httpx.post(url + "/v1/chat/completions", json=image_request(data_url(png_bytes())), timeout=10).status_code == 200
            assert httpx.get(url + "/health").json()["in_flight"] == 0
            for s in slow:
                s.sendall(b"P")
            time.sleep(0.2)
        for s in slow:
            closed, received = _closed_within(s, 5)
            assert received.startswith(b"HTTP/1.1 408"), received[:200]
            assert b"request_timeout" in received and b"--body-timeout" in received
            s.close()
        assert time.monotonic() - t0 < 12  # 1.5 s body deadline; slack for a loaded machine
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_chat_body_is_read_before_a_slot_is_taken():
    """A half-sent chat body holds no slot: with max_concurrent=1 another request is answered meanwhile."""
    app = create_app(FakeEngine(), ServeLimits(max_concurrent=1, body_timeout_s=2))
    with serve_in_thread(app) as url:
        s = _connect(url)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"mess")
        time.sleep(0.3)
        assert httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10).status_code == 200
        closed, received = _closed_within(s, 5)
        assert received.startswith(b"HTTP/1.1 408") and closed
        s.close()


def test_idle_and_half_sent_header_connections_are_closed():
    app = create_app(FakeEngine(), ServeLimits(header_timeout_s=1.0, keep_alive_s=1.0))
    with serve_in_thread(app) as url:
        idle = _connect(url)  # connects and sends nothing
        partial = _connect(url)
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        trickle = _connect(url)
        t0 = time.monotonic()
        closed_trickle = False
        for _ in range(30):  # one header byte every 0.1 s does not extend the deadline
            try:
                trickle.sendall(b"X")
            except OSError:
                closed_trickle = True
                break
            time.sleep(0.1)
        assert _closed_within(idle, 3)[0] and _closed_within(partial, 3)[0]
        assert closed_trickle or _closed_within(trickle, 3)[0]
        assert time.monotonic() - t0 < 5
        kept = _connect(url)  # a kept-alive connection after a response: closed after keep_alive_s
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        closed, received = _closed_within(kept, 4)
        assert received.startswith(b"HTTP/1.1 200") and closed
        for s in (idle, partial, trickle, kept):
            s.close()
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_oversized_headers_are_refused():
    app = create_app(FakeEngine(), ServeLimits(max_header_bytes=4096))
    with serve_in_thread(app) as url:
        s = _connect(url)
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000)  # never finished: h11 stops buffering
        closed, received = _closed_within(s, 5)
        assert received.startswith(b"HTTP/1.1 4") and closed
        s.close()


def test_non_streaming_client_that_goes_away_stops_its_generation():
    gate = threading.Event()  # never set: the fake generation runs until it is cancelled
    engine = FakeEngine(gate=gate)
    app = create_app(engine, ServeLimits(max_concurrent=1))
    with serve_in_thread(app) as url:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=0.7)
        deadline = time.monotonic() + 5
        while httpx.get(url + "/health").json()["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.cancels and engine.cancels[0] is not None and engine.cancels[0].is_set()
        assert httpx.get(url + "/health").json()["in_flight"] == 0
        gate.set()
        assert httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, timeout=10).status_code == 200
