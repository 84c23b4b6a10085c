"""Assemble a transformers ``LlavaForConditionalGeneration`` from a vision encoder and a causal LM.

The model is plain transformers: a CLIP- or SigLIP-style vision tower, LLaVA-1.5's ``mlp2x_gelu``
projector (``LlavaMultiModalProjector``: linear → GELU → linear) and a Llama-family decoder. Each
part comes from an HF id (pretrained weights are loaded), a config (random init), or for the LM
also a GGUF file (``gguf_file=``, dequantized by transformers). The same code path builds the tiny
test model and the 8B paper model.

Image tokens: the vision tower turns an S×S image into (S/P)² patch features, plus a CLS feature
for CLIP. CLIP uses the "default" strategy (CLS dropped), SigLIP (no CLS) uses "full"; either way
N = (S/P)² features replace N ``<image>`` tokens in the text. The processor gets the same numbers,
so ``LlavaProcessor`` expands one ``<image>`` to exactly N tokens.

Images are padded to a square with the normalisation mean colour before the resize, as LLaVA-1.5 and
LLaVA-Med do (``image_aspect_ratio="pad"``), so nothing at the edges of a wide or tall image is cut
away. It is done by the processor itself (``LlavaImageProcessor`` with ``do_pad=True``), so every engine
that runs the saved processor (transformers, vLLM, SGLang) sees the same pixels. ``pad_to_square=False``
keeps the tower's own resize + centre crop (what vmed did before, and what older directories keep).

``SERVING_CONFIG`` fields go in ``config.json`` for engines that read them: SGLang's LLaVA adaptor
assumes ``image_aspect_ratio="anyres"`` (tiling, a different token count) when the field is missing.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vmed.constants import IMAGE_TOKEN
from vmed.data.template import END_OF_TEXT, EOT, LLAMA3_CHAT_TEMPLATE
from vmed.errors import UserInputError
from vmed.model.tokenizer import EMBEDDING_ALIASES, prepare_tokenizer

if TYPE_CHECKING:
    import torch
    from transformers import LlavaForConditionalGeneration, LlavaProcessor, PretrainedConfig

# lazy: torch and transformers are imported inside the functions that use them, so importing this module stays light
__all__ = [
    "PARTS", "PartCount", "VISION_KINDS", "build_model", "count_parameters", "num_image_tokens", "padding_image_processor", "parameter_counts", "part_of", "serving_config",
    "vision_kind",
]

VISION_KINDS: dict[str, dict[str, Any]] = {
    "clip_vision_model": {"strategy": "default", "num_additional_image_tokens": 1},
    "siglip_vision_model": {"strategy": "full", "num_additional_image_tokens": 0},
}
"""Supported vision towers by config ``model_type``: LLaVA feature strategy and extra (CLS) tokens."""


def vision_kind(vision_config: Any) -> dict[str, Any]:
    """The ``VISION_KINDS`` entry of a vision config; ``UserInputError`` for unsupported towers."""
    kind = VISION_KINDS.get(str(getattr(vision_config, "model_type", "")))
    if kind is None:
        raise UserInputError(
            f"unsupported vision tower type {getattr(vision_config, 'model_type', None)!r}; "
            f"expected one of {sorted(VISION_KINDS)} (a CLIP or SigLIP vision encoder)"
        )
    return kind


def serving_config(pad_to_square: bool) -> dict[str, Any]:
    """``config.json`` fields that serving engines read and transformers ignores.

    SGLang's LLaVA adaptor reads ``image_aspect_ratio`` ("pad": pad to a square with the mean colour,
    as the processor does; "square": plain resize/crop; missing means "anyres" tiling) and
    ``mm_patch_merge_type`` ("flat": one feature per image token, LLaVA-1.5).
    """
    return {"image_aspect_ratio": "pad" if pad_to_square else "square", "mm_patch_merge_type": "flat"}


def num_image_tokens(model_or_config: Any) -> int:
    """Number of ``<image>`` tokens (= projected image features) per image for a LLaVA model or config.

    ``(image_size // patch_size)**2``, plus the CLS feature when it is kept ("full" strategy on CLIP).
    """
    config = getattr(model_or_config, "config", model_or_config)
    vision = config.vision_config
    n = (vision.image_size // vision.patch_size) ** 2 + vision_kind(vision)["num_additional_image_tokens"]
    return n - 1 if config.vision_feature_select_strategy == "default" else n


PARTS = ("vision", "projector", "llm", "lora")
"""The parts of a LLaVA model that parameters are counted and trained by (``part_of``)."""


def part_of(name: str) -> str:
    """The model part a parameter name belongs to: vision, projector, llm or lora (LoRA matrices)."""
    if ".lora_" in name:
        return "lora"
    if "vision_tower" in name:
        return "vision"
    if "multi_modal_projector" in name:
        return "projector"
    return "llm"


@dataclass
class PartCount:
    """Parameter counts of one model part."""

    total: int = 0
    trainable: int = 0


def count_parameters(model: "torch.nn.Module") -> dict[str, PartCount]:
    """Total and trainable parameters per part (``PARTS``; ``llm`` includes ``lm_head``). Tied weights count once."""
    counts = {p: PartCount() for p in PARTS}
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        c = counts[part_of(name)]
        c.total += p.numel()
        if p.requires_grad:
            c.trainable += p.numel()
    return counts


def parameter_counts(model: "torch.nn.Module") -> dict[str, int]:
    """Parameters per part (``vision``, ``projector``, ``llm``, ``lora``) and their ``total``; see ``count_parameters``."""
    counts = {part: c.total for part, c in count_parameters(model).items()}
    counts["total"] = sum(counts.values())
    return counts


_PROCESSOR_FIELDS = (
    "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale", "rescale_factor",
    "do_normalize", "image_mean", "image_std", "do_convert_rgb",
)
"""The image-processor settings a vision tower's own processor passes on to the padding processor."""


def padding_image_processor(processor: Any, *, pad: bool = True) -> Any:
    """A PIL-backed ``LlavaImageProcessor`` with ``processor``'s resize/crop/normalisation and ``do_pad=pad``.

    With ``do_pad`` the image is first padded to a square of its longer side, filled with
    ``image_mean`` (× 255), centred, then resized; the centre crop that follows is then a no-op.
    """
    from transformers import LlavaImageProcessorPil

    settings = {k: getattr(processor, k) for k in _PROCESSOR_FIELDS if getattr(processor, k, None) is not None}
    settings["do_center_crop"] = bool(settings.get("do_center_crop"))  # SigLIP's processor has none: no crop
    for key in ("size", "crop_size"):
        if key in settings and not isinstance(settings[key], dict):
            settings[key] = {k: v for k, v in dict(settings[key]).items() if v is not None}
    return LlavaImageProcessorPil(**settings, do_pad=pad)


def _vision_part(vision: Any, dtype: Any) -> tuple[Any, Any, Any]:
    """(vision config, vision model, image processor) from an HF id (pretrained) or a config (random)."""
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, CLIPVisionModel, SiglipVisionModel

    if isinstance(vision, str):
        try:
            full = AutoConfig.from_pretrained(vision)
        except (ValueError, KeyError) as e:
            raise UserInputError(
                f"cannot load the vision encoder {vision!r} with transformers ({e}); use a CLIP or SigLIP "
                "checkpoint such as openai/clip-vit-large-patch14-336 (LanguageBind/LanguageBind_Image needs the "
                "LanguageBind repository's own code and is not supported)"
            ) from e
        config = getattr(full, "vision_config", full)
        loader = CLIPVisionModel if vision_kind(config)["strategy"] == "default" else SiglipVisionModel
        model = loader.from_pretrained(vision, dtype=dtype)
        processor = AutoImageProcessor.from_pretrained(vision, backend="pil")
        return model.config, model, processor
    config = copy.deepcopy(vision)
    vision_kind(config)
    return config, AutoModel.from_config(config), _image_processor_for(config)


def _image_processor_for(config: Any) -> Any:
    """A PIL-backed image processor that resizes to the tower's ``image_size`` (CLIP or SigLIP style)."""
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    size = config.image_size
    if vision_kind(config)["strategy"] == "default":
        return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return SiglipImageProcessorPil(size={"height": size, "width": size})


def _language_part(lm: Any, tokenizer: Any, gguf_file: str | None, dtype: Any) -> tuple[Any, Any, int | None]:
    """(causal LM, prepared tokenizer, the tokenizer's own eos id) from an HF id / directory (optionally
    a GGUF file in it; pretrained weights) or a config (random init, sized to the prepared tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    extra = {"gguf_file": gguf_file} if gguf_file else {}
    if tokenizer is None:
        if not isinstance(lm, str):
            raise UserInputError("build_model: an LM given as a config needs a tokenizer (e.g. vmed.model.build_tiny_tokenizer())")
        tokenizer = AutoTokenizer.from_pretrained(lm, **extra)
    own_eos = tokenizer.eos_token_id
    added = prepare_tokenizer(tokenizer)
    if isinstance(lm, str):
        model = AutoModelForCausalLM.from_pretrained(lm, dtype=dtype, **extra)
        _resize_embeddings(model, tokenizer, added)
        return model, tokenizer, own_eos
    config = copy.deepcopy(lm)
    config.vocab_size = len(tokenizer)
    return AutoModelForCausalLM.from_config(config), tokenizer, own_eos


def _resize_embeddings(lm: Any, tokenizer: Any, added: list[str]) -> None:
    """Grow the LM's input/output embeddings to ``len(tokenizer)`` rows for the ``added`` tokens.

    A new row copies its ``EMBEDDING_ALIASES`` counterpart when the LM's vocab has it (so a ChatML
    model such as SmolLM2 reads ``<|start_header_id|>`` like ``<|im_start|>``); otherwise it is the
    mean of the old rows.
    """
    import torch

    old_size = lm.get_input_embeddings().weight.shape[0]
    new_size = len(tokenizer)
    if new_size <= old_size:
        return
    lm.resize_token_embeddings(new_size, mean_resizing=False)
    vocab = tokenizer.get_vocab()
    with torch.no_grad():
        for emb in {id(m): m for m in (lm.get_input_embeddings(), lm.get_output_embeddings()) if m is not None}.values():
            w = emb.weight
            w[old_size:] = w[:old_size].mean(dim=0, keepdim=True)
            for token in added:
                alias = vocab.get(EMBEDDING_ALIASES.get(token, ""))
                if alias is not None and alias < old_size:
                    w[vocab[token]] = w[alias]

# long: the model's recipe in build order (tower, LM, tokenizer + <image>, embeddings, projector, processor,
# serving config), each step a few lines that share the configs; mostly its documented arguments.
def build_model(
    vision: str | PretrainedConfig,
    lm: str | PretrainedConfig,
    *,
    tokenizer: Any = None,
    gguf_file: str | None = None,
    vision_feature_layer: int = -2,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    pad_to_square: bool = True,
) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """Build a LLaVA model (vision tower + mlp2x_gelu projector + causal LM) and its processor.

    Args:
        vision: HF id of a CLIP/SigLIP checkpoint (pretrained vision tower) or a ``CLIPVisionConfig`` /
            ``SiglipVisionConfig`` (random init).
        lm: HF id or local directory of a Llama-family causal LM (pretrained; with ``gguf_file`` a GGUF
            file in it), or a ``LlamaConfig``-like config (random init; ``tokenizer`` required).
        tokenizer: tokenizer to use instead of the LM's own. It is changed in place by
            ``prepare_tokenizer`` (Llama-3 special tokens, ``<image>``, pad, chat template).
        vision_feature_layer: which vision hidden state feeds the projector (-2: LLaVA-1.5).
        dtype: parameter dtype (default float32).
        seed: seeds the random init (projector, and any part built from a config); same seed → same weights.
        pad_to_square: pad images to a square with the mean colour before resizing (LLaVA-1.5 /
            LLaVA-Med); False keeps the tower's resize + centre crop.

    Returns ``(model, processor)``; ``model.vmed_base`` records the parts (saved by ``save_model``).
    """
    import torch
    from transformers import GenerationConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    if seed is not None:
        torch.manual_seed(seed)
    vision_config, vision_model, image_processor = _vision_part(vision, dtype)
    kind = vision_kind(vision_config)
    lm_model, tokenizer, own_eos = _language_part(lm, tokenizer, gguf_file, dtype)

    text_config = lm_model.config
    text_config.bos_token_id = tokenizer.bos_token_id
    text_config.eos_token_id = tokenizer.eos_token_id
    text_config.pad_token_id = tokenizer.pad_token_id
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_id=image_token_id,
        projector_hidden_act="gelu",
        vision_feature_select_strategy=kind["strategy"],
        vision_feature_layer=vision_feature_layer,
        tie_word_embeddings=bool(getattr(text_config, "tie_word_embeddings", False)),
    )
    config.image_seq_length = num_image_tokens(config)
    config.pad_token_id = tokenizer.pad_token_id
    for key, value in serving_config(pad_to_square).items():
        setattr(config, key, value)
    text_config.architectures = [type(lm_model).__name__]  # vLLM builds the inner LM from this field

    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    model.model.vision_tower = vision_model
    model.model.language_model = lm_model.model
    model.lm_head = lm_model.lm_head
    model.model.multi_modal_projector = LlavaMultiModalProjector(config)
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.language_model.embed_tokens.weight
    if dtype is not None:
        model.to(dtype)
    model.eval()
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type == "meta"]
    if leftover:
        raise RuntimeError(f"build_model left uninitialised tensors: {leftover[:5]}")

    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=list(
            dict.fromkeys(
                t for t in (tokenizer.convert_tokens_to_ids(EOT), tokenizer.convert_tokens_to_ids(END_OF_TEXT), own_eos) if t is not None
            )
        ),
        pad_token_id=tokenizer.pad_token_id,
    )
    processor = LlavaProcessor(
        image_processor=padding_image_processor(image_processor, pad=pad_to_square),
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy=kind["strategy"],
        chat_template=LLAMA3_CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=kind["num_additional_image_tokens"],
    )
    model.vmed_base = {
        "vision": vision if isinstance(vision, str) else f"config:{vision_config.model_type}",
        "lm": lm if isinstance(lm, str) else f"config:{text_config.model_type}",
        "gguf_file": gguf_file,
        "seed": seed,
        "vision_feature_layer": vision_feature_layer,
    }
    return model, processor
