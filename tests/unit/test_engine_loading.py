"""Engine.from_pretrained: plain model dirs, bare LoRA adapters, training run dirs, merged exports, bad paths."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vmed.errors import UserInputError
from vmed.inference import Engine, GenParams
from vmed.inference.loading import resolve_checkpoint

LORA_TARGET = r".*language_model.*\.(q_proj|v_proj)"  # the vision tower has q_proj too
PARAMS = GenParams(max_new_tokens=10)


@pytest.fixture(scope="module")
def image() -> Image.Image:
    return Image.fromarray((np.random.RandomState(4).rand(64, 64, 3) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    from vmed.model import build_preset, save_model

    model, processor = build_preset("tiny", seed=0)
    return save_model(model, processor, tmp_path_factory.mktemp("ckpt") / "model")


def answer(engine: Engine, image) -> str:
    return engine.generate(image, [("Is it a CT?", "yes")], "Which organ?", PARAMS).text


def add_lora(model):
    """Wrap ``model`` in a LoRA adapter on the language model with non-zero (random) B matrices."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGET, lora_dropout=0.0))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
    assert not any("vision_tower" in n and "lora" in n for n, _ in peft_model.named_parameters())
    return peft_model


def test_plain_model_dir_loads_the_same_model(model_dir, image):
    from vmed.model import load_model

    model, processor = load_model(model_dir)
    assert resolve_checkpoint(model_dir).kind == "model"
    assert answer(Engine.from_pretrained(model_dir), image) == answer(Engine(model, processor), image)


def test_bare_lora_adapter_is_merged_over_its_base(model_dir, image, tmp_path):
    from vmed.model import load_model

    model, processor = load_model(model_dir)
    base_answer = answer(Engine(model, processor), image)
    peft_model = add_lora(model)
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    cfg_path = adapter / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = os.path.relpath(model_dir, adapter)  # relative to the adapter dir
    cfg_path.write_text(json.dumps(cfg))
    ckpt = resolve_checkpoint(adapter)
    assert (ckpt.kind, ckpt.base) == ("adapter", model_dir.resolve())
    loaded = Engine.from_pretrained(adapter)
    expected = answer(Engine(peft_model.merge_and_unload(), processor), image)
    assert answer(loaded, image) == expected
    assert expected != base_answer, "the adapter changed nothing; the test would not notice it missing"


def test_training_run_dir_goes_through_load_run(image, tmp_path):
    from vmed.model import build_preset
    from vmed.model.runs import save_projector, write_manifest

    model, processor = build_preset("tiny", seed=0)
    with torch.no_grad():
        for p in model.model.multi_modal_projector.parameters():
            p.add_(0.05)
    run = tmp_path / "run"
    run.mkdir()
    save_projector(model, run / "projector.safetensors")
    peft_model = add_lora(model)
    peft_model.save_pretrained(run / "adapter")
    processor.save_pretrained(run)
    write_manifest(run, {"stage": 2, "status": "complete", "base": {"kind": "preset", "preset": "tiny", "seed": 0},
                         "adapter": "adapter"})
    assert resolve_checkpoint(run).kind == "run"
    expected = answer(Engine(peft_model.merge_and_unload(), processor), image)
    assert answer(Engine.from_pretrained(run), image) == expected


def test_merged_export_with_manifest_is_a_model_dir(model_dir, tmp_path):
    import shutil

    export = tmp_path / "export"
    shutil.copytree(model_dir, export)
    (export / "run_manifest.json").write_text(json.dumps({"status": "complete", "export": {"merged": True}}))
    assert resolve_checkpoint(export).kind == "model"


def test_bad_paths_are_user_errors(tmp_path, model_dir):
    with pytest.raises(UserInputError, match="does not exist"):
        Engine.from_pretrained(tmp_path / "missing")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(UserInputError, match="is a file"):
        Engine.from_pretrained(tmp_path / "file.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="not a model directory"):
        Engine.from_pretrained(tmp_path / "empty")
    (tmp_path / "orphan").mkdir()
    (tmp_path / "orphan" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "no/such/base"}))
    with pytest.raises(UserInputError, match="no/such/base"):
        Engine.from_pretrained(tmp_path / "orphan")
