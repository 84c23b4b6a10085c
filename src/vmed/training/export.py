"""``vmed export``: a training run -> a merged plain HF LLaVA checkpoint, or the adapter plus a base reference.

Merged (``--merge``): base + projector + every LoRA merged, written by ``vmed.model.save_model`` and then
with the weight names of the llava-hf checkpoints (``language_model.model.*``, ``language_model.lm_head.*``,
``vision_tower.vision_model.*``, ``multi_modal_projector.*``; ``config.json`` architectures
``["LlavaForConditionalGeneration"]``). That is the layout vLLM's LLaVA loader reads, and transformers 5
reads it too: ``AutoModelForImageTextToText.from_pretrained`` + ``AutoProcessor.from_pretrained`` load it
without vmed.

Not merged: the run's own files (manifest with the base model reference, projector, adapter, adapters to
merge first, processor, model card), without checkpoints and logs. ``vmed.model.runs.load_run`` loads it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from vmed.errors import ConfigError

__all__ = ["export_run", "to_llava_hf_names"]

_DTYPES = ("auto", "float32", "bfloat16", "float16")


def to_llava_hf_names(folder: Path) -> None:
    """Rename the vision-tower weights of every safetensors file in ``folder`` to ``vision_tower.vision_model.*``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    pattern = re.compile(r"^vision_tower\.(?!vision_model\.)")
    index_path = folder / "model.safetensors.index.json"
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {pattern.sub("vision_tower.vision_model.", k): handle.get_tensor(k) for k in handle.keys()}
        save_file(tensors, str(f), metadata={**metadata, "format": "pt"})
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        index["weight_map"] = {pattern.sub("vision_tower.vision_model.", k): v for k, v in index["weight_map"].items()}
        index_path.write_text(json.dumps(index, indent=2) + "\n")


def export_run(run_dir: str | Path, output: str | Path, *, merge: bool, dtype: str = "auto") -> Path:
    """Export ``run_dir`` to ``output`` (see the module docstring). Returns ``output``."""
    import torch

    from vmed.model import save_model
    from vmed.model.runs import MANIFEST_NAME, load_run, read_manifest, write_manifest, write_model_card

    run_dir, output = Path(run_dir), Path(output)
    if dtype not in _DTYPES:
        raise ConfigError(f"--dtype {dtype!r}: choose one of {', '.join(_DTYPES)}")
    manifest = read_manifest(run_dir, what="--run")
    if manifest.get("status") != "complete":
        raise ConfigError(f"--run {run_dir}: the run did not finish (status {manifest.get('status')!r}); resume it first")
    if output.exists() and any(output.iterdir()):
        raise ConfigError(f"--output {output} exists and is not empty; choose a new directory")
    output.mkdir(parents=True, exist_ok=True)
    export_info: dict[str, Any] = {"from_run": str(run_dir.resolve()), "merged": merge}
    if merge:
        torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
        model, processor, _ = load_run(run_dir, merge=True)
        if torch_dtype is not None:
            model = model.to(torch_dtype)
        save_model(model, processor, output, base={**manifest["base"], "run": str(run_dir.resolve())})
        to_llava_hf_names(output)
        (output / MANIFEST_NAME).write_text(json.dumps({**manifest, "export": export_info}, indent=2, default=str) + "\n")
    else:
        for f in run_dir.iterdir():  # projector weights and processor files
            if f.is_file() and f.name not in (MANIFEST_NAME, "README.md", "train_log.jsonl"):
                shutil.copy2(f, output / f.name)
        for rel in ([manifest["adapter"]] if manifest.get("adapter") else []) + list(manifest.get("merged_adapters", [])):
            shutil.copytree(run_dir / rel, output / rel)
        write_manifest(output, {**manifest, "export": export_info})
    write_model_card(output, {**manifest, "export": export_info})
    return output
