"""``vmed export``: a training run -> a merged plain HF LLaVA checkpoint, or a base checkpoint plus a peft adapter.

Merged (``--merge``): base + projector + every LoRA merged, written by ``vmed.model.save_model`` (llava-hf weight
names ``language_model.model.*``, ``language_model.lm_head.*``, ``vision_tower.vision_model.*``,
``multi_modal_projector.*``; ``config.json`` architectures ``["LlavaForConditionalGeneration"]``). That is the
layout vLLM's and SGLang's LLaVA loaders read, and ``AutoModelForImageTextToText.from_pretrained`` +
``AutoProcessor.from_pretrained`` load it without vmed.

Not merged: ``OUT/base/`` is a plain model directory of the same kind holding everything the run's own LoRA
adapter applies to (the rebuilt base, the run's projector, earlier stages' adapters merged, weights trained in
full), and ``OUT/adapter/`` is that adapter as a standard peft folder whose ``base_model_name_or_path`` is the
absolute path of ``OUT/base``. So ``PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base),
adapter)`` reproduces the run outside vmed, with the same greedy answers as the merged export (tested).

The stage's trained projector goes in the base, not in the adapter as a peft ``modules_to_save`` entry: vLLM's
LoRA loader (``vllm/lora/lora_model.py``) accepts only ``lora_A``/``lora_B``/``lora_embedding_*`` tensors and
rejects any other tensor in an adapter as an "unsupported LoRA weight", so a projector inside the adapter could
never be served there. A run without an adapter (stage 1, or ``policy.llm=full``) exports ``OUT/base/`` only.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from vmed.errors import ConfigError
from vmed.model.io import to_llava_hf_names

# lazy: torch and the model modules are imported inside export_run, so importing this module stays light

__all__ = ["export_run", "write_export_card", "to_llava_hf_names", "BASE_DIR", "ADAPTER_DIR"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")
BASE_DIR = "base"
ADAPTER_DIR = "adapter"
LAYOUT = "base+adapter"
"""``export.layout`` in the manifest of an unmerged export (``vmed.inference.loading`` reads it)."""


def export_run(run_dir: str | Path, output: str | Path, *, merge: bool, dtype: str = "auto") -> Path:
    """Export ``run_dir`` to ``output`` (see the module docstring). Returns ``output``."""
    import torch

    from vmed.model import save_model
    from vmed.model.runs import load_run, read_manifest, write_manifest

    run_dir, output = Path(run_dir), Path(output)
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
    manifest = read_manifest(run_dir, what="--run")  # refuses an exported folder with a clear error
    if manifest.get("status") != "complete":
        raise ConfigError(f"--run {run_dir}: the run did not finish (status {manifest.get('status')!r}); resume it first")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"--output {output} exists and is not empty; choose a new directory")
    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    export_info: dict[str, Any] = {"from_run": str(run_dir.resolve()), "merged": merge}
    base_entry = {**manifest["base"], "run": str(run_dir.resolve())}
    model, processor, _ = load_run(run_dir, merge=True) if merge else load_run(run_dir, omit_adapter=True)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    output.mkdir(parents=True, exist_ok=True)
    if merge:
        save_model(model, processor, output, base=base_entry)
    else:
        save_model(model, processor, output / BASE_DIR, base={**base_entry, "without_adapter": manifest.get("adapter")})
        export_info.update(layout=LAYOUT, base=BASE_DIR)
        if manifest.get("adapter"):
            _write_adapter(run_dir / manifest["adapter"], output / ADAPTER_DIR, (output / BASE_DIR).resolve())
            export_info["adapter"] = ADAPTER_DIR
    write_manifest(output, {**manifest, "export": export_info})
    write_export_card(output, manifest, export_info, processor)
    return output


def _write_adapter(source: Path, dest: Path, base: Path) -> None:
    """Copy the run's peft adapter to ``dest`` with ``base_model_name_or_path`` set to ``base``."""
    shutil.copytree(source, dest)
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _preprocessing(processor: Any) -> str:
    """How the saved image processor prepares an image, in words (read from the processor, not assumed)."""
    ip = processor.image_processor
    crop = getattr(ip, "crop_size", None) or {}
    size = getattr(ip, "size", None) or {}
    side = crop.get("height") if getattr(ip, "do_center_crop", False) else (size.get("shortest_edge") or size.get("height"))
    if getattr(ip, "do_pad", False):
        return f"padded to a square with the mean colour (nothing is cropped, as in LLaVA-1.5 / LLaVA-Med), then resized to {side} px"
    return f"short side resized, then the centre {side} px square cropped (the parts outside it are not seen)"


def _system_prompt(processor: Any) -> str:
    from vmed.constants import DEFAULT_SYSTEM_PROMPT

    if DEFAULT_SYSTEM_PROMPT in (getattr(processor, "chat_template", None) or ""):
        return (f"the chat template inserts the system prompt training used when a conversation has none: "
                f"\"{DEFAULT_SYSTEM_PROMPT}\"")
    return (f"this directory's chat template adds no system prompt; training used \"{DEFAULT_SYSTEM_PROMPT}\", "
            "so pass it as the system message")


def write_export_card(output: Path, manifest: dict[str, Any], export: dict[str, Any], processor: Any) -> Path:
    """README.md of an export: what it holds, its base, the system prompt, the image preprocessing, how to load it."""
    from vmed.model.runs import describe_base

    origin = describe_base(manifest.get("base", {}))
    out = output.resolve()
    if export.get("merged"):
        holds = f"one plain Hugging Face LLaVA directory: {origin}, with the run's projector and every LoRA adapter merged in"
        load = f"""```python
from transformers import AutoModelForImageTextToText, AutoProcessor
model = AutoModelForImageTextToText.from_pretrained("{out}")
processor = AutoProcessor.from_pretrained("{out}")
```
```bash
vllm serve {out} --chat-template {out}/chat_template.jinja --chat-template-content-format openai
```"""
    else:
        holds = (f"`{BASE_DIR}/`, a plain Hugging Face LLaVA directory ({origin}, with the run's projector, earlier stages' "
                 f"adapters merged and any weights trained in full)"
                 + (f", and `{ADAPTER_DIR}/`, the run's peft LoRA adapter; its `base_model_name_or_path` is `{out / BASE_DIR}`, "
                    f"the only base it reproduces the run on" if export.get("adapter") else "; the run has no adapter"))
        peft = (f"""from peft import PeftModel
model = PeftModel.from_pretrained(model, "{out / ADAPTER_DIR}")
""" if export.get("adapter") else "")
        lora = (f" \\\n    --enable-lora --lora-modules vmed={out / ADAPTER_DIR} --max-lora-rank "
                f"{(manifest.get('config', {}).get('lora') or {}).get('r', 64)}" if export.get("adapter") else "")
        load = f"""```python
from transformers import AutoModelForImageTextToText, AutoProcessor
model = AutoModelForImageTextToText.from_pretrained("{out / BASE_DIR}")
processor = AutoProcessor.from_pretrained("{out / BASE_DIR}")
{peft}```
```bash
vllm serve {out / BASE_DIR} --chat-template {out / BASE_DIR}/chat_template.jinja --chat-template-content-format openai{lora}
```
(vLLM's `--enable-lora` needs a vLLM whose LLaVA model supports LoRA; see vmed's docs/serve.md.)"""
    text = f"""---
library_name: transformers
tags: [vmed, llava, medical, visual-dialogue, stage-{manifest.get('stage')}]
---
# vmed export of a stage-{manifest.get('stage')} run

- **Holds:** {holds}.
- **From run:** `{export.get('from_run')}` (its manifest is `run_manifest.json`).
- **System prompt:** {_system_prompt(processor)}.
- **Images:** {_preprocessing(processor)}. The saved processor does this itself (`LlavaImageProcessor`, `do_pad`), so every engine that uses it sees the same pixels.

## Load
{load}

This model is a research artifact trained by vmed; it is not a medical device and must not be used for diagnosis.
"""
    path = output / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
