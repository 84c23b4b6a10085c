"""A stage keeps its input run's image preprocessing: a parent saved with centre-crop (before pad-to-square
became the default) is not silently switched to padding by a later stage."""

from __future__ import annotations

import numpy as np
from PIL import Image


def _pixels(processor, image):
    return processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]


def test_stage2_keeps_a_centre_crop_parent_processor(tmp_path, capsys):
    from vmed.config import load_config
    from vmed.data.phantom import generate_phantoms
    from vmed.model import build_preset
    from vmed.model.build import padding_image_processor
    from vmed.model.runs import base_spec, fingerprint, save_projector, write_manifest
    from vmed.training.stages import build_stage_model, check_input

    generate_phantoms(tmp_path / "ph", 6, seed=0)
    train = tmp_path / "ph" / "train.jsonl"
    common = [f"data.train={train}", "runtime.progress_bar=false", "runtime.report_to=none"]
    parent = tmp_path / "stage1"  # a finished stage-1 run as one made before pad-to-square wrote it
    parent.mkdir()
    base_model, crop = build_preset("tiny", pad_to_square=False)
    save_projector(base_model, parent / "projector.safetensors")
    crop.save_pretrained(str(parent))
    base = base_spec(load_config(None, ["stage=1", "model.preset=tiny", *common]).model)
    write_manifest(parent, {"status": "complete", "stage": 1, "base": {**base, "fingerprint": fingerprint(base_model)},
                            "projector": "projector.safetensors"})

    cfg = load_config(None, ["stage=2", f"init_from={parent}", f"output_dir={tmp_path / 'stage2'}",
                             "data.records=instruction", "policy.llm=lora", *common])
    model, processor, _, _ = build_stage_model(cfg, check_input(cfg))
    assert processor.image_processor.do_pad is False
    assert model.config.image_aspect_ratio == "square"
    assert "image preprocessing kept from" in capsys.readouterr().out

    wide = np.full((32, 64, 3), 200, np.uint8)
    wide[:, :4] = 0  # a mark at the far left edge: centre-crop cuts it away, padding keeps it
    image = Image.fromarray(wide)
    padding = padding_image_processor(crop.image_processor, pad=True)  # what a base built now would use
    assert np.allclose(_pixels(processor, image), _pixels(crop, image))
    assert not np.allclose(_pixels(processor, image), padding(images=[image], return_tensors="pt")["pixel_values"][0])
