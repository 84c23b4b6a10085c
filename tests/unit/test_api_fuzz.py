"""Hostile requests through the API with the real tiny model (in-process): seeded and bounded.

Every field of a valid chat request is mutated (``_fuzz_api``: wrong types, odd numbers, nested garbage,
surrogates, special tokens, ``<image>`` beside an image part, bad content parts, odd and broken data URLs,
malformed bodies, wrong content types) and the other routes get bad bodies, presets and methods. Asserted:
no 5xx and no internal-error log line, ever; every error body is OpenAI-style
(``{"error": {"message", "type", "param", "code"}}``) and a 400 caused by a field names it in ``param``;
afterwards no concurrency slot is leaked and a valid request gets the same answer as the engine gives directly.

``VMED_FUZZ_ROUNDS`` (default 1) sets the rounds (seeds); ``VMED_FUZZ_TALLY=path`` appends one JSON line per
request (kind, status, error code, param) for ``benchmarks/fuzz_tally.py``.
"""

from __future__ import annotations

import json
import logging
import os
import random
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from _fuzz_api import png_bytes, requests, valid_request
from _serve_helpers import tiny_engine
from vmed.serve.api import create_app
from vmed.serve.limits import ServeLimits

ROUNDS = int(os.environ.get("VMED_FUZZ_ROUNDS", "1"))
MAX_NEW = 3
"""Answers are capped at this many tokens, so that a fuzzed max_tokens cannot make the run long."""


class _Capped:
    """The real engine, with answers capped at ``MAX_NEW`` tokens (everything else as is)."""

    def __init__(self, engine):
        self._engine = engine

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def generate(self, image, history, question, params, **kw):
        return self._engine.generate(image, history, question, replace(params, max_new_tokens=min(params.max_new_tokens, MAX_NEW)), **kw)

    def stream(self, image, history, question, params, **kw):
        return self._engine.stream(image, history, question, replace(params, max_new_tokens=min(params.max_new_tokens, MAX_NEW)), **kw)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    return tiny_engine(tmp_path_factory)


def _tally(**fields) -> None:
    path = os.environ.get("VMED_FUZZ_TALLY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")


def _check(h, r) -> tuple[str | None, str | None]:
    """Assert what every answer must be; return the error's (code, param)."""
    where = f"{h.kind} {h.method} {h.path[:80]}: {r.status_code} {r.text[:300]}"
    assert r.status_code < 500, where
    if r.status_code < 400:
        if h.path == "/v1/chat/completions" and r.headers.get("content-type", "").startswith("text/event-stream"):
            assert "server_error" not in r.text and r.text.rstrip().endswith("data: [DONE]"), where
        elif h.path == "/v1/chat/completions" and h.method == "POST":
            assert r.json()["object"] == "chat.completion", where
        return None, None
    if h.method == "HEAD":
        return None, None
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, where
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str), where
    if r.status_code == 400 and h.field is not None:
        assert err["param"] is not None and str(err["param"]).split(".")[0] == h.field, where
    return err["code"], err["param"]


def test_hostile_requests_never_get_a_5xx_and_errors_name_the_field(engine, caplog):
    app = create_app(_Capped(engine), ServeLimits(max_body_bytes=2_000_000, max_images=4, max_concurrent=4), model_name="tiny")
    png = png_bytes()
    statuses: dict[int, int] = {}
    with caplog.at_level(logging.ERROR, logger="vmed"), TestClient(app, raise_server_exceptions=False) as client:
        for round_ in range(ROUNDS):
            for h in requests(random.Random(round_), png):
                r = client.request(h.method, h.path, content=h.body, headers=h.headers)
                code, param = _check(h, r)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                _tally(round=round_, kind=h.kind, status=r.status_code, code=code, param=param)
        assert not [rec for rec in caplog.records if "internal error" in rec.getMessage()]
        assert client.get("/health").json()["in_flight"] == 0  # every refusal gave its slot back
        body = valid_request(png, max_tokens=2)
        r = client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200, r.text
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 100, statuses  # both sides were exercised
    from vmed.inference import GenParams
    from vmed.imaging import load_image

    expected = engine.generate(load_image(png), [("What is shown?", "a scan")], "Where is it?",
                               GenParams(max_new_tokens=2, temperature=0.5, top_p=0.9, seed=1, stop=["\n\n"]),
                               system="Answer briefly.")
    assert r.json()["choices"][0]["message"]["content"] == expected.text


def test_a_body_that_is_not_json_is_named_as_the_body(engine):
    app = create_app(_Capped(engine), ServeLimits(), model_name="tiny")
    with TestClient(app, raise_server_exceptions=False) as client:
        for raw in (b"{", b'{"messages": }', b'{"messages": [], "seed": 0x10}', b"\xff\xfe\x00"):
            r = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
            err = r.json()["error"]
            assert r.status_code == 400 and (err["param"], err["code"]) == ("body", "invalid_json"), r.text
            assert "not valid JSON (" in err["message"]
        for text in ("NaN", "Infinity"):  # Python's JSON reads these: out of range, naming the field
            r = client.post("/v1/chat/completions", content=('{"messages": [{"role": "user", "content": "x"}], "temperature": '
                                                             + text + "}").encode(), headers={"content-type": "application/json"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "temperature", r.text
