"""A few seconds of ``benchmarks/load_test.py`` as a test: concurrent valid clients with bad requests interleaved.

Runs against the real tiny model (in-process uvicorn on 127.0.0.1). Every bad request must be refused
with its status and error code, no 5xx, and the server must still answer a valid request afterwards.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from vmed.inference import Engine
from vmed.serve.api import create_app, serve_in_thread
from vmed.serve.limits import ServeLimits

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "load_test.py"


@pytest.fixture(scope="module")
def load_test():
    spec = importlib.util.spec_from_file_location("vmed_load_test", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_short_load_run_has_no_5xx_and_the_server_survives(load_test, tmp_path):
    from vmed.model import build_preset, save_model

    save_model(*build_preset("tiny"), tmp_path / "tiny")
    engine = Engine.from_pretrained(tmp_path / "tiny")
    limits = ServeLimits(max_body_bytes=1024 * 1024, max_concurrent=16)
    with serve_in_thread(create_app(engine, limits)) as url:
        report = load_test.run_load(url, seconds=4, clients=4, bad_every=2, max_tokens=4, max_body_bytes=limits.max_body_bytes)
        assert report.errors_5xx == 0 and report.transport_errors == 0
        assert not report.wrong, dict(report.wrong)
        assert report.right["valid"] == report.sent["valid"] > 0
        bad_sent = sum(v for k, v in report.sent.items() if k != "valid")
        assert bad_sent >= 4 and sum(report.right[k] for k in load_test.BAD_KINDS) == bad_sent
        assert load_test.valid_request_ok(url)
