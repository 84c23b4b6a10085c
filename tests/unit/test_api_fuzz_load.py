"""A few seconds of ``benchmarks/load_test.py --hostile`` as a test: slow-loris senders (headers and body at
1 byte/s), half-sent and oversized bodies, garbage JSON, bad images and API fuzz requests mixed with a valid
client, against the real tiny model on a real uvicorn (127.0.0.1). Every hostile kind must get its answer (408
for a slow body, a closed socket for slow headers, 413, 400, never a 5xx) and the valid client only 200s.
"""

from __future__ import annotations

import sys
from pathlib import Path

from _serve_helpers import tiny_engine
from vmed.serve.api import create_app, serve_in_thread
from vmed.serve.limits import ServeLimits

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import hostile_load  # noqa: E402


def test_hostile_mix_gets_the_right_answers_and_no_5xx(tmp_path_factory):
    limits = ServeLimits(max_body_bytes=1024 * 1024, max_concurrent=4, header_timeout_s=1.0, body_timeout_s=1.0)
    with serve_in_thread(create_app(tiny_engine(tmp_path_factory), limits)) as url:
        phase = hostile_load.run_phase(url, seconds=4, clients=1, hostile_clients=3, max_tokens=2,
                                       max_body_bytes=limits.max_body_bytes, give_up=10)
    assert phase.five_xx() == 0 and not phase.wrong(), (phase.status, phase.wrong())
    assert phase.status["valid"][200] > 0
    seen = {k for k in phase.status if k != "valid"}
    assert {"slow_headers", "slow_body", "half_body"} <= seen, phase.status  # each client starts at another kind
    assert phase.status["slow_body"][408] >= 1 and phase.status["slow_headers"]["closed"] >= 1
