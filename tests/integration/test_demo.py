"""``vmed demo`` end to end on a small phantom set (the targets are checked by benchmarks/demo.sh, not here), and the
demo's stage settings are the shipped tiny-phantom YAMLs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vmed.config import load_config, to_dict
from vmed.constants import SUMMARY_PROMPT

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
    return out


def test_the_demo_reads_the_shipped_tiny_phantom_yamls_and_sets_only_paths_and_seeds(tmp_path):
    from vmed.demo import demo_configs, stage_yaml

    for stage, cfg in demo_configs(tmp_path, seed=3, phantoms=tmp_path / "ph").items():
        assert stage_yaml(stage).resolve() == (REPO / "configs" / "tiny-phantom" / f"stage{stage}.yaml").resolve()
        shipped, demo = _flat(to_dict(load_config(stage_yaml(stage)))), _flat(to_dict(cfg))
        changed = {k for k in shipped if shipped[k] != demo[k]}
        assert changed <= {"output_dir", "init_from", "data.train", "data.validation", "runtime.seed", "model.seed"}, changed
        assert demo["runtime.seed"] == 3 and demo["data.train"] == str(tmp_path / "ph" / "train.jsonl")
        assert demo["data.summary_turn"] == "last"


def test_demo_runs_end_to_end_and_writes_its_report(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "vmed", "demo", "--output", str(out), "--n", "60"],
                          capture_output=True, text=True, timeout=900, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "demo_report.json").read_text())
    for key in ("closed_accuracy", "closed_accuracy_blank_images"):
        assert 0.0 <= report[key] <= 1.0
        assert f"{report[key]:.3f}" in proc.stdout
    for key in ("summary_cider_d", "summary_rouge_l", "summary_bleu_4"):
        for k in (key, key + "_blank_images"):
            assert report[k] >= 0.0 and f"{report[k]:.3f}" in proc.stdout
    assert set(report["checks"]) == {"closed_accuracy", "closed_accuracy_blank_images", "summary_cider_d",
                                     "summary_cider_d_blank_images"} and report["passed"] == all(report["checks"].values())
    for sub in ("eval", "eval_blank"):  # the figures come from the evaluation's own metrics.json
        metrics = json.loads((out / sub / "metrics.json").read_text())
        suffix = "" if sub == "eval" else "_blank_images"
        assert report["summary_cider_d" + suffix] == round(metrics["metrics"]["summary_cider_d"]["value"], 4)
    assert report["evaluation"]["closed_questions"] > 0 and report["evaluation"]["method"]
    for stage in (1, 2, 3):
        manifest = json.loads((out / f"stage{stage}" / "run_manifest.json").read_text())
        assert manifest["status"] == "complete" and manifest["stage"] == stage
    sample = report["sample_dialogue"]
    assert Path(sample["image"]).is_file() and sample["image"] in proc.stdout
    assert len(sample["turns"]) >= 2 and all(t["question"] in proc.stdout for t in sample["turns"])
    assert sample["turns"][-1]["question"] == SUMMARY_PROMPT and sample["turns"][-1]["reference"]
    assert (out / "model" / "config.json").is_file()
