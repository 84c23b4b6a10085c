"""``vmed demo`` end to end on a small phantom set (the accuracy targets are checked by benchmarks/demo.sh, not here),
and the shipped tiny-phantom YAMLs hold the demo's stage settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmed.config import load_config, to_dict

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_shipped_tiny_phantom_yamls_equal_the_demo_recipe(tmp_path):
    from vmed.demo import demo_configs

    demo = demo_configs(tmp_path, seed=0, phantoms=tmp_path / "ph")
    for stage, cfg in demo.items():
        paths = [f"output_dir={cfg.output_dir}", f"data.train={cfg.data.train}", f"data.validation={cfg.data.validation}"]
        if cfg.init_from:
            paths.append(f"init_from={cfg.init_from}")
        shipped = load_config(REPO / "configs" / "tiny-phantom" / f"stage{stage}.yaml", paths)
        assert to_dict(shipped) == to_dict(cfg), f"configs/tiny-phantom/stage{stage}.yaml differs from vmed.demo"


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "vmed", "demo", "--output", str(out), "--n", "60"],
                          capture_output=True, text=True, timeout=900, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "demo_report.json").read_text())
    for key in ("closed_accuracy", "closed_accuracy_blank_images"):
        assert 0.0 <= report[key] <= 1.0
        assert f"{report[key]:.3f}" in proc.stdout
    assert report["evaluation"]["closed_questions"] > 0 and report["evaluation"]["method"]
    for stage in (1, 2, 3):
        manifest = json.loads((out / f"stage{stage}" / "run_manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["stage"] == stage
    sample = report["sample_dialogue"]
    assert Path(sample["image"]).is_file() and sample["image"] in proc.stdout
    assert len(sample["turns"]) >= 2 and all(t["question"] in proc.stdout for t in sample["turns"])
    assert (out / "model" / "config.json").is_file()
