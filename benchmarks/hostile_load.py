"""The hostile mix of ``benchmarks/load_test.py --hostile``: valid clients alone, then with hostile clients.

Hostile kinds (round-robin per hostile client):

- ``slow_headers``: a request line and headers sent 1 byte/s; the server must close the socket after
  ``--header-timeout`` (no answer is expected);
- ``slow_body``: complete headers, then the JSON body 1 byte/s; the server must answer 408 after ``--body-timeout``;
- ``half_body``: headers declaring a body, half of it, then the client closes its socket (nothing to answer);
- ``oversized``: a declared body over ``--max-body-mb`` (413 before any body byte);
- ``garbage_json``: a body that is not JSON (400);
- ``bad_image``: truncated PNG and bad base64 data URLs (400);
- ``fuzz``: the next ``FUZZ_BURST`` requests of the API fuzz generator (``tests/unit/_fuzz_api.py``): anything below 500.

A slow sender must not hold a concurrency slot (the body is read before one is taken), so the valid
clients' latency and 429 count with the mix show what hostile clients cost the others.
"""

from __future__ import annotations

import base64
import itertools
import json
import random
import socket
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from _fuzz_api import png_bytes, requests, valid_request  # noqa: E402  (the API fuzz generator, shared with the tests)

HOSTILE = ("slow_headers", "slow_body", "half_body", "oversized", "garbage_json", "bad_image", "fuzz")
EXPECTED = {"slow_headers": "closed", "slow_body": 408, "half_body": "client_closed", "oversized": 413, "garbage_json": 400,
            "bad_image": 400}
"""What each hostile kind must get (``fuzz``: any status below 500)."""
FUZZ_BURST = 20
"""Fuzz requests sent in a row each time a hostile client's turn comes to ``fuzz``."""


def _split(base_url: str) -> tuple[str, int]:
    host, port = base_url.removeprefix("http://").split(":")
    return host, int(port)


def _read_status(s: socket.socket) -> int | str:
    """The HTTP status of the answer on ``s``, or ``"closed"`` when the server closed it without one."""
    data = b""
    try:
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return "closed"
    return int(data.split(b" ", 2)[1])


def _head(host: str, length: int) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\nConnection: close\r\n\r\n").encode()


def slow_headers(base_url: str, give_up: float) -> int | str:
    host, port = _split(base_url)
    head = _head(host, 10)
    with socket.create_connection((host, port), timeout=give_up) as s:
        t0 = time.monotonic()
        for b in head:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                return "closed"
            s.settimeout(1.0)  # 1 byte/s; a closed socket shows as EOF (or a reset) on recv
            try:
                if s.recv(4096) == b"":
                    return "closed"
            except socket.timeout:
                pass
            except ConnectionResetError:
                return "closed"
            if time.monotonic() - t0 > give_up:
                return "not_closed"
    return "sent_all"


def slow_body(base_url: str, give_up: float, body: bytes) -> int | str:
    host, port = _split(base_url)
    with socket.create_connection((host, port), timeout=give_up) as s:
        s.sendall(_head(host, len(body)))
        t0 = time.monotonic()
        for b in body:
            try:
                s.sendall(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(1.0)
            try:
                first = s.recv(4096)
            except socket.timeout:
                first = None
            if first is not None:
                return int(first.split(b" ", 2)[1]) if first.startswith(b"HTTP/1.1 ") else "closed"
            if time.monotonic() - t0 > give_up:
                return "not_answered"
        s.settimeout(give_up)
        return _read_status(s)


def half_body(base_url: str, body: bytes) -> str:
    host, port = _split(base_url)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(_head(host, len(body)) + body[: len(body) // 2])
        time.sleep(0.2)
    return "client_closed"


def oversized(base_url: str, max_body_bytes: int) -> int | str:
    host, port = _split(base_url)
    with socket.create_connection((host, port), timeout=30) as s:
        s.sendall(_head(host, max_body_bytes + 1))
        return _read_status(s)


class Phase:
    """Counts of one phase: status per kind, valid latencies."""

    def __init__(self) -> None:
        self.status: dict[str, Counter] = {}
        self.valid_latency: list[float] = []
        self.lock = threading.Lock()

    def add(self, kind: str, status: int | str, elapsed: float | None = None) -> None:
        with self.lock:
            self.status.setdefault(kind, Counter())[status] += 1
            if kind == "valid" and status == 200 and elapsed is not None:
                self.valid_latency.append(elapsed)

    def five_xx(self) -> int:
        return sum(n for c in self.status.values() for s, n in c.items() if isinstance(s, int) and s >= 500)

    def wrong(self) -> dict[str, dict]:
        out = {}
        for kind, c in self.status.items():
            if kind == "valid":
                bad = {s: n for s, n in c.items() if s not in (200, 429)}
            elif kind == "fuzz":
                bad = {s: n for s, n in c.items() if not (isinstance(s, int) and s < 500)}
            else:
                bad = {s: n for s, n in c.items() if s != EXPECTED[kind]}
            if bad:
                out[kind] = bad
        return out


def _valid_client(base_url: str, body: dict, deadline: float, phase: Phase) -> None:
    with httpx.Client(base_url=base_url, timeout=120) as http:
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            try:
                status: int | str = http.post("/v1/chat/completions", json=body).status_code
            except httpx.HTTPError as e:
                status = type(e).__name__
            phase.add("valid", status, time.perf_counter() - t0)


def _hostile_client(index: int, base_url: str, deadline: float, phase: Phase, give_up: float, max_body_bytes: int) -> None:
    png = png_bytes(32)
    valid = json.dumps(valid_request(png)).encode()
    b64 = base64.b64encode(png).decode()
    bad_images = [json.dumps(valid_request(png)).replace(b64, b64[: len(b64) // 2]).encode(),
                  json.dumps(valid_request(png)).replace(b64, "***not-base64***").encode()]
    fuzz = itertools.cycle(list(requests(random.Random(index), png, per_path=2)))
    kinds = itertools.cycle(HOSTILE[index % len(HOSTILE):] + HOSTILE[: index % len(HOSTILE)])
    with httpx.Client(base_url=base_url, timeout=60) as http:
        while time.monotonic() < deadline:
            kind = next(kinds)
            try:
                if kind == "slow_headers":
                    status: int | str = slow_headers(base_url, give_up)
                elif kind == "slow_body":
                    status = slow_body(base_url, give_up, valid)
                elif kind == "half_body":
                    status = half_body(base_url, valid)
                elif kind == "oversized":
                    status = oversized(base_url, max_body_bytes)
                elif kind == "garbage_json":
                    status = http.post("/v1/chat/completions", content=b'{"messages": [oops', headers={"content-type": "application/json"}).status_code
                elif kind == "bad_image":
                    status = http.post("/v1/chat/completions", content=bad_images[index % 2], headers={"content-type": "application/json"}).status_code
                else:  # a burst of fuzz requests between two slow ones
                    for _ in range(FUZZ_BURST):
                        h = next(fuzz)
                        phase.add(kind, http.request(h.method, h.path, content=h.body, headers=h.headers).status_code)
                    continue
            except (httpx.HTTPError, OSError) as e:
                status = type(e).__name__
            phase.add(kind, status)


def run_phase(base_url: str, *, seconds: float, clients: int, hostile_clients: int, max_tokens: int, max_body_bytes: int,
              give_up: float = 20.0) -> Phase:
    phase = Phase()
    body = valid_request(png_bytes(32), max_tokens=max_tokens)
    deadline = time.monotonic() + seconds
    threads = [threading.Thread(target=_valid_client, args=(base_url, body, deadline, phase), daemon=True) for _ in range(clients)]
    threads += [threading.Thread(target=_hostile_client, args=(i, base_url, deadline, phase, give_up, max_body_bytes), daemon=True)
                for i in range(hostile_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    return phase


def _pct(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def run_phases(base_url: str, *, seconds: float, clients: int, hostile_clients: int, max_tokens: int, max_body_bytes: int,
               rss: Callable[[], int], rss_before: int) -> bool:
    """Both phases, side by side; prints the table and returns True when nothing was wrong."""
    clean = run_phase(base_url, seconds=seconds, clients=clients, hostile_clients=0, max_tokens=max_tokens, max_body_bytes=max_body_bytes)
    rss_mid = rss()
    mixed = run_phase(base_url, seconds=seconds, clients=clients, hostile_clients=hostile_clients, max_tokens=max_tokens,
                      max_body_bytes=max_body_bytes)
    rss_after = rss()
    print("requests by kind and status (phase 2, with the hostile mix):")
    for kind in ("valid", *HOSTILE):
        if kind in mixed.status:
            expected = EXPECTED.get(kind, "<500" if kind == "fuzz" else "200")
            print(f"  {kind:13s} {sum(mixed.status[kind].values()):5d}  {dict(sorted(mixed.status[kind].items(), key=str))}  (expected {expected})")
    print(f"{'':22s}{'valid alone':>18s}{'with hostile mix':>20s}")
    print(f"{'valid requests':22s}{sum(clean.status.get('valid', {}).values()):>18d}{sum(mixed.status.get('valid', {}).values()):>20d}")
    print(f"{'valid 200':22s}{clean.status.get('valid', Counter())[200]:>18d}{mixed.status.get('valid', Counter())[200]:>20d}")
    print(f"{'valid 429':22s}{clean.status.get('valid', Counter())[429]:>18d}{mixed.status.get('valid', Counter())[429]:>20d}")
    for q in (50, 95):
        print(f"{f'valid latency p{q}':22s}{_pct(clean.valid_latency, q) * 1000:>15.0f} ms{_pct(mixed.valid_latency, q) * 1000:>17.0f} ms")
    print(f"{'5xx':22s}{clean.five_xx():>18d}{mixed.five_xx():>20d}")
    print(f"server RSS            start {rss_before / 2**20:.0f} MiB, after phase 1 {rss_mid / 2**20:.0f} MiB, "
          f"after phase 2 {rss_after / 2**20:.0f} MiB")
    wrong = {**{f"alone:{k}": v for k, v in clean.wrong().items()}, **{f"mixed:{k}": v for k, v in mixed.wrong().items()}}
    print(f"wrong outcomes        {wrong or 0}")
    return not wrong and clean.five_xx() == 0 and mixed.five_xx() == 0
