"""benchmarks/gpu_step.py: argument parsing, the CUDA check, the FLOP formula and the tiny CPU dry run."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_step.py"


@pytest.fixture(scope="module")
def gpu_step():
    spec = importlib.util.spec_from_file_location("gpu_step", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_step"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_arguments_and_shapes(gpu_step):
    args = gpu_step.parse_args([])
    assert (args.batch, args.seq, args.dry_run) == (4, 2048, False)
    full = gpu_step.make_shape(args)
    assert (full.hidden, full.layers, full.heads, full.kv_heads, full.intermediate, full.vocab) == (4096, 32, 32, 8, 14336, 128256)
    assert (full.v_hidden, full.v_layers, full.image_size, full.patch, full.lora_r) == (1024, 24, 336, 14, 128)
    tiny = gpu_step.make_shape(gpu_step.parse_args(["--dry-run", "--batch", "2"]))
    assert tiny.hidden == 64 and tiny.batch == 2 and tiny.seq <= 128
    with pytest.raises(SystemExit):
        gpu_step.parse_args(["--batch", "0"])
    with pytest.raises(SystemExit):
        gpu_step.make_shape(gpu_step.parse_args(["--seq", "100"]))  # fewer tokens than the 576 image tokens


def test_without_cuda_it_fails_fast_with_a_message(gpu_step, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_step.main([]) == 2
    assert "needs a CUDA GPU" in capsys.readouterr().err


def test_flop_formula_counts_frozen_and_trained_weights(gpu_step):
    from vmed.training.policy import PartCount

    shape = gpu_step.make_shape(gpu_step.parse_args(["--dry-run"]))
    counts = {"vision": PartCount(100, 0), "projector": PartCount(10, 10), "llm": PartCount(shape.vocab * shape.hidden + 1000, 0),
              "lora": PartCount(50, 50)}
    tokens = shape.batch * shape.seq
    expected = tokens * (4 * 1000 + 2 * 60) + 4 * shape.layers * tokens * shape.seq * shape.hidden
    expected += shape.batch * ((shape.image_size // shape.patch) ** 2 + 1) * 2 * 100
    assert gpu_step.model_flops(shape, counts) == expected


def test_cpu_dry_run_trains_a_tiny_model(gpu_step, capsys):
    assert gpu_step.main(["--dry-run", "--steps", "1", "--batch", "2"]) == 0
    out = capsys.readouterr().out
    assert "bf16 LoRA:" in out and "tokens/s" in out and "MFU n/a" in out and "QLoRA: skipped" in out
