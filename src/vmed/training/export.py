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

__all__ = ["export_run", "to_llava_hf_names", "BASE_DIR", "ADAPTER_DIR"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")
BASE_DIR = "base"
ADAPTER_DIR = "adapter"
LAYOUT = "base+adapter"
"""``export.layout`` in the manifest of an unmerged export (``vmed.inference.loading`` reads it)."""


def export_run(run_dir: str | Path, output: str | Path, *, merge: bool, dtype: str = "auto") -> Path:
    """Export ``run_dir`` to ``output`` (see the module docstring). Returns ``output``."""
    import torch

    from vmed.model import save_model
    from vmed.model.runs import load_run, read_manifest, write_manifest, write_model_card

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
    write_model_card(output, {**manifest, "export": export_info})
    return output


def _write_adapter(source: Path, dest: Path, base: Path) -> None:
    """Copy the run's peft adapter to ``dest`` with ``base_model_name_or_path`` set to ``base``."""
    shutil.copytree(source, dest)
    config_path = dest / "adapter_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = str(base)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
