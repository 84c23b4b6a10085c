"""Stage policies: which parts of the LLaVA model train, held as data (``vmed.config.PolicyConfig``).

``vision: frozen|train``, ``projector: frozen|train``, ``llm: frozen|lora|full``. ``apply_policy``
freezes everything, then unfreezes what the policy says; ``llm: lora`` wraps the model in a PEFT
LoRA whose targets are a regex limited to the language model (the vision tower has ``q_proj``
too). The projector is trained through ``requires_grad`` on the base model's own projector (not
PEFT's ``modules_to_save``), and saved separately as ``projector.safetensors``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from vmed.config import LoraConfigSpec, PolicyConfig
from vmed.errors import ConfigError
from vmed.model.build import PARTS as _PARTS, PartCount, count_parameters, part_of

# lazy: peft is imported inside the functions that attach LoRA, so the policy checks stay light

__all__ = ["PartCount", "apply_policy", "count_parameters", "format_policy", "part_of"]

def format_policy(policy: PolicyConfig, counts: dict[str, PartCount]) -> str:
    """One log line per part: the policy and its trainable / total parameter counts."""
    modes = {"vision": policy.vision, "projector": policy.projector, "llm": policy.llm, "lora": "adapter"}
    lines = [f"policy: vision={policy.vision} projector={policy.projector} llm={policy.llm}"]
    for part in _PARTS:
        c = counts[part]
        if part == "lora" and c.total == 0:
            continue
        lines.append(f"  {part:<9} {modes[part]:<8} trainable {c.trainable:>14,} / {c.total:>14,}")
    total = sum(c.total for c in counts.values())
    trainable = sum(c.trainable for c in counts.values())
    lines.append(f"  {'all':<9} {'':<8} trainable {trainable:>14,} / {total:>14,} ({100 * trainable / max(total, 1):.3f}%)")
    return "\n".join(lines)


def _check_lora_targets(model: Any, regex: str) -> None:
    pattern = re.compile(regex)
    matched = [n for n, _ in model.named_modules() if pattern.fullmatch(n)]
    if not matched:
        raise ConfigError(
            f"lora.target_modules {regex!r} matches no module of the model; it is a regex over full module names "
            "such as 'model.language_model.layers.0.self_attn.q_proj'"
        )
    outside = [n for n in matched if not (n.startswith("model.language_model.") or n == "lm_head")]
    if outside:
        raise ConfigError(
            f"lora.target_modules {regex!r} also matches {outside[0]!r}, outside the language model; "
            "limit the regex to model.language_model and lm_head (the vision tower and projector have their own policy)"
        )


def apply_policy(model: Any, policy: PolicyConfig, lora: LoraConfigSpec) -> Any:
    """Freeze/unfreeze the parts of ``model`` (a LlavaForConditionalGeneration, or a PeftModel around one
    whose adapter is to be continued) and return the model to train (a PeftModel when ``llm`` is lora)."""
    from peft import LoraConfig, PeftModel, get_peft_model

    if policy.llm == "lora" and not isinstance(model, PeftModel):
        _check_lora_targets(model, lora.target_modules)
        model = get_peft_model(
            model,
            LoraConfig(
                r=lora.r,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora.target_modules,
                bias="none",
                task_type="CAUSAL_LM",
            ),
        )
    wanted = {
        "vision": policy.vision == "train",
        "projector": policy.projector == "train",
        "llm": policy.llm == "full",
        "lora": policy.llm == "lora",
    }
    for name, p in model.named_parameters():
        p.requires_grad_(wanted[part_of(name)])
    return model
