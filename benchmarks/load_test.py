"""Load and robustness test of ``vmed serve``: concurrent valid clients with garbage interleaved.

Starts ``vmed serve`` with a model (default: the tiny random preset, built into a temp dir) on
127.0.0.1 only, then for ``--seconds`` runs ``--clients`` threads. Each client sends valid
chat-completion requests (a PNG and a question) and, every ``--bad-every``-th request, one bad
request from a rotation: a 20000x20000 PNG header (400 image_too_large), bad base64 (400), a
truncated PNG (400), a truncated DICOM (400) and an oversized body (413: a raw socket declares
the length and sends only the headers; the server must answer without reading a body). Loops are bounded in time and count.

Prints requests sent, succeeded, rejected with the expected code, wrong codes, unexpected 5xx (must
be 0), p50/p95 latency, and the server's RSS before and after; exits 1 if anything is wrong or if
the server does not answer a valid request at the end.

    python benchmarks/load_test.py                  # 30 s, 8 clients, tiny model
    python benchmarks/load_test.py --seconds 10 --model runs/demo/model
    python benchmarks/load_test.py --hostile --seconds 40 --clients 4 --hostile-clients 4

``--hostile`` runs two phases of ``--seconds`` each against the same server, side by side: the valid clients
alone, then the same valid clients with ``--hostile-clients`` threads sending hostile requests (see
``benchmarks/hostile_load.py``: slow-loris senders at 1 byte/s in the headers or the body, half-sent bodies,
oversized bodies, garbage JSON, bad images, and the API fuzz requests of ``tests/unit/_fuzz_api.py``). It prints
requests by status code per kind, valid-request latency p50/p95 per phase, any 5xx, and the server's RSS.
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from _fuzz_api import huge_png_header  # noqa: E402  (shared with the tests)

BAD_KINDS = ("huge_image", "bad_base64", "truncated_png", "truncated_dicom", "oversized_body")
EXPECTED = {"valid": 200, "huge_image": 400, "bad_base64": 400, "truncated_png": 400, "truncated_dicom": 400, "oversized_body": 413}
ERROR_CODES = {"huge_image": "image_too_large", "bad_base64": "invalid_base64", "truncated_png": "invalid_image",
               "truncated_dicom": "invalid_image", "oversized_body": "body_too_large"}
"""The OpenAI-style ``error.code`` each bad request must carry (a right status with another reason counts as wrong)."""


def png_bytes(size: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def dicom_bytes(size: int = 64) -> bytes:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.arange(size * size, dtype=np.int16).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def _body(url: str, max_tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is shown?"}]}],
            "max_tokens": max_tokens}


@dataclass
class LoadReport:
    """Counts and latencies of one load run. ``latencies`` in seconds per request kind."""

    sent: Counter = field(default_factory=Counter)
    right: Counter = field(default_factory=Counter)
    wrong: Counter = field(default_factory=Counter)
    busy: int = 0
    errors_5xx: int = 0
    transport_errors: int = 0
    latencies: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0

    def ok(self) -> bool:
        return self.errors_5xx == 0 and not self.wrong and self.transport_errors == 0 and self.right["valid"] > 0


def _oversized(base_url: str, declared: int) -> tuple[int, str | None]:
    """Declare a body larger than the limit and send only the headers; return (status, error code).

    The server must answer without waiting for the body. (Sending body bytes after its answer would
    race with its closing the connection, and a reset can discard the answer at the client.)
    """
    host, port = base_url.removeprefix("http://").split(":")
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {declared}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection((host, int(port)), timeout=30) as s:
        s.sendall(head)
        response = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            response += chunk
    if not response.startswith(b"HTTP/1.1 "):
        return -1, None
    code = "body_too_large" if b'"code": "body_too_large"' in response or b'"code":"body_too_large"' in response else None
    return int(response.split(b" ", 2)[1]), code


def run_load(
    base_url: str, *, seconds: float = 30.0, clients: int = 8, bad_every: int = 3, max_tokens: int = 16,
    max_body_bytes: int = 2 * 1024 * 1024, max_requests_per_client: int = 10_000,
) -> LoadReport:
    """Run ``clients`` threads against ``base_url`` for ``seconds`` (and at most ``max_requests_per_client`` each)."""
    png = png_bytes()
    dcm = dicom_bytes()
    bodies = {
        "valid": _body(_url(png), max_tokens),
        "huge_image": _body(_url(huge_png_header()), max_tokens),
        "bad_base64": _body("data:image/png;base64,iVBORw0KGgo***not-base64***", max_tokens),
        "truncated_png": _body(_url(png[: len(png) // 2]), max_tokens),
        "truncated_dicom": _body(_url(dcm[: len(dcm) // 2], "application/dicom"), max_tokens),
    }
    report = LoadReport(latencies={kind: [] for kind in EXPECTED})
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    bad_cycle = itertools.cycle(BAD_KINDS)

    def client(index: int) -> None:
        with httpx.Client(base_url=base_url, timeout=120) as http:
            for n in range(max_requests_per_client):
                if time.monotonic() >= deadline:
                    return
                if (n + index) % bad_every == bad_every - 1:
                    with lock:
                        kind = next(bad_cycle)
                else:
                    kind = "valid"
                t0 = time.perf_counter()
                try:
                    if kind == "oversized_body":
                        status, code = _oversized(base_url, max_body_bytes + 1)
                    else:
                        response = http.post("/v1/chat/completions", json=bodies[kind])
                        status = response.status_code
                        code = response.json().get("error", {}).get("code") if status != 200 else None
                except (httpx.HTTPError, OSError, ValueError):
                    status = code = None
                elapsed = time.perf_counter() - t0
                with lock:
                    report.sent[kind] += 1
                    if status is None:
                        report.transport_errors += 1
                    elif status == EXPECTED[kind] and code == ERROR_CODES.get(kind):
                        report.right[kind] += 1
                        report.latencies[kind].append(elapsed)
                    elif status == 429:
                        report.busy += 1
                    else:
                        report.wrong[f"{kind}->{status} {code}"] += 1
                        if status >= 500:
                            report.errors_5xx += 1

    t_start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 300)
    report.seconds = time.perf_counter() - t_start
    return report


def valid_request_ok(base_url: str, max_tokens: int = 8) -> bool:
    r = httpx.post(base_url + "/v1/chat/completions", json=_body(_url(png_bytes(seed=1)), max_tokens), timeout=120)
    return r.status_code == 200 and r.json()["object"] == "chat.completion"


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def print_report(report: LoadReport, rss_before: int | None, rss_after: int | None) -> None:
    total = sum(report.sent.values())
    print(f"duration            {report.seconds:.1f} s")
    print(f"requests sent       {total}  ({', '.join(f'{k} {v}' for k, v in sorted(report.sent.items()))})")
    print(f"succeeded (200)     {report.right['valid']} of {report.sent['valid']} valid")
    rejected = sum(v for k, v in report.right.items() if k != "valid")
    print(f"rejected, right code {rejected} of {total - report.sent['valid']} bad "
          f"({', '.join(f'{k}->{EXPECTED[k]} {report.right[k]}' for k in BAD_KINDS)})")
    print(f"429 busy            {report.busy}")
    print(f"wrong codes         {dict(report.wrong) or 0}")
    print(f"unexpected 5xx      {report.errors_5xx}")
    print(f"transport errors    {report.transport_errors}")
    valid = report.latencies["valid"]
    bad = [x for k in BAD_KINDS for x in report.latencies[k]]
    print(f"valid latency       p50 {_pct(valid, 50) * 1000:.0f} ms, p95 {_pct(valid, 95) * 1000:.0f} ms")
    print(f"bad latency         p50 {_pct(bad, 50) * 1000:.0f} ms, p95 {_pct(bad, 95) * 1000:.0f} ms")
    if rss_before is not None and rss_after is not None:
        print(f"server RSS          before {rss_before / 2**20:.0f} MiB, after {rss_after / 2**20:.0f} MiB "
              f"({(rss_after - rss_before) / 2**20:+.0f} MiB)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss(pid: int) -> int:
    import psutil

    return psutil.Process(pid).memory_info().rss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model dir (default: build the tiny preset into a temp dir)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--bad-every", type=int, default=3, help="every n-th request of a client is a bad one")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--max-body-mb", type=float, default=2.0)
    parser.add_argument("--hostile", action="store_true", help="two phases: valid clients alone, then with hostile clients")
    parser.add_argument("--hostile-clients", type=int, default=4)
    parser.add_argument("--timeouts", type=float, default=3.0, help="--hostile: the server's --header-timeout and --body-timeout")
    parser.add_argument("--quick", action="store_true", help="short settings (benchmarks/run_all.sh): 5 s, 4 clients")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.clients = min(args.seconds, 5.0), min(args.clients, 4)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from vmed.model import build_preset, save_model

            model = os.path.join(tmp, "tiny")
            save_model(*build_preset("tiny"), model)
        port = _free_port()
        base_url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "vmed", "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
               "--max-body-mb", str(args.max_body_mb), "--max-concurrent", str(2 * args.clients), "--log-level", "warning"]
        if args.hostile:
            cmd[cmd.index("--max-concurrent") + 1] = str(args.clients + args.hostile_clients)
            cmd += ["--header-timeout", str(args.timeouts), "--body-timeout", str(args.timeouts)]
        server = subprocess.Popen(cmd)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(base_url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None or time.monotonic() > deadline:
                    print("the server did not start", file=sys.stderr)
                    return 1
                time.sleep(0.5)
            valid_request_ok(base_url)  # warm-up, so RSS "before" includes the first generation's allocations
            rss_before = _rss(server.pid)
            if args.hostile:
                from hostile_load import run_phases

                print(f"hostile load: {args.clients} valid clients, then the same plus {args.hostile_clients} hostile clients, "
                      f"{args.seconds:g} s each, against {base_url} (model {model}; --header-timeout/--body-timeout {args.timeouts:g} s)")
                ok = run_phases(base_url, seconds=args.seconds, clients=args.clients, hostile_clients=args.hostile_clients,
                                max_tokens=args.max_tokens, max_body_bytes=int(args.max_body_mb * 1024 * 1024),
                                rss=lambda: _rss(server.pid), rss_before=rss_before)
                final_ok = valid_request_ok(base_url)
                print(f"valid request after the run: {'ok' if final_ok else 'FAILED'}")
                return 0 if ok and final_ok else 1
            print(f"load: {args.clients} clients for {args.seconds:g} s against {base_url} (model {model})")
            report = run_load(base_url, seconds=args.seconds, clients=args.clients, bad_every=args.bad_every,
                              max_tokens=args.max_tokens, max_body_bytes=int(args.max_body_mb * 1024 * 1024))
            final_ok = valid_request_ok(base_url)
            rss_after = _rss(server.pid)
            print_report(report, rss_before, rss_after)
            print(f"valid request after the run: {'ok' if final_ok else 'FAILED'}")
        finally:
            server.terminate()
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0 if report.ok() and final_ok else 1


if __name__ == "__main__":
    sys.exit(main())
