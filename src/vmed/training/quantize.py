"""QLoRA: the stage's base reloaded in 4-bit NF4 through transformers' ``BitsAndBytesConfig``, then prepared by peft.

Used when ``runtime.quantization=4bit`` (CUDA and bitsandbytes required; ``check_precision`` refuses otherwise).
The base is assembled in bf16 first (projector loaded, earlier adapters merged exactly, not into 4-bit weights),
then reloaded from its own state dict with ``quantization_config=qlora_config()``: transformers swaps the language
model's linear layers for bitsandbytes ``Linear4bit`` and quantizes each weight as it reaches the GPU. The vision
tower, the projector and ``lm_head`` are skipped (they stay in bf16). peft's ``prepare_model_for_kbit_training``
then freezes the base, casts the non-4-bit weights to fp32 for stable training and (if asked) turns on gradient
checkpointing; the stage's policy adds the LoRA afterwards. ``benchmarks/gpu_step.py`` measures the memory it saves.
"""

from __future__ import annotations

from typing import Any

# lazy: torch, transformers and peft are imported inside the functions that use them, so the config checks here stay light

__all__ = ["QLORA_SKIP_MODULES", "qlora_config", "load_4bit"]

QLORA_SKIP_MODULES = ["vision_tower", "multi_modal_projector", "lm_head"]
"""Module names transformers leaves unquantized: everything but the language model's decoder layers."""


def qlora_config() -> Any:
    """The QLoRA paper's quantization: NF4 weights, double quantization, bf16 compute."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=list(QLORA_SKIP_MODULES),
    )


def load_4bit(model: Any, *, gradient_checkpointing: bool) -> Any:
    """``model`` (an assembled bf16 LLaVA base) reloaded on the current CUDA device with a 4-bit NF4 language model,
    prepared for k-bit training. The bf16 copy stays on the CPU and is released by the caller."""
    import torch
    from peft import prepare_model_for_kbit_training

    quantized = type(model).from_pretrained(
        None,
        config=model.config,
        state_dict=model.state_dict(),
        quantization_config=qlora_config(),
        dtype=torch.bfloat16,
        device_map={"": torch.cuda.current_device()},
    )
    return prepare_model_for_kbit_training(
        quantized,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if gradient_checkpointing else None,
    )
