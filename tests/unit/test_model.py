"""vmed.model: building (tiny, from configs, from local pretrained parts), image tokens, save/load."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vmed.constants import IMAGE_TOKEN
from vmed.errors import UserInputError
from vmed.model import (
    PRESETS,
    build_model,
    build_preset,
    build_tiny_tokenizer,
    load_model,
    model_info,
    num_image_tokens,
    parameter_counts,
    save_model,
)
from vmed.model.presets import CLIP_L_336, get_preset, tiny_text_config, tiny_vision_config

PLAIN_RELOAD = textwrap.dedent(
    """
    # Runs with plain transformers only: importing vmed fails on purpose.
    import sys
    class _NoVmed:
        def find_spec(self, name, path=None, target=None):
            if name == "vmed" or name.startswith("vmed."):
                raise ImportError("vmed must not be imported here")
    sys.meta_path.insert(0, _NoVmed())
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    model_dir, inputs_file, out_file = sys.argv[1:4]
    model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    inputs = torch.load(inputs_file)
    with torch.no_grad():
        logits = model(**inputs).logits
    n = int((processor(images=inputs["image"], text="<image>", return_tensors="pt")["input_ids"]
             == model.config.image_token_id).sum()) if "image" in inputs else -1
    torch.save({"logits": logits, "n_image_tokens": n, "vmed_loaded": any(k.startswith("vmed") for k in sys.modules)}, out_file)
    """
)


def plain_transformers_logits(model_dir, inputs: dict, tmp_path) -> dict:
    """Logits of ``inputs`` from ``model_dir`` loaded in a subprocess that cannot import vmed."""
    inputs_file, out_file = tmp_path / "inputs.pt", tmp_path / "out.pt"
    torch.save(inputs, inputs_file)
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN_RELOAD, str(model_dir), str(inputs_file), str(out_file)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out_file)


def phantom_like_image(seed: int = 0, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def tiny():
    return build_preset("tiny", seed=0)


def test_tiny_parts_and_image_token_count(tiny):
    model, processor = tiny
    config = model.config
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert config.vision_feature_select_strategy == "default"
    assert config.projector_hidden_act == "gelu"
    n = num_image_tokens(model)
    assert n == (config.vision_config.image_size // config.vision_config.patch_size) ** 2 == config.image_seq_length
    tok = processor.tokenizer
    assert config.image_token_id == tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert config.text_config.vocab_size == len(tok) == model.get_input_embeddings().weight.shape[0]
    batch = processor(images=phantom_like_image(), text=IMAGE_TOKEN + "\nIs there a lesion?", return_tensors="pt")
    assert int((batch["input_ids"] == config.image_token_id).sum()) == n
    with torch.no_grad():
        features = model.model.get_image_features(batch["pixel_values"]).pooler_output
    assert features[0].shape == (n, config.text_config.hidden_size)
    assert model.generation_config.eos_token_id == [tok.convert_tokens_to_ids("<|eot_id|>"), tok.convert_tokens_to_ids("<|end_of_text|>")]
    assert tok.eos_token == "<|eot_id|>" and tok.pad_token is not None
    counts = parameter_counts(model)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["projector"] == sum(p.numel() for p in model.model.multi_modal_projector.parameters())


def test_tiny_build_is_deterministic(tiny):
    model, processor = tiny
    again, processor2 = build_preset("tiny", seed=0)
    other, _ = build_preset("tiny", seed=1)
    state, state2, state_other = model.state_dict(), again.state_dict(), other.state_dict()
    assert state.keys() == state2.keys()
    assert all(torch.equal(state[k], state2[k]) for k in state)
    assert not torch.equal(state["model.multi_modal_projector.linear_1.weight"], state_other["model.multi_modal_projector.linear_1.weight"])
    assert processor.tokenizer.backend_tokenizer.to_str() == processor2.tokenizer.backend_tokenizer.to_str()


def _digest(model, processor) -> str:
    h = hashlib.sha256(processor.tokenizer.backend_tokenizer.to_str().encode())
    for value in model.state_dict().values():
        h.update(value.numpy().tobytes())
    return h.hexdigest()


def test_tiny_build_is_deterministic_across_processes(tiny):
    """The tokenizer and the weights depend neither on the hash seed nor on process state."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from test_model import _digest; "
        "from vmed.model import build_preset; print(_digest(*build_preset('tiny', seed=0)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == _digest(*tiny)


def test_save_then_plain_transformers_reload_gives_identical_logits(tiny, tmp_path):
    model, processor = tiny
    out = save_model(model, processor, tmp_path / "model")
    for name in ("config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "vmed_model.json"):
        assert (out / name).is_file(), name
    image = phantom_like_image(1)
    inputs = dict(processor(images=image, text=IMAGE_TOKEN + "\nIs there a lesion?", return_tensors="pt"))
    with torch.no_grad():
        expected = model(**inputs).logits
    result = plain_transformers_logits(out, inputs, tmp_path)
    assert not result["vmed_loaded"]
    torch.testing.assert_close(result["logits"], expected, atol=1e-5, rtol=0)
    reloaded, processor2 = load_model(out)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, expected, atol=1e-5, rtol=0)
    assert processor2.tokenizer.chat_template == processor.tokenizer.chat_template
    assert reloaded.vmed_base["preset"] == "tiny"


def test_sidecar_and_model_info(tiny, tmp_path):
    model, processor = tiny
    out = save_model(model, processor, tmp_path / "m")
    sidecar = json.loads((out / "vmed_model.json").read_text())
    assert sidecar["base"]["preset"] == "tiny" and sidecar["base"]["seed"] == 0
    assert sidecar["num_image_tokens"] == num_image_tokens(model)
    info = model_info(out)
    assert info["parameters"] == parameter_counts(model)
    assert info["num_image_tokens"] == num_image_tokens(model)
    assert info["vision_feature_select_strategy"] == "default"
    assert "<|start_header_id|>" in info["chat_template"]
    json.dumps(info)
    # a re-save keeps the base recorded in the sidecar
    reloaded, proc = load_model(out)
    again = save_model(reloaded, proc, tmp_path / "again")
    assert json.loads((again / "vmed_model.json").read_text())["base"] == sidecar["base"]


def test_load_model_refuses_a_processor_of_another_model(tiny, tmp_path):
    model, processor = tiny
    out = save_model(model, processor, tmp_path / "m")
    config = json.loads((out / "processor_config.json").read_text())
    config["patch_size"] = 8
    (out / "processor_config.json").write_text(json.dumps(config))
    with pytest.raises(UserInputError, match="expects 16 image tokens per image but the processor expands <image> to 64"):
        load_model(out)


def test_load_model_errors_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(UserInputError, match="no config.json"):
        load_model(tmp_path)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UserInputError, match="unknown model preset 'huge'; choose one of: tiny, small, vmed-llama3-8b"):
        build_preset("huge")


def test_paper_presets_point_to_hf_ids():
    assert get_preset("vmed-llama3-8b").vision == CLIP_L_336 == "openai/clip-vit-large-patch14-336"
    assert get_preset("vmed-llama3-8b").lm == "aaditya/Llama3-OpenBioLLM-8B"
    assert get_preset("vmed-llama3-8b-instruct").lm == "meta-llama/Meta-Llama-3-8B-Instruct"
    assert not PRESETS["vmed-llama3-8b"].offline and PRESETS["tiny"].offline


def test_shrunken_paper_architecture_builds_from_configs():
    """CLIP-L/14-336 and Llama-3-8B shapes, shrunk: patch 14 with CLS dropped, GQA decoder."""
    from transformers import CLIPVisionConfig, LlamaConfig

    vision = CLIPVisionConfig(image_size=56, patch_size=14, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    lm = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1, rope_theta=500000.0)
    model, processor = build_model(vision, lm, tokenizer=build_tiny_tokenizer(), seed=3)
    assert num_image_tokens(model) == 16
    batch = processor(images=phantom_like_image(size=80), text=IMAGE_TOKEN + "\nWhat modality is this?", return_tensors="pt")
    assert batch["pixel_values"].shape[-2:] == (56, 56)
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_siglip_tower_uses_full_strategy():
    from transformers import SiglipVisionConfig

    vision = SiglipVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    tokenizer = build_tiny_tokenizer()
    model, processor = build_model(vision, tiny_text_config(len(tokenizer)), tokenizer=tokenizer, seed=0)
    assert model.config.vision_feature_select_strategy == "full"
    assert num_image_tokens(model) == 16
    batch = processor(images=phantom_like_image(), text=IMAGE_TOKEN + "\nIs there a lesion?", return_tensors="pt")
    assert int((batch["input_ids"] == model.config.image_token_id).sum()) == 16
    with torch.no_grad():
        assert torch.isfinite(model(**batch).logits).all()


def test_unsupported_vision_tower_is_refused():
    from transformers import LlamaConfig

    tokenizer = build_tiny_tokenizer()
    with pytest.raises(UserInputError, match="unsupported vision tower type 'llama'"):
        build_model(LlamaConfig(), tiny_text_config(len(tokenizer)), tokenizer=tokenizer)


def _llama3_tokenizer_without_image_token():
    """A byte-level BPE with only Llama-3's special tokens (like a real Llama-3 tokenizer: no <image>, no pad)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from vmed.data.template import LLAMA3_SPECIAL_TOKENS
    from vmed.model.tokenizer import tiny_corpus

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(tiny_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


def test_pretrained_parts_are_loaded_from_local_dirs(tmp_path):
    """The HF-id path, offline: a saved CLIP tower and a saved causal LM + tokenizer without <image>."""
    from transformers import AutoModelForCausalLM, CLIPConfig, CLIPModel

    from vmed.model.build import _image_processor_for

    torch.manual_seed(0)
    vision_config = tiny_vision_config(image_size=32, patch_size=8)
    # a full CLIP checkpoint (text + vision), like openai/clip-vit-large-patch14-336
    clip_config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 99},
        vision_config=vision_config.to_dict(),
        projection_dim=16,
    )
    clip = CLIPModel(clip_config)
    clip.save_pretrained(tmp_path / "vision")
    _image_processor_for(vision_config).save_pretrained(tmp_path / "vision")

    lm_tok = _llama3_tokenizer_without_image_token()
    lm = AutoModelForCausalLM.from_config(tiny_text_config(len(lm_tok)))
    lm.save_pretrained(tmp_path / "lm")
    lm_tok.save_pretrained(tmp_path / "lm")

    model, processor = build_model(str(tmp_path / "vision"), str(tmp_path / "lm"), seed=0)
    loaded_vision = model.model.vision_tower.state_dict()
    clip_vision = {k.removeprefix("vision_model."): v for k, v in clip.state_dict().items() if k.startswith("vision_model.")}
    assert clip_vision.keys() == loaded_vision.keys()
    assert all(torch.equal(loaded_vision[k], v) for k, v in clip_vision.items())
    old = lm.get_input_embeddings().weight
    new = model.get_input_embeddings().weight
    assert new.shape[0] == len(processor.tokenizer) > old.shape[0]
    assert torch.equal(new[: old.shape[0]], old)
    torch.testing.assert_close(new[old.shape[0] :], old.mean(0, keepdim=True).expand(new.shape[0] - old.shape[0], -1))
    assert torch.equal(model.model.language_model.layers[0].self_attn.q_proj.weight, lm.model.layers[0].self_attn.q_proj.weight)
    assert model.vmed_base["vision"] == str(tmp_path / "vision")
    assert num_image_tokens(model) == 16


def test_processor_chat_template_path_equals_encode_prompt(tiny):
    """Plain transformers usage (chat template + processor) gives the template module's prompt ids."""
    from vmed.constants import DEFAULT_SYSTEM_PROMPT
    from vmed.data.template import encode_prompt

    model, processor = tiny
    messages = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a lesion?"}]},
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    batch = processor(images=phantom_like_image(), text=text, add_special_tokens=False, return_tensors="pt")
    expected = encode_prompt(processor.tokenizer, [], "Is there a lesion?", num_image_tokens=num_image_tokens(model))
    assert batch["input_ids"][0].tolist() == expected
