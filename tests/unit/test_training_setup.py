"""Training setup without training: config limits, TrainingArguments passthrough, report_to, the pre-flight image
check, checkpoint verification and the train loss over a run with resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmed.config import load_config
from vmed.errors import ConfigError


def _args(tmp_path: Path, *overrides: str):
    from vmed.training.trainer import training_arguments

    return training_arguments(load_config(None, [f"output_dir={tmp_path / 'run'}", "runtime.report_to=none", *overrides]),
                              has_eval=False)


# --------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.batch_size=0", "'optim.batch_size': 0 is out of range; it must be >= 1"),
        ("optim.grad_accum=-2", "'optim.grad_accum'"),
        ("optim.lr=0", "'optim.lr': 0.0 is out of range; it must be > 0"),
        ("optim.warmup_ratio=1.5", "'optim.warmup_ratio'.*< 1"),
        ("optim.max_steps=0", r"'optim.max_steps'.*>= 1 \(or -1\)"),
        ("lora.dropout=1", "'lora.dropout'"),
        ("lora.r=0", "'lora.r'"),
        ("data.max_length=0", "'data.max_length'"),
        ("data.max_bad_images=-0.1", "'data.max_bad_images'"),
        ("runtime.logging_steps=0", "'runtime.logging_steps'"),
        ("lora.target_modules=model\\.(q|", "'lora.target_modules'.*not a valid regular expression"),
    ],
)
def test_invalid_values_are_refused_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_valid_edge_values_pass():
    cfg = load_config(None, ["optim.max_steps=-1", "optim.warmup_ratio=0", "lora.dropout=0", "runtime.save_steps=0",
                             "optim.projector_lr=null", "data.max_bad_images=3"])
    assert cfg.optim.max_steps == -1 and cfg.data.max_bad_images == 3.0


def test_bad_values_on_the_command_line_give_one_error_line_and_exit_2(tmp_path):
    import os
    import subprocess
    import sys

    for override in ("optim.batch_size=0", "lora.target_modules=(["):
        proc = subprocess.run([sys.executable, "-m", "vmed", "train", override], capture_output=True, text=True,
                              timeout=120, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: config key "), proc.stderr


# --------------------------------------------------------------------------- trainer passthrough, report_to


def test_trainer_mapping_passes_training_arguments_through(tmp_path):
    args = _args(tmp_path, "trainer.optim=adamw_torch", "trainer.run_name=my-run", "trainer.torch_compile=false",
                 "trainer.dataloader_pin_memory=false")
    assert str(args.optim.value if hasattr(args.optim, "value") else args.optim) == "adamw_torch"
    assert args.run_name == "my-run" and args.torch_compile is False and args.dataloader_pin_memory is False
    assert args.per_device_train_batch_size == 16  # vmed's own keys still apply


def test_trainer_mapping_refuses_unknown_and_vmed_owned_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"'trainer.optimizer'.*no argument 'optimizer'.*did you mean optim"):
        _args(tmp_path, "trainer.optimizer=adamw_torch")
    with pytest.raises(ConfigError, match=r"'trainer.learning_rate': vmed sets .* set optim.lr instead"):
        _args(tmp_path, "trainer.learning_rate=1e-3")
    with pytest.raises(ConfigError, match=r"'trainer.report_to'.*set runtime.report_to instead"):
        _args(tmp_path, "trainer.report_to=wandb")
    with pytest.raises(ConfigError, match=r"'trainer.gradient_checkpointing'.*set runtime.gradient_checkpointing instead"):
        _args(tmp_path, "trainer.gradient_checkpointing=true")  # the old name of what vmed sets
    with pytest.raises(ConfigError, match=r"'trainer.remove_unused_columns'.*vmed fixes it"):
        _args(tmp_path, "trainer.remove_unused_columns=true")
    with pytest.raises(ConfigError, match=r"'trainer.torch_compile': expected bool"):
        _args(tmp_path, "trainer.torch_compile=maybe")
    with pytest.raises(ConfigError, match=r"trainer.optim: TrainingArguments refused them: .*not a valid"):
        _args(tmp_path, "trainer.optim=no-such-optimizer")


def test_report_to_takes_the_installed_trainers_trackers(tmp_path, monkeypatch):
    from transformers.integrations import integration_utils as iu

    from vmed.training.trainer import resolve_report_to

    monkeypatch.setattr(iu, "is_tensorboard_available", lambda: True)
    monkeypatch.setattr(iu, "is_mlflow_available", lambda: True)
    assert resolve_report_to("auto") == ["tensorboard"]
    assert resolve_report_to("none") == []
    assert resolve_report_to(["tensorboard", "mlflow"]) == ["tensorboard", "mlflow"]
    assert _args(tmp_path, "runtime.report_to=[tensorboard, mlflow]").report_to == ["tensorboard", "mlflow"]
    monkeypatch.setattr(iu, "is_tensorboard_available", lambda: False)
    assert resolve_report_to("auto") == []
    with pytest.raises(ConfigError, match="'nope' is not a tracker of the installed transformers.*wandb"):
        resolve_report_to("nope")
    with pytest.raises(ConfigError, match="cannot be combined"):
        resolve_report_to(["none", "mlflow"])


def test_report_to_a_tracker_whose_package_is_missing_names_the_package(monkeypatch):
    from transformers.integrations import integration_utils as iu

    from vmed.training.trainer import resolve_report_to

    monkeypatch.setattr(iu, "is_wandb_available", lambda: False)
    with pytest.raises(ConfigError, match=r"runtime.report_to=wandb needs the wandb package.*pip install wandb"):
        resolve_report_to("wandb")
    monkeypatch.setattr(iu, "is_comet_available", lambda: False)
    with pytest.raises(ConfigError, match="pip install comet-ml"):
        resolve_report_to(["comet_ml"])


# --------------------------------------------------------------------------- pre-flight image check


@pytest.fixture
def phantoms(tmp_path):
    from vmed.data.phantom import generate_phantoms
    from vmed.data.schema import read_jsonl

    paths = generate_phantoms(tmp_path / "ph", 12, seed=0)
    return paths["train"], read_jsonl(paths["train"])


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_preflight_skips_the_records_of_a_truncated_png_with_the_reason(phantoms):
    from vmed.data.schema import resolve_image
    from vmed.training.preflight import preflight_images

    jsonl, records = phantoms
    bad = resolve_image(records[0], jsonl)
    _truncate(bad)
    kept, report = preflight_images(records, jsonl, max_bad=1, key="data.train", progress=False)
    assert len(kept) == len(records) - 1 and records[0] not in kept
    d = report.to_dict()
    assert d["images_checked"] == len({resolve_image(r, jsonl) for r in records})
    assert d["bad_images"] == 1 and d["records_skipped"] == 1 and d["reasons"] == {"CorruptImage": 1}
    assert d["examples"][0]["image"] == str(bad) and "truncated" in d["examples"][0]["reason"]
    assert "1 unreadable: skipped 1 records" in report.summary()


def test_preflight_refuses_past_the_threshold_listing_the_images(phantoms):
    from vmed.data.schema import resolve_image
    from vmed.training.preflight import allowed_bad, preflight_images

    jsonl, records = phantoms
    for r in records[:2]:
        _truncate(resolve_image(r, jsonl))
    resolve_image(records[2], jsonl).unlink()
    with pytest.raises(ConfigError) as e:
        preflight_images(records, jsonl, max_bad=2, key="data.train", progress=False)
    msg = str(e.value)
    assert "data.train" in msg and "3 of" in msg and "data.max_bad_images=2" in msg and "image file not found" in msg
    assert allowed_bad(0.05, 100) == 5 and allowed_bad(0.05, 19) == 0 and allowed_bad(2, 10) == 2
    kept, _ = preflight_images(records, jsonl, max_bad=0.5, key="data.train", progress=False)
    assert len(kept) == len(records) - 3


# --------------------------------------------------------------------------- checkpoints and the train loss


def _checkpoint(folder: Path, step: int) -> Path:
    import torch
    from safetensors.torch import save_file

    d = folder / f"checkpoint-{step}"
    d.mkdir(parents=True)
    save_file({"w": torch.zeros(64)}, str(d / "trainable.safetensors"))
    (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": []}))
    torch.save({"state": {}}, d / "optimizer.pt")
    (d / "COMPLETE").write_text("{}")
    return d


def test_verify_checkpoint_reads_what_resume_reads(tmp_path):
    from vmed.training.checkpoint import pick_checkpoint, verify_checkpoint

    good = _checkpoint(tmp_path, 2)
    assert verify_checkpoint(good) is None
    trunc = _checkpoint(tmp_path, 4)
    _truncate(trunc / "trainable.safetensors")
    assert "trainable.safetensors is unreadable" in verify_checkpoint(trunc)
    state = _checkpoint(tmp_path, 6)
    (state / "trainer_state.json").write_text('{"global_step": 6, "log_hist')
    assert "trainer_state.json is not valid JSON" in verify_checkpoint(state)
    opt = _checkpoint(tmp_path, 8)
    _truncate(opt / "optimizer.pt")
    assert "optimizer.pt is damaged" in verify_checkpoint(opt)
    (tmp_path / "checkpoint-10").mkdir()  # incomplete: not considered at all
    ckpt, rejected = pick_checkpoint(tmp_path)
    assert ckpt == good
    assert [p.name for p, _ in rejected] == ["checkpoint-8", "checkpoint-6", "checkpoint-4"]


def test_mean_train_loss_weights_each_logged_loss_by_its_steps_across_resumes():
    from vmed.training.checkpoint import ResumeMarker, mean_train_loss

    losses = {s: 10.0 - s * 0.5 for s in range(1, 11)}
    exact = sum(losses.values()) / 10
    # uninterrupted, logging every 3 steps (first step logged too): 1 | 2-3 | 4-6 | 7-9, step 10 only in the total
    logs = [{"step": 1, "loss": losses[1]}] + [
        {"step": e, "loss": sum(losses[s] for s in range(b, e + 1)) / (e - b + 1)} for b, e in ((2, 3), (4, 6), (7, 9))
    ]
    loss, steps = mean_train_loss(logs, 10, last_process_loss=exact)
    assert loss == pytest.approx(exact) and steps == 10
    # resumed at step 6 (a checkpoint): the new process logs 7-9 and sees steps 7-10 in its own training_loss
    resumed = logs[:3] + [{"step": 6, ResumeMarker.KEY: 6}] + logs[3:]
    own = sum(losses[s] for s in range(7, 11)) / 4
    loss, steps = mean_train_loss(resumed, 10, last_process_loss=own)
    assert loss == pytest.approx(exact) and steps == 10
    # resumed from a checkpoint at step 5, between logs: the killed process trained steps 4-5 after its last log
    # (step 3), so they were never logged; the resumed process logs step 6 alone, then 7-9
    cut = logs[:2] + [{"step": 5, ResumeMarker.KEY: 5}, {"step": 6, "loss": losses[6]}, logs[3]]
    own = sum(losses[s] for s in range(6, 11)) / 5
    loss, steps = mean_train_loss(cut, 10, last_process_loss=own)
    assert steps == 8 and loss == pytest.approx((exact * 10 - losses[4] - losses[5]) / 8)
