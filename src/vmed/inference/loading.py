"""Find and load what a checkpoint path holds, from the files it contains (never from its name).

- ``run_manifest.json`` of a base + adapter ``vmed export`` (``export.layout``): its ``adapter/`` over its
  ``base/`` (a plain model dir, or only ``base/`` when the run had no adapter).
- ``run_manifest.json`` otherwise (not a merged export): a training run dir (or an unmerged export made by
  vmed before the base + adapter layout). It is rebuilt by ``vmed.model.runs.load_run`` (base model from
  the manifest's ``base`` entry, its fingerprint checked, projector, adapters) with every LoRA adapter merged.
- ``config.json`` (including a merged ``vmed export``, whose manifest says ``export.merged``): a
  plain model dir, loaded by ``vmed.model.load_model``.
- ``adapter_config.json`` alone: a bare PEFT LoRA adapter; the base model dir is the one its
  ``base_model_name_or_path`` names (absolute, or relative to the adapter dir or the working dir).

LoRA weights are merged after loading: plain weights generate faster than a PEFT wrapper.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmed._io import MANIFEST_NAME
from vmed.errors import UserInputError
from vmed.model.io import load_model
from vmed.model.runs import load_run

if TYPE_CHECKING:
    import torch

# lazy: torch and peft are imported inside the functions that use them, so importing this module stays light
__all__ = ["Checkpoint", "resolve_checkpoint", "load_checkpoint"]

ADAPTER_CONFIG = "adapter_config.json"


@dataclass
class Checkpoint:
    """What ``path`` holds: ``kind`` is ``model`` (a model dir), ``run`` (a training run) or ``adapter``
    (a bare LoRA adapter at ``path`` over the model dir ``base``)."""

    kind: str
    path: Path
    base: Path | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path}: cannot read it as JSON ({e}); the checkpoint is damaged or incomplete") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def _resolve_base(name: str, adapter_dir: Path) -> Path:
    """The base model dir named by an adapter: absolute, or relative to the adapter dir, or to the working dir."""
    candidates = [Path(name)] if os.path.isabs(name) else [adapter_dir / name, Path.cwd() / name]
    for c in candidates:
        if (c / "config.json").is_file():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise UserInputError(
        f"{adapter_dir / ADAPTER_CONFIG}: base_model_name_or_path names the base model {name!r}, but no model dir "
        f"(with config.json) is there (looked at {tried}); put the base model at that path or edit the field"
    )


def _exported_pair(p: Path, export: dict[str, Any]) -> Checkpoint:
    """The checkpoint of a base + adapter export: its adapter over its base (or the base alone)."""
    base = p / str(export.get("base", "base"))
    if not (base / "config.json").is_file():
        raise UserInputError(f"{p}: this base + adapter export has no model dir {base} (with config.json); export the run again")
    if not export.get("adapter"):
        return Checkpoint("model", base.resolve())
    adapter = p / str(export["adapter"])
    if not (adapter / ADAPTER_CONFIG).is_file():
        raise UserInputError(f"{p}: this base + adapter export has no adapter at {adapter} ({ADAPTER_CONFIG}); export the run again")
    return Checkpoint("adapter", adapter.resolve(), base.resolve())


def resolve_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Classify ``path`` by its files (see the module docstring); raise ``UserInputError`` if it is not a checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"model path {p} does not exist; pass a model dir, an exported dir or a training run dir")
    if not p.is_dir():
        raise UserInputError(f"model path {p} is a file; pass the directory that holds config.json, run_manifest.json or adapter_config.json")
    has_config = (p / "config.json").is_file()
    if (p / MANIFEST_NAME).is_file():
        export = _read_json(p / MANIFEST_NAME).get("export") or {}
        if export.get("layout"):
            return _exported_pair(p, export)
        if not (export.get("merged") is True and has_config):
            return Checkpoint("run", p.resolve())
    if has_config:
        return Checkpoint("model", p.resolve())
    if (p / ADAPTER_CONFIG).is_file():
        base = _read_json(p / ADAPTER_CONFIG).get("base_model_name_or_path")
        if not isinstance(base, str) or not base:
            raise UserInputError(f"{p / ADAPTER_CONFIG}: base_model_name_or_path is missing; it must name the base model dir")
        return Checkpoint("adapter", p.resolve(), _resolve_base(base, p))
    raise UserInputError(
        f"{p} is not a model directory: expected config.json (a model or merged export), run_manifest.json "
        "(a training run) or adapter_config.json (a LoRA adapter)"
    )


def load_checkpoint(
    path: str | os.PathLike, *, device: "str | torch.device | None" = None, dtype: "str | torch.dtype | None" = None
) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from any checkpoint kind, LoRA merged, in eval mode (default device: cuda if available)."""
    import torch

    ckpt = resolve_checkpoint(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else None
    if ckpt.kind == "run":
        model, processor, _ = load_run(ckpt.path, dtype=dtype, device=device, merge=True)
    elif ckpt.kind == "adapter":
        from peft import PeftModel

        assert ckpt.base is not None
        model, processor = load_model(ckpt.base, dtype=dtype, device=device)
        model = PeftModel.from_pretrained(model, str(ckpt.path)).merge_and_unload()
    else:
        model, processor = load_model(ckpt.path, dtype=dtype, device=device)
    return model.eval(), processor
