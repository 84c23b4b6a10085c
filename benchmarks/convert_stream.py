"""Streaming conversion benchmark: a 500K-record LLaVA-Med-alignment-shaped JSON -> dialogue JSONL.

Run:  .venv/bin/python benchmarks/convert_stream.py            (500K records, checkpoints 100K/250K/500K)
      .venv/bin/python benchmarks/convert_stream.py --quick    (50K records)

It writes, in a temporary folder, one JSON array shaped like ``llava_med_alignment_500k.json`` (id, image,
a human "<image>\\nDescribe..." turn and a gpt caption of about 30 words) whose images cycle over 2,000
small PNG files, then converts it with ``vmed data convert --format roco`` in a child process that
samples its RSS every 20 ms. It prints records/s and RSS at each checkpoint (RSS must stay flat), then,
side by side, the peak RSS of the non-streaming way (``json.load`` of the whole file) in another child.
Targets on the reference machine: peak RSS <= 500 MB, >= 20K records/s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue as queue_mod
import random
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

WORDS = ("axial contrast enhanced computed tomography of the abdomen shows a large heterogeneous mass in the left kidney "
         "with areas of necrosis and no evidence of renal vein invasion chest radiograph demonstrates bilateral "
         "pleural effusions magnetic resonance imaging brain lesion").split()
N_IMAGES = 2000


def generate(path: Path, n: int, images: Path) -> None:
    """Write an n-record alignment JSON array (streamed) and the small images it refers to."""
    from PIL import Image

    images.mkdir(parents=True, exist_ok=True)
    for i in range(N_IMAGES):
        Image.new("RGB", (8, 8), (i % 256, (i // 256) % 256, 7)).save(images / f"fig_{i}.png")
    rng = random.Random(0)
    with path.open("w", encoding="utf-8") as f:
        f.write("[\n")
        for i in range(n):
            caption = " ".join(rng.choice(WORDS) for _ in range(30)).capitalize() + "."
            rec = {"id": f"PMC{1000000 + i}_fig{i % 7}", "image": f"fig_{i % N_IMAGES}.png",
                   "conversations": [{"from": "human", "value": "<image>\nDescribe the image concisely."},
                                     {"from": "gpt", "value": caption}]}
            f.write(("," if i else "") + json.dumps(rec) + "\n")
        f.write("]\n")


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def run_stream(src: str, images: str, out: str, checkpoints: list[int], queue) -> None:
    """Child process: convert with a counting wrapper around the roco converter; report checkpoints."""
    from vmed.data.build import convert
    from vmed.data.converters import CONVERTERS, ConvertOptions

    peak = [_rss_mb()]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.02)

    class Counted:
        """The roco converter, counting the rows it yields and noting time and RSS at each checkpoint."""

        name, streaming = "roco", True

        def __init__(self, inner):
            self.inner = inner
            self.marks = []

        def splits(self, path, opts):
            return self.inner.splits(path, opts)

        def read(self, path, opts, tally):
            t0 = time.perf_counter()
            pending = list(checkpoints)
            for i, row in enumerate(self.inner.read(path, opts, tally), start=1):
                yield row
                if pending and i == pending[0]:
                    pending.pop(0)
                    self.marks.append({"records": i, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time(),
                                       "rss_mb": _rss_mb(), "peak_mb": peak[0]})

    counted = Counted(CONVERTERS["roco"])
    CONVERTERS["roco-bench"] = counted  # benchmark-only registration, in this child process
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    base = _rss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    report = convert("roco-bench", src, out, options=ConvertOptions(image_root=Path(images)), progress=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - c0
    stop.set()
    thread.join()
    queue.put({"marks": counted.marks, "total_s": total, "cpu_s": cpu, "base_mb": base, "peak_mb": max(peak[0], _rss_mb()),
               "kept": report.splits["train"]["rows_kept"], "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_load_all(src: str, queue) -> None:
    """Child process: the non-streaming way, json.load of the whole file, for comparison."""
    t0 = time.perf_counter()
    with open(src, encoding="utf-8") as f:
        data = json.load(f)
    n = sum(1 for r in data if r["conversations"][1]["value"])
    queue.put({"records": n, "seconds": time.perf_counter() - t0,
               "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _child(target, *args):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target, args=(*args, q))
    p.start()
    while True:
        try:
            result = q.get(timeout=1.0)
            break
        except queue_mod.Empty:
            if not p.is_alive():
                raise SystemExit(f"benchmark child {target.__name__} failed (exit code {p.exitcode}); see its traceback above")
    p.join()
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=500_000)
    ap.add_argument("--quick", action="store_true", help="50K records")
    args = ap.parse_args()
    n = 50_000 if args.quick else args.records
    checkpoints = sorted({c for c in (n // 5, n // 2, n) if c > 0})
    with tempfile.TemporaryDirectory(prefix="vmed-bench-") as tmp:
        tmp = Path(tmp)
        src, images = tmp / "llava_med_alignment.json", tmp / "images"
        t0 = time.perf_counter()
        generate(src, n, images)
        print(f"generated {n:,} records ({src.stat().st_size / 2**20:.0f} MB JSON) in {time.perf_counter() - t0:.1f} s")
        res = _child(run_stream, str(src), str(images), str(tmp / "out"), checkpoints)
        print(f"streaming convert (vmed data convert --format roco): {res['kept']:,} records in {res['total_s']:.1f} s "
              f"= {res['kept'] / res['total_s']:,.0f} records/s overall (incl. writing report)")
        print(f"  process CPU time {res['cpu_s']:.1f} s = {res['kept'] / res['cpu_s']:,.0f} records per CPU-second "
              f"(wall-clock rates drop when other processes share the cores; load average now {os.getloadavg()[0]:.1f})")
        print(f"  RSS after imports: {res['base_mb']:.0f} MB")
        prev_n, prev_t = 0, 0.0
        for m in res["marks"]:
            rate = (m["records"] - prev_n) / max(m["seconds"] - prev_t, 1e-9)
            print(f"  at {m['records']:>7,} records: {m['seconds']:6.1f} s, {rate:,.0f} records/s since last, "
                  f"RSS {m['rss_mb']:.0f} MB, peak so far {m['peak_mb']:.0f} MB")
            prev_n, prev_t = m["records"], m["seconds"]
        print(f"  peak RSS (sampled): {res['peak_mb']:.0f} MB; ru_maxrss: {res['ru_maxrss_mb']:.0f} MB")
        base = _child(run_load_all, str(src))
        print(f"non-streaming json.load of the same file: {base['seconds']:.1f} s, peak RSS {base['ru_maxrss_mb']:.0f} MB")
        print(f"ratio peak RSS json.load / streaming convert: {base['ru_maxrss_mb'] / res['ru_maxrss_mb']:.1f}x")
        print(f"targets: peak RSS <= 500 MB: {'met' if res['ru_maxrss_mb'] <= 500 else 'NOT met'}; "
              f">= 20K records/s wall: {'met' if res['kept'] / res['total_s'] >= 20_000 else 'NOT met'}, "
              f"per CPU-second: {'met' if res['kept'] / res['cpu_s'] >= 20_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
