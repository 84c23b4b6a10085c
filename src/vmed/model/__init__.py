"""vmed.model: build, save and load LLaVA models (transformers' ``LlavaForConditionalGeneration``).

``build_preset("tiny")`` gives an offline random model for tests; ``build_model(vision, lm)``
assembles any CLIP/SigLIP tower + Llama-family LM; ``save_model``/``load_model`` read and write
plain Hugging Face LLaVA directories.
"""

from vmed.model.build import build_model, num_image_tokens, parameter_counts
from vmed.model.io import load_model, model_info, read_sidecar, save_model, to_llava_hf_names
from vmed.model.presets import PRESETS, Preset, build_preset, get_preset
from vmed.model.tokenizer import build_tiny_tokenizer, prepare_tokenizer

__all__ = [
    "PRESETS",
    "Preset",
    "build_model",
    "build_preset",
    "build_tiny_tokenizer",
    "get_preset",
    "load_model",
    "model_info",
    "num_image_tokens",
    "parameter_counts",
    "prepare_tokenizer",
    "read_sidecar",
    "save_model",
    "to_llava_hf_names",
]
