"""Stage-3 step time of the demo by torch thread count and OpenMP wait policy, idle and beside a busy core.

    .venv/bin/python benchmarks/demo_threads.py demo_output [--steps 40]

Needs a finished demo folder (its phantoms and stage-2 run). Runs the shipped stage-3 config for ``--steps`` steps
in a fresh process per setting (libgomp reads ``OMP_WAIT_POLICY`` when torch loads), once on an otherwise idle
machine and once beside a process that keeps one core busy, and prints the Trainer's train_runtime for each, side
by side. This is the measurement behind ``vmed.demo.passive_omp_waiting``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [("1", "ACTIVE"), ("2", "ACTIVE"), ("2", "PASSIVE")]


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def step_time(demo: Path, threads: str, policy: str, steps: int) -> float:
    out = Path(tempfile.mkdtemp(prefix="vmed-threads-"))
    try:
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": policy, "TOKENIZERS_PARALLELISM": "false"}
        cmd = [sys.executable, "-m", "vmed", "train", "--config", str(REPO / "src/vmed/configs/tiny-phantom/stage3.yaml"),
               f"init_from={demo / 'stage2'}", f"output_dir={out / 'run'}",
               f"data.train={demo / 'phantoms/train.jsonl'}", f"data.validation={demo / 'phantoms/validation.jsonl'}",
               f"optim.max_steps={steps}", "runtime.progress_bar=false", "runtime.report_to=none", "runtime.eval_steps=0"]
        subprocess.run(cmd, env=env, check=True, capture_output=True, text=True)
        for line in (out / "run" / "train_log.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "train_runtime" in record:
                return float(record["train_runtime"]) / steps
        raise RuntimeError("no train_runtime in the train log")
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo", type=Path, help="a finished `vmed demo` output folder")
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}  load average at start: {os.getloadavg()[0]:.2f}  steps per run: {args.steps}")
    print(f"{'threads':>7} {'OMP_WAIT_POLICY':>16} {'idle s/step':>12} {'one core busy s/step':>21}")
    for threads, policy in SETTINGS:
        idle = step_time(args.demo, threads, policy, args.steps)
        stop = multiprocessing.Event()
        spinner = multiprocessing.Process(target=_spin, args=(stop,))
        spinner.start()
        try:
            busy = step_time(args.demo, threads, policy, args.steps)
        finally:
            stop.set()
            spinner.join()
        print(f"{threads:>7} {policy:>16} {idle:>12.3f} {busy:>21.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
