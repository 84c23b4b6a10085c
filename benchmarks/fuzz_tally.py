"""Tallies of the fuzz tests: inputs tried and outcomes by exit code / HTTP status / skip reason.

Runs ``tests/unit/test_convert_fuzz.py`` and ``tests/unit/test_api_fuzz.py`` (the same seeded generators
as CI, ``--rounds`` seeds each) with ``VMED_FUZZ_TALLY`` set, and prints what they recorded. The tests'
assertions still apply: the script exits 1 if a fuzz test failed.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/fuzz_tally.py --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _table(title: str, counter: Counter) -> None:
    print(f"{title}:")
    for key, n in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))):
        print(f"  {n:6d}  {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tally = Path(tmp) / "tally.jsonl"
        env = {**os.environ, "VMED_FUZZ_TALLY": str(tally), "VMED_FUZZ_ROUNDS": str(args.rounds)}
        rc = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/unit/test_convert_fuzz.py", "tests/unit/test_api_fuzz.py"], cwd=ROOT, env=env)
        rows = [json.loads(x) for x in tally.read_text().splitlines()] if tally.exists() else []
    conv = [r for r in rows if r.get("test") in ("rows", "bytes")]
    api = [r for r in rows if "status" in r]
    rows_runs = [r for r in conv if r["test"] == "rows"]
    print(f"\n== converters: {len(conv)} conversions through `vmed data convert`")
    print(f"row injection: {len(rows_runs)} conversions, {sum(r['injected_bad'] for r in rows_runs)} bad rows and "
          f"{sum(r['injected_odd'] for r in rows_runs)} odd-but-valid rows injected; exit codes "
          f"{dict(Counter(r['rc'] for r in rows_runs))}")
    reasons: Counter = Counter()
    for r in rows_runs:
        reasons.update(r["skipped"] or {})
    _table("skip reasons in those reports (clean rows' own skips included)", reasons)
    byte_runs = [r for r in conv if r["test"] == "bytes"]
    print(f"byte mutations: {len(byte_runs)} conversions")
    _table("exit code by mutation", Counter(f"{r['mutation']}: exit {r['rc']}" for r in byte_runs))
    _table("exit code by format", Counter(f"{r['format']}: exit {r['rc']}" for r in byte_runs))
    print(f"\n== API: {len(api)} requests (in-process app, real tiny model)")
    _table("HTTP status", Counter(r["status"] for r in api))
    _table("status and error code", Counter(f"{r['status']} {r['code']}" for r in api))
    _table("request kind (first part) and status", Counter(f"{r['kind'].split(':')[0]} -> {r['status']}" for r in api))
    return rc


if __name__ == "__main__":
    sys.exit(main())
