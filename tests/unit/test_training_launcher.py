"""Launcher settings that vmed overrides: the accelerate file's mixed_precision and, on CPU, FSDP's sync_module_states."""

from __future__ import annotations

import pytest


def _cfg(*overrides):
    from vmed.config import load_config

    return load_config(None, ["data.train=x.jsonl", "runtime.report_to=none", *overrides])


@pytest.mark.parametrize(("precision", "launcher", "expected"), [("fp32", "bf16", "no"), ("bf16", "no", "bf16")])
def test_runtime_precision_wins_over_the_launcher(monkeypatch, precision, launcher, expected):
    from vmed.training.trainer import follow_runtime_precision, training_arguments

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", launcher)
    cfg = _cfg(f"runtime.precision={precision}")
    note = follow_runtime_precision(cfg)
    assert note is not None and f"mixed_precision={launcher} is ignored" in note
    assert training_arguments(cfg, has_eval=False).mixed_precision == expected


def test_the_same_precision_from_both_is_left_alone(monkeypatch):
    from vmed.training.trainer import follow_runtime_precision

    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert follow_runtime_precision(_cfg("runtime.precision=fp32")) is None


@pytest.mark.parametrize(("device", "fsdp", "turned_off"), [(None, "true", True), (None, "false", False), ("cuda", "true", False)])
def test_fsdp_sync_module_states_is_turned_off_only_on_a_cpu_fsdp_launch(monkeypatch, device, fsdp, turned_off):
    import os

    import accelerate.utils

    from vmed.training.trainer import cpu_fsdp_environment

    monkeypatch.setattr(accelerate.utils, "get_torch_accelerator_backend", lambda: (device, None))
    monkeypatch.setenv("FSDP_SYNC_MODULE_STATES", "true")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", fsdp)
    assert cpu_fsdp_environment() is turned_off
    assert os.environ["FSDP_SYNC_MODULE_STATES"] == ("false" if turned_off else "true")
