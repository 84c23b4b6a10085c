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

from vmed.cli import main
from vmed.constants import IMAGE_TOKEN

# ---- vLLM's LLaVA loader, derived from its source ------------------------------------------------------------
# Read with the search tools from github.com/vllm-project/vllm (vLLM cannot be installed here):
#   vllm/model_executor/models/llava.py  (commit 35d3c24b)  LlavaForConditionalGeneration:
#     - hf_to_vllm_mapper.orig_to_new_prefix: "model.language_model." -> "language_model.model.",
#       "model.vision_tower." -> "vision_tower.", "model.multi_modal_projector." -> "multi_modal_projector.",
#       "lm_head." -> "language_model.lm_head." (first matching prefix, applied once; WeightsMapper._map_name)
#     - modules: vision_tower = vLLM CLIPVisionModel built by init_vision_tower_for_llava with
#       num_hidden_layers = _get_layer_index(vision_feature_layer) (num_layers + layer + 1 for a negative layer)
#       and require_post_norm=False; multi_modal_projector = linear_1/linear_2 (bias = multimodal_projector_bias);
#       language_model = the text_config.architectures model (LlamaForCausalLM).
#     - load_weights: AutoWeightsLoader(self).load_weights(weights, mapper=hf_to_vllm_mapper)
#   vllm/model_executor/models/utils.py  AutoWeightsLoader: splits a name at its first dot; the part must be a child
#     module (recursed into, or its own load_weights is called) or a parameter, else ValueError
#     "There is no module or parameter named '<prefix>'".
#   vllm/model_executor/models/clip.py  (commit 85f1f913): CLIPVisionModel has one child, vision_model
#     (CLIPVisionTransformer: embeddings.{class_embedding, patch_embedding, position_embedding}, pre_layrnorm,
#     encoder.layers.N.{self_attn.qkv_proj, self_attn.out_proj, layer_norm1, mlp.fc1, mlp.fc2, layer_norm2},
#     post_layernorm only when required). Its load_weights skips post_layernorm.* when there is none and
#     encoder.layers.N with N >= the layers built, and loads q_proj/k_proj/v_proj into qkv_proj (substring).
#   vllm/model_executor/models/llama.py  (commit e06c9ba2): LlamaForCausalLM = model (LlamaModel) + lm_head
#     (skipped when tie_word_embeddings); LlamaModel.load_weights skips rotary_emb.inv_freq and loads
#     .q_proj/.k_proj/.v_proj into .qkv_proj and .gate_proj/.up_proj into .gate_up_proj; biases per
#     attention_bias / mlp_bias.
_VLLM_PREFIXES = {
    "model.language_model.": "language_model.model.",
    "model.vision_tower.": "vision_tower.",
    "model.multi_modal_projector.": "multi_modal_projector.",
    "lm_head.": "language_model.lm_head.",
}


def _vision_layers_built(config: dict) -> int:
    layer, total = config["vision_feature_layer"], config["vision_config"]["num_hidden_layers"]
    return total + layer + 1 if layer < 0 else layer


def vllm_llava_parameters(config: dict) -> set[str]:
    """The parameter names vLLM's LlavaForConditionalGeneration (CLIP tower, Llama LM) builds for ``config.json``."""
    text = config["text_config"]
    names = {f"vision_tower.vision_model.{p}" for p in (
        "embeddings.class_embedding", "embeddings.patch_embedding.weight", "embeddings.position_embedding.weight",
        "pre_layrnorm.weight", "pre_layrnorm.bias")}
    for i in range(_vision_layers_built(config)):
        for module in ("self_attn.qkv_proj", "self_attn.out_proj", "layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2"):
            names |= {f"vision_tower.vision_model.encoder.layers.{i}.{module}.{w}" for w in ("weight", "bias")}
    projector_bias = config.get("multimodal_projector_bias", True)
    for k in (1, 2):
        names |= {f"multi_modal_projector.linear_{k}.weight"} | ({f"multi_modal_projector.linear_{k}.bias"} if projector_bias else set())
    names |= {"language_model.model.embed_tokens.weight", "language_model.model.norm.weight"}
    for i in range(text["num_hidden_layers"]):
        layer = f"language_model.model.layers.{i}."
        for module, with_bias in (("self_attn.qkv_proj", text.get("attention_bias")), ("self_attn.o_proj", text.get("attention_bias")),
                                  ("mlp.gate_up_proj", text.get("mlp_bias")), ("mlp.down_proj", text.get("mlp_bias"))):
            names |= {layer + module + ".weight"} | ({layer + module + ".bias"} if with_bias else set())
        names |= {layer + "input_layernorm.weight", layer + "post_attention_layernorm.weight"}
    if not config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)):
        names.add("language_model.lm_head.weight")
    return names


def vllm_load_target(name: str, config: dict) -> str | None:
    """The vLLM parameter a checkpoint weight ``name`` loads into (None: skipped), as the loader above does;
    AssertionError with vLLM's message when the loader would reject it."""
    for prefix, new in _VLLM_PREFIXES.items():
        if name.startswith(prefix):
            name = new + name[len(prefix):]
            break
    top, _, rest = name.partition(".")
    if top == "vision_tower":
        child, _, inner = rest.partition(".")
        assert child == "vision_model", f"There is no module or parameter named 'vision_tower.{child}'"
        if inner.startswith("post_layernorm"):
            return None
        if inner.startswith("encoder.layers.") and int(inner.split(".")[2]) >= _vision_layers_built(config):
            return None
        for shard in ("q_proj", "k_proj", "v_proj"):  # first match only, as vLLM's loop breaks
            if shard in inner:
                inner = inner.replace(shard, "qkv_proj")
                break
        return f"vision_tower.vision_model.{inner}"
    if top == "language_model":
        child, _, inner = rest.partition(".")
        if child == "lm_head":
            return None if config.get("tie_word_embeddings") else name
        assert child == "model", f"There is no module or parameter named 'language_model.{child}'"
        if "rotary_emb.inv_freq" in inner:
            return None
        for shard, packed in ((".q_proj", ".qkv_proj"), (".k_proj", ".qkv_proj"), (".v_proj", ".qkv_proj"),
                              (".gate_proj", ".gate_up_proj"), (".up_proj", ".gate_up_proj")):
            if shard in inner:
                inner = inner.replace(shard, packed)
                break
        return f"language_model.model.{inner}"
    assert top == "multi_modal_projector", f"There is no module or parameter named '{top}'"
    return name


def check_loads_in_vllm(folder: Path) -> None:
    """Every saved weight lands on a vLLM parameter, and every vLLM parameter gets one (vLLM refuses otherwise)."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())
    keys = []
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as h:
            keys += list(h.keys())
    expected = vllm_llava_parameters(config)
    loaded = {target for k in keys if (target := vllm_load_target(k, config)) is not None}
    assert loaded <= expected, sorted(loaded - expected)[:5]
    assert expected <= loaded, f"vLLM parameters no weight loads: {sorted(expected - loaded)[:5]}"


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
