#!/usr/bin/env bash
# The demo's budget check: runs `vmed demo` once and prints wall time, peak RSS, closed-question accuracy and summary
# CIDEr-D / ROUGE-L / BLEU-4, each with real and with blank images.
# Run: bash benchmarks/demo.sh [OUTPUT_DIR]      (budget on the 2-core reference machine: <= 10 min, <= 4 GB RSS)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-$(mktemp -d)/demo}"
VMED="${VMED:-.venv/bin/vmed}"
PY="${PY:-.venv/bin/python}"
LOG="$(mktemp)"
# psutil samples the RSS of the demo process and its children every 0.2 s (GNU time is not always installed)
"$PY" - "$VMED" "$OUT" "$LOG" <<'PYEOF'
import json, subprocess, sys, time
import psutil
vmed, out, log = sys.argv[1:4]
start = time.time()
with open(log, "w") as f:
    proc = subprocess.Popen([vmed, "demo", "--output", out], stdout=f, stderr=subprocess.STDOUT)
    p = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss + sum(c.memory_info().rss for c in p.children(recursive=True))
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.2)
wall = time.time() - start
if proc.returncode != 0:
    print(open(log).read()[-3000:])
    sys.exit(f"vmed demo failed with exit code {proc.returncode}")
report = json.load(open(f"{out}/demo_report.json"))
print(f"cores: {psutil.cpu_count()}  load average before/after: {psutil.getloadavg()[0]:.1f}")
print(f"wall time: {wall:.0f} s (budget 600 s)")
print(f"peak RSS: {peak / 2**30:.2f} GiB (budget 4 GiB)")
print(f"closed_accuracy: {report['closed_accuracy']:.3f} (target >= 0.90)")
print(f"closed_accuracy_blank_images: {report['closed_accuracy_blank_images']:.3f} (target <= 0.60)")
print(f"summary_cider_d: {report['summary_cider_d']:.3f} (target >= 5.0)")
print(f"summary_cider_d_blank_images: {report['summary_cider_d_blank_images']:.3f} (target <= {report['summary_cider_d'] / 2:.3f}, half of it)")
for key in ("summary_rouge_l", "summary_bleu_4"):
    print(f"{key}: {report[key]:.3f}   blank images: {report[key + '_blank_images']:.3f}")
print(f"targets met: {report['passed']} {report['checks']}")
print(f"stage seconds: {report['seconds']}")
print(f"evaluation: {report['evaluation']['method']}")
PYEOF
