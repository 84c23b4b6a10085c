"""QLoRA: the language model's linear layers as bitsandbytes NF4 ``Linear4bit`` (CUDA only).

Used when ``runtime.quantization=4bit``: the base is built in bf16 (earlier adapters merged), moved to the GPU and
quantized layer by layer, so the bf16 copy of one layer at a time is the only extra memory. The vision tower,
projector, embeddings and ``lm_head`` stay in bf16. ``benchmarks/gpu_step.py`` measures the memory this saves.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["quantize_lm_4bit"]


def quantize_lm_4bit(model: Any) -> Any:
    """Replace every ``nn.Linear`` inside ``model.model.language_model.layers`` by an NF4 ``Linear4bit`` (in place).

    The model must already be on a CUDA device (quantization happens when the weight reaches the GPU).
    """
    import bitsandbytes as bnb
    import torch

    for layer in model.model.language_model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if not isinstance(child, torch.nn.Linear):
                    continue
                q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                      compute_dtype=torch.bfloat16, quant_type="nf4", device="meta")
                q.weight = bnb.nn.Params4bit(child.weight.data, requires_grad=False, quant_type="nf4").to(child.weight.device)
                if child.bias is not None:
                    q.bias = child.bias
                setattr(parent, name, q)
        gc.collect()
        torch.cuda.empty_cache()
    model.is_loaded_in_4bit = True
    return model
