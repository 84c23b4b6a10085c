"""Save and load model directories: plain Hugging Face LLaVA directories plus a small vmed sidecar.

A saved directory holds ``config.json``, ``generation_config.json``, ``model.safetensors``, the
processor and tokenizer files (with the Llama-3 chat template) and ``vmed_model.json`` (which
preset / base ids it was built from; training stages use it to check they share a base model).

Weights are saved with the llava-hf names (``language_model.model.*``, ``language_model.lm_head.*``,
``vision_tower.vision_model.*``, ``multi_modal_projector.*``), the layout of the ``llava-hf/*``
checkpoints. transformers 5 writes the first, second and fourth of these itself but names the vision
tower ``vision_tower.embeddings.*`` (its CLIP/SigLIP towers have no ``vision_model`` level any more),
which vLLM's LLaVA loader rejects; ``to_llava_hf_names`` renames those keys. transformers 5 maps the
llava-hf names back when loading, so the loaded model is identical (tested).
It loads in plain transformers without vmed::

    from transformers import AutoModelForImageTextToText, AutoProcessor
    model = AutoModelForImageTextToText.from_pretrained(path)
    processor = AutoProcessor.from_pretrained(path)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vmed import __version__
from vmed.errors import UserInputError
from vmed.model.build import num_image_tokens, parameter_counts

# lazy: transformers and safetensors are imported inside the functions that use them, so importing this module stays light
__all__ = ["SIDECAR", "save_model", "load_model", "model_info", "read_sidecar", "to_llava_hf_names"]

_HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
"""An HF hub id (``owner/name``); anything else that does not exist locally is a missing directory."""

SIDECAR = "vmed_model.json"
"""File name of the vmed sidecar in a model directory."""


def save_model(model: Any, processor: Any, out_dir: str | Path, *, base: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and ``processor`` to ``out_dir`` as a plain HF LLaVA directory (safetensors).

    ``base`` (default: ``model.vmed_base``, set by ``build_model``/``build_preset``/``load_model``)
    goes to the ``vmed_model.json`` sidecar with the image-token count and vmed version.
    Returns the directory.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    to_llava_hf_names(out)
    processor.save_pretrained(out)
    sidecar = {
        "format": "vmed-model/1",
        "vmed_version": __version__,
        "base": dict(base if base is not None else getattr(model, "vmed_base", {}) or {}),
        "num_image_tokens": num_image_tokens(model),
        "image_token_id": model.config.image_token_id,
        "chat_format": "llama3",
    }
    (out / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    return out


_VISION_KEY = re.compile(r"^vision_tower\.(?!vision_model\.)")


def to_llava_hf_names(folder: str | Path) -> None:
    """Rename the vision-tower weights of every safetensors file in ``folder`` to ``vision_tower.vision_model.*``
    (and the shard index with them); other keys and files already named that way are left as they are."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    folder = Path(folder)
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as handle:
            keys = list(handle.keys())
            if not any(_VISION_KEY.match(k) for k in keys):
                continue
            metadata = handle.metadata() or {}
            tensors = {_VISION_KEY.sub("vision_tower.vision_model.", k): handle.get_tensor(k) for k in keys}
        save_file(tensors, str(f), metadata={**metadata, "format": "pt"})
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        index["weight_map"] = {_VISION_KEY.sub("vision_tower.vision_model.", k): v for k, v in index["weight_map"].items()}
        index_path.write_text(json.dumps(index, indent=2) + "\n")


def read_sidecar(path: str | Path) -> dict[str, Any]:
    """The ``vmed_model.json`` of a model directory (``{}`` if it has none, e.g. an HF download)."""
    f = Path(path) / SIDECAR
    return json.loads(f.read_text()) if f.is_file() else {}


def _check_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise UserInputError(f"model directory {p} does not exist; create one with: vmed model init --preset tiny --output {p}")
    if not (p / "config.json").is_file():
        raise UserInputError(
            f"{p} is not a model directory (no config.json); create one with: vmed model init --preset tiny --output {p}"
        )
    return p


def _processor_image_tokens(processor: Any) -> int:
    """How many ``<image>`` tokens ``processor`` expands one ``<image>`` to (LlavaProcessor's rule)."""
    ip = processor.image_processor
    size = getattr(ip, "crop_size", None) if getattr(ip, "do_center_crop", False) else None
    size = size or ip.size
    height, width = (size["height"], size["width"]) if "height" in size else (size["shortest_edge"],) * 2
    n = (height // processor.patch_size) * (width // processor.patch_size)
    n += processor.num_additional_image_tokens
    return n - 1 if processor.vision_feature_select_strategy == "default" else n


def load_model(path: str | Path, *, dtype: Any = None, device: Any = None) -> tuple[Any, Any]:
    """Load ``(LlavaForConditionalGeneration, LlavaProcessor)`` from a model directory (or HF id).

    Checks that the image-token count of the config matches the processor; sets ``model.vmed_base``
    from the sidecar so that ``save_model`` keeps it.
    """
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    p = Path(path)
    if p.exists() or not _HF_ID.match(str(path)):
        _check_dir(p)
    try:
        model = LlavaForConditionalGeneration.from_pretrained(str(path), dtype=dtype)
        processor = AutoProcessor.from_pretrained(str(path))
    except OSError as e:
        raise UserInputError(f"cannot load the model {path}: {e}") from e
    if device is not None:
        model.to(device)
    model.eval()
    n_model = num_image_tokens(model)
    n_proc = _processor_image_tokens(processor)
    if n_model != n_proc:
        raise UserInputError(
            f"{path}: the model expects {n_model} image tokens per image but the processor expands <image> to "
            f"{n_proc}; the processor files do not belong to this model"
        )
    model.vmed_base = read_sidecar(p).get("base", {"model": str(path)}) if p.exists() else {"model": str(path)}
    return model, processor


def model_info(path: str | Path) -> dict[str, Any]:
    """Describe a model directory: parts, parameter counts per part, image tokens, strategy, chat template."""
    _check_dir(path)
    model, processor = load_model(path)
    config = model.config
    return {
        "path": str(path),
        "architecture": type(model).__name__,
        "vision_tower": {
            "type": config.vision_config.model_type,
            "image_size": config.vision_config.image_size,
            "patch_size": config.vision_config.patch_size,
            "hidden_size": config.vision_config.hidden_size,
            "layers": config.vision_config.num_hidden_layers,
        },
        "projector": {"type": "mlp2x_gelu", "act": config.projector_hidden_act},
        "language_model": {
            "type": config.text_config.model_type,
            "hidden_size": config.text_config.hidden_size,
            "layers": config.text_config.num_hidden_layers,
            "vocab_size": config.text_config.vocab_size,
        },
        "parameters": parameter_counts(model),
        "dtype": str(next(model.parameters()).dtype).replace("torch.", ""),
        "num_image_tokens": num_image_tokens(model),
        "image_token": processor.image_token,
        "image_token_id": config.image_token_id,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "vision_feature_layer": config.vision_feature_layer,
        "tokenizer_size": len(processor.tokenizer),
        "eos_token_ids": model.generation_config.eos_token_id,
        "chat_template": processor.tokenizer.chat_template,
        "base": model.vmed_base,
    }
