"""One checkpoint, same behaviour everywhere: what `vmed model init` writes loads in vLLM's LLaVA loader (names
derived from its source), in SGLang (config fields), and in plain transformers with identical logits, the
training prompt and the padded image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from _vllm_names import check_loads_in_vllm
from vmed.cli import main
from vmed.constants import IMAGE_TOKEN

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("parity") / "tiny"
    assert main(["model", "init", "--preset", "tiny", "--output", str(out)]) == 0
    return out


def test_model_init_weights_load_in_vllms_llava_loader(tiny_dir, tmp_path):
    check_loads_in_vllm(tiny_dir)
    # the check fails on what transformers 5 writes without the renaming (vision_tower.embeddings.*)
    from vmed.model import build_preset

    model, _ = build_preset("tiny")
    model.save_pretrained(tmp_path / "raw")
    (tmp_path / "raw" / "config.json").write_text((tiny_dir / "config.json").read_text())
    with pytest.raises(AssertionError, match="no module or parameter named 'vision_tower.embeddings'"):
        check_loads_in_vllm(tmp_path / "raw")


def test_config_has_the_fields_vllm_and_sglang_read(tiny_dir):
    config = json.loads((tiny_dir / "config.json").read_text())
    assert config["architectures"] == ["LlavaForConditionalGeneration"]
    assert config["text_config"]["architectures"] == ["LlamaForCausalLM"]  # vLLM builds the inner LM from it
    assert config["image_token_index"] == 5 and config["vision_feature_select_strategy"] == "default"
    assert config["vision_feature_layer"] == -2 and config["projector_hidden_act"] == "gelu"
    assert config["vision_config"]["model_type"] == "clip_vision_model"
    # SGLang's LLaVA adaptor: a missing image_aspect_ratio means "anyres" tiling; "pad" is LLaVA-1.5's padding
    assert config["image_aspect_ratio"] == "pad" and config["mm_patch_merge_type"] == "flat"
    processor = json.loads((tiny_dir / "processor_config.json").read_text())
    assert processor["image_processor"]["image_processor_type"] == "LlavaImageProcessor"
    assert processor["image_processor"]["do_pad"] is True


def test_llava_hf_names_load_identically_in_transformers(tiny_dir):
    from transformers import AutoModelForImageTextToText

    from vmed.model import build_preset

    reference, processor = build_preset("tiny")  # the same seed as model init: the same weights
    loaded, info = AutoModelForImageTextToText.from_pretrained(str(tiny_dir), output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ours, theirs = reference.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8))
    batch = processor(images=image, text=IMAGE_TOKEN + "\nIs there a lesion?", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(reference.eval()(**batch).logits, loaded.eval()(**batch).logits)


PLAIN_TEMPLATE = r"""
import json, sys
sys.modules["vmed"] = None  # no vmed: plain transformers, as vLLM/SGLang users have it
from transformers import AutoProcessor
spec = json.loads(sys.argv[1])
processor = AutoProcessor.from_pretrained(spec["dir"])
out = {}
for name, (messages, gen) in spec["cases"].items():
    enc = processor.apply_chat_template(messages, add_generation_prompt=gen, tokenize=True, return_dict=True, return_tensors="np")
    out[name] = {"ids": enc["input_ids"][0].tolist(), "pixels": enc["pixel_values"][0].tolist()}
print(json.dumps(out))
"""


def test_plain_transformers_chat_template_gives_the_training_prompt(tiny_dir, tmp_path):
    """No system message: the saved template inserts the default system prompt training used, token for token."""
    from vmed.data.template import encode_dialogue, encode_prompt
    from vmed.model import build_preset, load_model, num_image_tokens

    image_path = tmp_path / "wide.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 80, 3), dtype=np.uint8)).save(image_path)
    turns = [("Is there a lesion?", "yes"), ("On which side?", "The lesion is on the left side.")]

    def user(text, first):
        return {"role": "user", "content": ([{"type": "image", "path": str(image_path)}] if first else []) + [{"type": "text", "text": text}]}

    dialogue = []
    for i, (q, a) in enumerate(turns):
        dialogue += [user(q, i == 0), {"role": "assistant", "content": [{"type": "text", "text": a}]}]
    cases = {"dialogue": (dialogue, False), "prompt": (dialogue[:3], True)}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", PLAIN_TEMPLATE, json.dumps({"dir": str(tiny_dir), "cases": cases})],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plain = json.loads(proc.stdout.strip().splitlines()[-1])

    model, processor = load_model(tiny_dir)
    n = num_image_tokens(model)
    assert plain["dialogue"]["ids"] == encode_dialogue(processor.tokenizer, turns, num_image_tokens=n).input_ids
    assert plain["prompt"]["ids"] == encode_prompt(processor.tokenizer, turns[:1], turns[1][0], num_image_tokens=n)
    # the pixels too: the in-memory (PIL) processor training used, against whatever backend plain transformers picked
    ours = build_preset("tiny")[1].image_processor(images=Image.open(image_path).convert("RGB"), return_tensors="np")
    np.testing.assert_allclose(np.array(plain["prompt"]["pixels"]), ours["pixel_values"][0], atol=2e-2)


def _mark_columns(pixels: np.ndarray, ip) -> np.ndarray:
    """Columns of a (3, H, W) normalised image whose pixels are red (the mark), denormalised to 0-255."""
    rgb = (pixels * np.array(ip.image_std)[:, None, None] + np.array(ip.image_mean)[:, None, None]) * 255
    red = (rgb[0] > 150) & (rgb[1] < 100) & (rgb[2] < 100)
    return np.flatnonzero(red.any(axis=0))


def test_pad_to_square_keeps_a_mark_at_the_far_left_edge(tiny_dir):
    """A 2:1 image with a red mark in its leftmost 4 of 128 columns: padding keeps it, the centre crop cut it away."""
    from transformers import AutoProcessor

    from vmed.model.build import padding_image_processor

    image = np.full((64, 128, 3), 90, dtype=np.uint8)
    image[24:40, :4] = (255, 0, 0)
    ip = AutoProcessor.from_pretrained(str(tiny_dir)).image_processor  # as any engine loads it
    pixels = ip(images=Image.fromarray(image), return_tensors="np")["pixel_values"][0]
    assert pixels.shape == (3, 64, 64)
    assert _mark_columns(pixels, ip).tolist()[:1] == [0]  # the mark is there, at the left edge
    top = (pixels[:, 0, 32] * np.array(ip.image_std) + np.array(ip.image_mean)) * 255
    np.testing.assert_allclose(top, [int(m * 255) for m in ip.image_mean], atol=0.6)  # mean-colour band above
    cropped = padding_image_processor(ip, pad=False)(images=Image.fromarray(image), return_tensors="np")["pixel_values"][0]
    assert _mark_columns(cropped, ip).size == 0


def test_center_crop_option_writes_the_old_processor(tmp_path):
    out = tmp_path / "crop"
    assert main(["model", "init", "--preset", "tiny", "--output", str(out), "--center-crop"]) == 0
    processor = json.loads((out / "processor_config.json").read_text())["image_processor"]
    assert processor["do_pad"] is False and processor["do_center_crop"] is True
    assert json.loads((out / "config.json").read_text())["image_aspect_ratio"] == "square"
