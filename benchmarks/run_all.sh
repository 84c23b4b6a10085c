#!/usr/bin/env bash
# Runs every CPU benchmark in turn (quick settings) and prints their figures. `make bench` calls this.
# Each script measures its ratios side by side in one run; see benchmarks/RESULTS.md for recorded figures.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for b in benchmarks/convert_stream.py benchmarks/padding.py benchmarks/kv_reuse.py benchmarks/batch_single.py benchmarks/load_test.py; do
  if [ -f "$b" ]; then
    echo "=== $b"
    "$PY" "$b" --quick
  fi
done
if [ -f benchmarks/demo.sh ]; then echo "=== benchmarks/demo.sh"; bash benchmarks/demo.sh; fi
