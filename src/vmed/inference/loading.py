"""Find and load what a checkpoint path holds: a plain/exported model dir or a run dir with a LoRA adapter.

The kind of directory is read from the files it contains, never guessed from its name:

- ``adapter_config.json`` present: a LoRA adapter (a training run dir). The base model is named
  by an explicit field: ``run_manifest.json``'s ``base_model`` entry when the run has a manifest,
  else the adapter config's ``base_model_name_or_path``. The base must be a vmed model dir; the
  adapter is merged into it after loading (plain weights generate faster than a PEFT wrapper).
- ``config.json`` present: a plain or exported model dir (``vmed.model.load_model``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmed.errors import UserInputError

__all__ = ["Checkpoint", "resolve_checkpoint", "load_checkpoint"]

MANIFEST = "run_manifest.json"
ADAPTER_CONFIG = "adapter_config.json"
MANIFEST_BASE_FIELDS = ("base_model_dir", "base_model")
"""``run_manifest.json`` fields that may name the base model dir, in order of preference."""


@dataclass
class Checkpoint:
    """What to load: ``model_dir`` (a vmed model dir) plus an optional LoRA ``adapter_dir``."""

    model_dir: Path
    adapter_dir: Path | None = None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise UserInputError(f"{path}: cannot read it as JSON ({e}); the checkpoint is damaged or incomplete") from None
    if not isinstance(data, dict):
        raise UserInputError(f"{path}: expected a JSON object")
    return data


def _base_from_manifest(manifest: dict[str, Any]) -> str | None:
    for key in MANIFEST_BASE_FIELDS:
        value = manifest.get(key)
        if isinstance(value, dict):  # e.g. {"path": ..., "sha256": ...}
            value = value.get("path") or value.get("dir")
        if isinstance(value, str) and value:
            return value
    return None


def _resolve_base(name: str, run_dir: Path, field: str) -> Path:
    """A base-model path from a saved field: absolute, or relative to the run dir, or to the working dir."""
    candidates = [Path(name)] if os.path.isabs(name) else [run_dir / name, Path.cwd() / name]
    for c in candidates:
        if (c / "config.json").is_file():
            return c.resolve()
    tried = ", ".join(str(c) for c in candidates)
    raise UserInputError(
        f"{run_dir}: {field} names the base model {name!r}, but no model dir (with config.json) is there "
        f"(looked at {tried}); build or copy the base model to that path, or export the run with "
        "`vmed export --run RUN --output DIR --merge` and load the exported dir"
    )


def resolve_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Classify ``path`` by its files (see the module docstring); raise ``UserInputError`` if it is not a checkpoint."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserInputError(f"model path {p} does not exist; pass a model dir, an exported dir or a training run dir")
    if not p.is_dir():
        raise UserInputError(f"model path {p} is a file; pass the directory that holds config.json or adapter_config.json")
    if (p / ADAPTER_CONFIG).is_file():
        base = None
        field = ""
        if (p / MANIFEST).is_file():
            base = _base_from_manifest(_read_json(p / MANIFEST))
            field = f"{MANIFEST} ({'/'.join(MANIFEST_BASE_FIELDS)})"
        if base is None:
            base = _read_json(p / ADAPTER_CONFIG).get("base_model_name_or_path")
            field = f"{ADAPTER_CONFIG} (base_model_name_or_path)"
        if not isinstance(base, str) or not base:
            raise UserInputError(
                f"{p}: a LoRA adapter without a base model: neither {MANIFEST} ({'/'.join(MANIFEST_BASE_FIELDS)}) "
                f"nor {ADAPTER_CONFIG} (base_model_name_or_path) names it"
            )
        return Checkpoint(model_dir=_resolve_base(base, p, field), adapter_dir=p.resolve())
    if (p / "config.json").is_file():
        return Checkpoint(model_dir=p.resolve())
    raise UserInputError(
        f"{p} is not a model directory: expected config.json (a model or exported dir) or adapter_config.json "
        "(a training run dir with a LoRA adapter)"
    )


def load_checkpoint(path: str | os.PathLike, *, device: Any = None, dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, processor)`` from any checkpoint kind, LoRA merged, in eval mode (default device: cuda if available)."""
    import torch

    from vmed.model import load_model

    ckpt = resolve_checkpoint(path)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else None
    model, processor = load_model(ckpt.model_dir, dtype=dtype, device=device)
    if ckpt.adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(ckpt.adapter_dir)).merge_and_unload()
    return model.eval(), processor
