"""Distributed: 2 CPU processes (gloo, through ``torchrun``) reach the same losses as 1 process with the same
global batch (2 x 2 sequences vs 1 x 4), and write one complete run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmed.training.checkpoint import read_loss_log

pytestmark = pytest.mark.integration

STEPS = 3


def _args(ph: Path, out: Path, batch: int) -> list[str]:
    return [
        "train", "stage=1", "model.preset=tiny", f"output_dir={out}", f"data.train={ph / 'train.jsonl'}",
        "data.records=describe", "data.max_length=256", "data.group_by_length=false", f"optim.batch_size={batch}",
        f"optim.max_steps={STEPS}", "optim.lr=1e-2", "runtime.logging_steps=1", "runtime.save_steps=0",
        "runtime.progress_bar=false", "runtime.report_to=none",
    ]


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="torchrun not installed")
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(tmp_path):
    from vmed.data.phantom import generate_phantoms

    generate_phantoms(tmp_path / "ph", 30, seed=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one = subprocess.run([sys.executable, "-m", "vmed", *_args(tmp_path / "ph", tmp_path / "one", 4)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    two = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m", "vmed", *_args(tmp_path / "ph", tmp_path / "two", 2)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    manifest = json.loads((tmp_path / "two" / "run_manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["world_size"] == 2
    assert two.stdout.count("policy: vision=frozen") == 1  # only the main process logs
    a = read_loss_log(tmp_path / "one" / "train_log.jsonl")
    b = read_loss_log(tmp_path / "two" / "train_log.jsonl")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for step in a:
        assert b[step] == pytest.approx(a[step], rel=1e-4, abs=1e-5), (step, a, b)
