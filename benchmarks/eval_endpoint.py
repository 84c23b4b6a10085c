"""Benchmark: ``vmed eval run --endpoint`` against ``vmed serve``, dialogues per second at concurrency 1, 4 and 8,
measured side by side in one run (and the in-process ``--model`` run on the same data as a reference).

Builds the tiny random preset (or takes ``--model DIR``) and phantom dialogues, starts ``vmed serve`` as a
separate process on 127.0.0.1 (``--max-concurrent 8``, so no request gets 429), then evaluates the same
records at each concurrency, ``--rounds`` times in interleaved order, and reports the best round of each (the
machine may be shared: the best round is the least disturbed). Asserts that every concurrency wrote the same
predictions.jsonl bytes.

    OMP_NUM_THREADS=1 python benchmarks/eval_endpoint.py                 # tiny model, 24 dialogues
    OMP_NUM_THREADS=2 python benchmarks/eval_endpoint.py --dialogues 48 --max-new-tokens 16 --model runs/demo/model

OMP_NUM_THREADS (required, printed) is passed to the server: set it explicitly, a shared machine makes the
torch default oversubscribe.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(model: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "vmed", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", str(port),
           "--max-concurrent", "8", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=os.environ.copy())
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"vmed serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("vmed serve did not start within 120 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="model dir (default: the tiny random preset, built into a temp dir)")
    ap.add_argument("--dialogues", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=8)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    threads = os.environ.get("OMP_NUM_THREADS")
    if not threads:
        raise SystemExit("set OMP_NUM_THREADS explicitly (e.g. OMP_NUM_THREADS=1): it is passed to the server")

    import torch

    torch.set_num_threads(int(threads))
    from vmed.data.phantom import generate_phantoms
    from vmed.evaluation.endpoint import EndpointBackend
    from vmed.evaluation.runner import run_eval
    from vmed.inference import Engine
    from vmed.model import build_preset, save_model

    tmp = Path(tempfile.mkdtemp(prefix="vmed-bench-eval-"))
    try:
        model = args.model
        if model is None:
            model = tmp / "tiny"
            save_model(*build_preset("tiny"), model)
        data = generate_phantoms(tmp / "ph", 2 * args.dialogues + 12, seed=0)["train"]  # the train split: most of them
        if sum(1 for _ in data.open()) < args.dialogues:
            raise SystemExit(f"{data}: fewer than {args.dialogues} phantom dialogues")
        common = dict(max_new_tokens=args.max_new_tokens, limit=args.dialogues, progress=False)
        load_before = os.getloadavg()[0]
        proc = _start_server(model, _free_port())
        port = int(proc.args[proc.args.index("--port") + 1])
        url = f"http://127.0.0.1:{port}"
        best: dict[int, float] = {}
        outputs: dict[int, bytes] = {}
        try:
            for r in range(args.rounds):
                for c in args.concurrency:
                    out = tmp / f"c{c}-r{r}"
                    t0 = time.perf_counter()
                    res = run_eval(EndpointBackend(url, concurrency=c), data, out, **common)
                    dt = time.perf_counter() - t0
                    assert res.dialogues_done == args.dialogues and not res.skipped, res.skipped
                    best[c] = min(best.get(c, dt), dt)
                    outputs.setdefault(c, res.predictions.read_bytes())
                    assert res.predictions.read_bytes() == outputs[c]
                    shutil.rmtree(out)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        engine = Engine.from_pretrained(model)
        local = []
        for r in range(args.rounds):
            t0 = time.perf_counter()
            run_eval(engine, data, tmp / f"local-r{r}", model_path=model, **common)
            local.append(time.perf_counter() - t0)
        assert len(set(outputs.values())) == 1, "the concurrencies wrote different predictions"
        load_after = os.getloadavg()[0]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    n = args.dialogues
    base = n / best[args.concurrency[0]]
    print(f"model: {args.model or 'tiny random preset'}; {n} phantom dialogues (dialogue mode, model history), "
          f"max_new_tokens {args.max_new_tokens}; OMP_NUM_THREADS={threads}; {os.cpu_count()} CPUs; "
          f"load average {load_before:.1f} before, {load_after:.1f} after; best of {args.rounds} rounds")  # fmt: skip
    print("| backend | concurrency | dialogues/s | vs concurrency 1 |")
    print("|---|---|---|---|")
    for c in args.concurrency:
        print(f"| --endpoint (vmed serve) | {c} | {n / best[c]:.2f} | {n / best[c] / base:.2f}x |")
    print(f"| --model (in process, KV reuse) | 1 | {n / min(local):.2f} | {n / min(local) / base:.2f}x |")
    print("predictions.jsonl identical at every concurrency: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
