"""Resume: a run killed with SIGKILL mid-training resumes from its latest complete checkpoint and gives the same
per-step losses, and the same manifest train loss, as an uninterrupted run; a half-written checkpoint is ignored; a
damaged complete one is reported and the previous one used; SIGTERM saves and exits cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _train_helpers import phantoms_and_stage1

from vmed.training.checkpoint import COMPLETE_MARKER, read_loss_log

pytestmark = pytest.mark.integration

STEPS = 12


def _cmd(ph: Path, out: Path, stage1: Path) -> list[str]:
    """Stage 2 (LoRA with dropout, so RNG restore matters) saving every 2 steps."""
    return [
        sys.executable, "-m", "vmed", "train",
        "stage=2", f"init_from={stage1}", f"output_dir={out}", f"data.train={ph / 'train.jsonl'}",
        "data.records=instruction", "data.max_length=256", "policy.llm=lora", "lora.r=4", "lora.alpha=8",
        "lora.dropout=0.1", "optim.batch_size=4", f"optim.max_steps={STEPS}", "optim.lr=5e-3", "optim.projector_lr=1e-3",
        "runtime.logging_steps=1", "runtime.save_steps=2", "runtime.save_total_limit=2", "runtime.progress_bar=false",
        "runtime.report_to=none",
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("resume")
    phantoms_and_stage1(tmp)
    full = tmp / "full"
    subprocess.run(_cmd(tmp / "ph", full, tmp / "stage1"), check=True, env=_env(), capture_output=True, timeout=600)
    return tmp, read_loss_log(full / "train_log.jsonl")


def _manifest(run: Path) -> dict:
    return json.loads((run / "run_manifest.json").read_text())


def _wait_for_step(log: Path, proc: subprocess.Popen, step: int, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"training ended (rc {proc.returncode}) before step {step}; the test needs it still running")
        if max(read_loss_log(log), default=0) >= step:
            return
        time.sleep(0.05)
    pytest.fail(f"step {step} not reached in {timeout} s")


def test_sigkill_then_resume_matches_the_uninterrupted_losses(setup):
    tmp, reference = setup
    assert sorted(reference) == list(range(1, STEPS + 1))
    out = tmp / "killed"
    proc = subprocess.Popen(_cmd(tmp / "ph", out, tmp / "stage1"), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_step(out / "train_log.jsonl", proc, 7)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((out / "run_manifest.json").read_text())["status"] == "running"
    # a checkpoint that a crash interrupted while it was being written: files but no completion marker
    half = out / "checkpoint-10"
    half.mkdir(exist_ok=True)
    (half / "trainable.safetensors").write_bytes(b"truncated")
    complete = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / COMPLETE_MARKER).is_file())
    assert complete and complete[-1] < STEPS
    resumed = subprocess.run(_cmd(tmp / "ph", out, tmp / "stage1"), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming from {out / f'checkpoint-{complete[-1]}'}" in resumed.stdout
    assert "removed incomplete checkpoint" in resumed.stdout
    losses = read_loss_log(out / "train_log.jsonl")
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert abs(losses[step] - reference[step]) <= 1e-5, (step, losses[step], reference[step])
    manifest = _manifest(out)
    assert manifest["status"] == "complete"
    # the manifest's loss is the mean over all 12 steps, not only the resumed ones
    full = _manifest(tmp / "full")["metrics"]
    assert manifest["metrics"]["train_loss_steps"] == full["train_loss_steps"] == STEPS
    assert manifest["metrics"]["train_loss"] == pytest.approx(full["train_loss"], abs=1e-5)
    assert full["train_loss"] == pytest.approx(sum(reference.values()) / STEPS, abs=1e-6)


def _damaged_copy(tmp: Path, name: str) -> Path:
    """A copy of the uninterrupted run (checkpoints 10 and 12, both complete) to break."""
    out = tmp / name
    shutil.copytree(tmp / "full", out)
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-12"]
    return out


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(setup):
    tmp, reference = setup
    out = _damaged_copy(tmp, "truncated")
    weights = out / "checkpoint-12" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # COMPLETE marker kept: the damage happened after the save
    resumed = subprocess.run(_cmd(tmp / "ph", out, tmp / "stage1"), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"checkpoint {out / 'checkpoint-12'} is damaged (trainable.safetensors is unreadable" in resumed.stdout
    assert f"falling back to {out / 'checkpoint-10'}" in resumed.stdout
    assert f"resuming from {out / 'checkpoint-10'}" in resumed.stdout
    losses = read_loss_log(out / "train_log.jsonl")
    for step in (11, 12):
        assert abs(losses[step] - reference[step]) <= 1e-5
    assert _manifest(out)["metrics"]["train_loss"] == pytest.approx(_manifest(tmp / "full")["metrics"]["train_loss"], abs=1e-5)


def test_resume_from_a_damaged_checkpoint_by_name_is_one_error_line(setup):
    tmp, _ = setup
    out = _damaged_copy(tmp, "named")
    (out / "checkpoint-12" / "trainer_state.json").write_text('{"global_step": 12, "log_his')
    weights = out / "checkpoint-10" / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    for ckpt, what in (("checkpoint-12", "trainer_state.json is not valid JSON"), ("checkpoint-10", "trainable.safetensors is unreadable")):
        proc = subprocess.run(_cmd(tmp / "ph", out, tmp / "stage1") + [f"runtime.resume={out / ckpt}"], env=_env(),
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 2, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and what in errors[0] and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(setup):
    tmp, reference = setup
    out = tmp / "termed"
    proc = subprocess.Popen(_cmd(tmp / "ph", out, tmp / "stage1"), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_step(out / "train_log.jsonl", proc, 3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr[-2000:]
    assert "SIGTERM: saved" in stdout
    manifest = json.loads((out / "run_manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    ckpt = Path(manifest["checkpoint"])
    assert (ckpt / COMPLETE_MARKER).is_file() and (ckpt / "optimizer.pt").is_file() and (ckpt / "trainer_state.json").is_file()
    stopped_at = int(ckpt.name.split("-")[1])
    assert 3 <= stopped_at < STEPS
    resumed = subprocess.run(_cmd(tmp / "ph", out, tmp / "stage1"), env=_env(), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    losses = read_loss_log(out / "train_log.jsonl")
    assert all(abs(losses[s] - reference[s]) <= 1e-5 for s in range(1, STEPS + 1))
