"""Run directories: what a stage writes, its manifest, and how a later stage (or export) rebuilds the model.

Layout of a run directory (``output_dir`` of one stage)::

    run_manifest.json        stage, status, base model (spec + fingerprint), resolved config, versions, git
                             revision, sha256 of the data files, parent run, final metrics
    README.md                a short model card
    projector.safetensors    the projector's weights (keys relative to multi_modal_projector)
    adapter/                 the stage's LoRA adapter (PEFT format; stages 2 and 3)
    weights.safetensors      trained weights other than projector and LoRA (only with policy.llm=full / vision=train)
    merged_adapters/00/ ...  adapters of earlier stages to merge into the base first, in order (stage 3, merge mode)
    tokenizer*, processor_config.json, chat_template.*   the processor
    checkpoints/checkpoint-N/   Trainer checkpoints (trainable weights, optimizer, scheduler, RNG, data position)

The base model itself is not copied: the manifest records how to rebuild it (a preset name, a model
directory, or vision + LM HF ids, with a seed) and a fingerprint of its weights. A stage refuses an input run
whose base differs from the one it is asked to use: the comparison uses these saved fields, never folder names.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vmed.config import ModelSpec
from vmed._io import MANIFEST_NAME, sha256_file, write_json_atomic
from vmed.errors import ConfigError
from vmed.model.build import build_model, part_of
from vmed.model.io import load_model
from vmed.model.presets import PRESETS, build_preset, get_preset

if TYPE_CHECKING:
    import torch

# lazy: torch, safetensors, peft and transformers are imported inside the functions that use them, so importing this module stays light
__all__ = [
    "MANIFEST_NAME",
    "PROJECTOR_FILE",
    "WEIGHTS_FILE",
    "ADAPTER_DIR",
    "MERGED_DIR",
    "base_spec",
    "same_base",
    "build_base",
    "check_base_fingerprint",
    "fingerprint",
    "read_manifest",
    "write_manifest",
    "library_versions",
    "git_revision",
    "load_run",
    "assemble_run",
    "save_trained_weights",
    "trained_weight_names",
    "save_projector",
    "load_projector",
    "write_model_card",
    "describe_base",
]

PROJECTOR_FILE = "projector.safetensors"
WEIGHTS_FILE = "weights.safetensors"
ADAPTER_DIR = "adapter"
MERGED_DIR = "merged_adapters"


def base_spec(spec: ModelSpec) -> dict[str, Any]:
    """The manifest's description of a base model (exactly one of preset / path / vision+lm)."""
    given = [k for k in ("preset", "path") if getattr(spec, k)] + (["vision+lm"] if spec.vision or spec.lm else [])
    if len(given) != 1:
        raise ConfigError(
            "model: set exactly one of model.preset, model.path, or model.vision + model.lm "
            f"(got {given or 'none'}); e.g. model.preset=tiny"
        )
    if given[0] == "preset":
        assert spec.preset is not None  # `given` holds only the fields that are set
        preset = get_preset(spec.preset)
        return {"kind": "preset", "preset": spec.preset, "vision": preset.vision, "lm": preset.lm, "seed": spec.seed}
    if given[0] == "path":
        assert spec.path is not None
        return {"kind": "path", "path": str(Path(spec.path).resolve()), "seed": spec.seed}
    if not (spec.vision and spec.lm):
        raise ConfigError("model.vision and model.lm must be given together (HF ids or local paths)")
    return {"kind": "ids", "vision": spec.vision, "lm": spec.lm, "seed": spec.seed}


def same_base(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two manifest base entries name the same base (kind, ids/paths and seed; fingerprints if both have one)."""
    keys = ("kind", "preset", "path", "vision", "lm", "seed")
    if any(a.get(k) != b.get(k) for k in keys):
        return False
    fa, fb = a.get("fingerprint"), b.get("fingerprint")
    return fa is None or fb is None or fa == fb


def build_base(base: dict[str, Any], *, dtype: "torch.dtype | None" = None) -> tuple[Any, Any]:
    """Rebuild the untrained base (model, processor) that a manifest's ``base`` entry describes."""
    kind = base["kind"]
    if kind == "preset":
        if base["preset"] not in PRESETS:
            raise ConfigError(f"unknown model preset {base['preset']!r}; presets: {', '.join(PRESETS)}")
        preset = PRESETS[base["preset"]]
        if preset.offline:
            model, processor = build_preset(preset.name, seed=base.get("seed", 0))
        else:  # HF ids: load straight in the training dtype (an 8B model in fp32 first would need 32 GB)
            model, processor = build_model(preset.vision, preset.lm, dtype=dtype, seed=base.get("seed", 0))
    elif kind == "path":
        if not Path(base["path"]).is_dir():
            raise ConfigError(f"base model directory not found: {base['path']} (model.path)")
        model, processor = load_model(base["path"], dtype=dtype)
    elif kind == "ids":
        model, processor = build_model(base["vision"], base["lm"], dtype=dtype, seed=base.get("seed", 0))
    else:
        raise ConfigError(f"run manifest: unknown base kind {kind!r}")
    if dtype is not None:
        model = model.to(dtype)
    return model, processor


def check_base_fingerprint(model: "torch.nn.Module", base: dict[str, Any], where: str) -> str:
    """The fingerprint of ``model``, the base rebuilt from the manifest entry ``base``; raises ConfigError (naming
    ``where``) when ``base`` records a different one. A base entry without a fingerprint passes."""
    fp = fingerprint(model)
    if base.get("fingerprint") and base["fingerprint"] != fp:
        named = {k: v for k, v in base.items() if k != "fingerprint" and v is not None}
        raise ConfigError(
            f"{where}: the base model rebuilt from its manifest ({named}) differs from the one that run was trained on "
            "(weight fingerprints differ); the base's files or its seed changed since"
        )
    return fp


def fingerprint(model: "torch.nn.Module") -> str:
    """A cheap sha256 identity of a model's weights: names, shapes and ~64 strided values per tensor.

    Values are rounded to bfloat16 first, so the same weights loaded in fp32 or bf16 give the same
    fingerprint. Non-floating tensors (quantized storage) contribute their name only.
    """
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        if not torch.is_floating_point(t):
            continue
        h.update(str(tuple(t.shape)).encode())
        flat = t.detach().reshape(-1)
        sample = flat[:: max(1, flat.numel() // 64)][:64].to(device="cpu", dtype=torch.bfloat16).float()
        h.update(sample.numpy().tobytes())
    return h.hexdigest()


def read_manifest(run_dir: str | os.PathLike, *, what: str = "input run") -> dict[str, Any]:
    """Read ``run_dir/run_manifest.json`` or raise a ConfigError that says what is missing."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{what} {run_dir} does not exist; run the previous stage first (its output_dir)")
    path = run_dir / MANIFEST_NAME
    if not path.is_file():
        raise ConfigError(
            f"{what} {run_dir} has no {MANIFEST_NAME}: it is not a finished vmed training run "
            "(the previous stage did not complete, or this is not a run directory)"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e.msg}); the run directory is damaged") from None
    export = manifest.get("export") if isinstance(manifest, dict) else None
    if isinstance(export, dict) and (export.get("merged") or export.get("layout")):
        # an export keeps the run's manifest for provenance, but not the run's own files (projector, adapters)
        kind = "a merged export" if export.get("merged") else "a base + adapter export"
        raise ConfigError(
            f"{what} {run_dir} is {kind} made by `vmed export` (from the run {export.get('from_run')}), not a training "
            f"run; pass the training run itself, or use {run_dir} directly as a model (vmed serve/chat/eval --model)"
        )
    return manifest


def write_manifest(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write the manifest atomically (temp file + rename)."""
    return write_json_atomic(Path(run_dir) / MANIFEST_NAME, manifest, default=str)


def library_versions() -> dict[str, str]:
    """Versions of vmed, Python and the libraries that shape training."""
    out = {"python": platform.python_version()}
    for name in ("vmed", "torch", "transformers", "peft", "accelerate", "tokenizers", "safetensors", "deepspeed", "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def git_revision() -> str | None:
    """The git revision of the vmed source tree (with ``-dirty`` when it has changes), or None outside git."""
    src = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=src, capture_output=True, text=True, timeout=10)
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save_projector(model: Any, path: str | os.PathLike, state_dict: dict[str, Any] | None = None) -> None:
    """Save the projector's weights (keys relative to ``multi_modal_projector``) from a model or its state dict."""
    from safetensors.torch import save_file

    sd = state_dict if state_dict is not None else model.state_dict()
    marker = "multi_modal_projector."
    out = {k.split(marker, 1)[1]: v.detach().cpu().contiguous() for k, v in sd.items() if marker in k and ".lora_" not in k}
    if not out:
        raise RuntimeError("the model has no multi_modal_projector weights to save")
    save_file(out, str(path))


def load_projector(model: Any, path: str | os.PathLike) -> None:
    """Load ``projector.safetensors`` into a LlavaForConditionalGeneration (strict)."""
    from safetensors.torch import load_file

    projector = model.model.multi_modal_projector
    sd = load_file(str(path))
    ref = next(iter(projector.parameters()))
    projector.load_state_dict({k: v.to(ref.dtype) for k, v in sd.items()}, strict=True)


def save_trained_weights(
    model: Any, path: str | os.PathLike, state_dict: dict[str, Any] | None = None, carried: Iterable[str] = ()
) -> bool:
    """Save the vision/LM weights that differ from the base, with plain LLaVA names: those trainable now
    (``policy.llm=full`` / ``policy.vision=train``) and ``carried``, the plain names an earlier stage trained
    (its weights file), saved with their current values so that a later stage never loses them.
    Returns False (and writes nothing) when there are none."""
    from safetensors.torch import save_file

    carried = set(carried)
    names = {
        n for n, p in model.named_parameters()
        if part_of(n) in ("vision", "llm") and (p.requires_grad or _plain_name(n) in carried)
    }
    if not names:
        return False
    sd = state_dict if state_dict is not None else model.state_dict()
    out = {_plain_name(k): v.detach().cpu().contiguous() for k, v in sd.items() if k in names}
    missing = carried - set(out)
    if missing:
        raise ConfigError(f"{path}: weights {sorted(missing)[:3]} of the earlier stage are not in this stage's model")
    save_file(out, str(path))
    return True


def trained_weight_names(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> list[str]:
    """The plain names in a run's weights file (empty when the run trained no vision/LM weights in full)."""
    from safetensors import safe_open

    if not manifest.get("weights"):
        return []
    with safe_open(str(Path(run_dir) / manifest["weights"]), framework="pt") as f:
        return list(f.keys())


def _plain_name(name: str) -> str:
    """A parameter name of a PeftModel as the wrapped LLaVA model names it."""
    if name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    return name.replace(".base_layer.", ".")


def assemble_run(model: Any, run_dir: str | os.PathLike, manifest: dict[str, Any], *, last_adapter: str) -> tuple[Any, list[Path]]:
    """Put a run's weights onto its rebuilt base: projector -> merged adapters -> trained weights -> adapter.

    ``last_adapter``: "merge" (merge the run's own adapter too), "trainable" (keep it as a trainable PEFT adapter),
    "frozen", or "omit" (leave it out: the base that the run's own adapter applies to). Returns the model and the
    adapter directories merged into it, in order.
    """
    from peft import PeftModel
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    load_projector(model, run_dir / manifest.get("projector", PROJECTOR_FILE))
    merged = [run_dir / rel for rel in manifest.get("merged_adapters", [])]
    for adapter in merged:
        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if manifest.get("weights"):
        trained = load_file(str(run_dir / manifest["weights"]))
        missing = model.load_state_dict(trained, strict=False)
        if missing.unexpected_keys:
            raise ConfigError(f"{run_dir / manifest['weights']}: weights {missing.unexpected_keys[:3]} are not in the base model")
    if manifest.get("adapter") and last_adapter != "omit":
        adapter = run_dir / manifest["adapter"]
        if last_adapter == "merge":
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
            merged.append(adapter)
        else:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=last_adapter == "trainable")
    return model, merged


def load_run(
    run_dir: str | os.PathLike, *, dtype: "str | torch.dtype | None" = None, device: "str | torch.device | None" = None,
    merge: bool = False, trainable: bool = False,
    omit_adapter: bool = False,
) -> tuple[Any, Any, dict[str, Any]]:
    """Rebuild the model a run directory describes: base -> projector -> merged adapters -> trained weights -> adapter.

    Returns ``(model, processor, manifest)``. The model is a PeftModel when the run has an adapter and
    ``merge`` is False (``trainable`` makes that adapter trainable, to continue it); with ``merge`` every
    adapter is merged and a plain LlavaForConditionalGeneration is returned; ``omit_adapter`` gives the plain model
    the run's own adapter applies to (earlier adapters merged, projector and trained weights in). Raises ConfigError when the
    rebuilt base's fingerprint differs from the manifest's.
    """
    from transformers import AutoProcessor

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir, what="run")
    if manifest.get("status") != "complete":
        raise ConfigError(f"run {run_dir} is not complete (status {manifest.get('status')!r}); finish or resume it first")
    model, _ = build_base(manifest["base"], dtype=dtype)
    check_base_fingerprint(model, manifest["base"], f"run {run_dir}")
    processor = AutoProcessor.from_pretrained(str(run_dir))
    last = "omit" if omit_adapter else "merge" if merge else ("trainable" if trainable else "frozen")
    model, _ = assemble_run(model, run_dir, manifest, last_adapter=last)
    if device is not None:
        model = model.to(device)
    return model, processor, manifest


def describe_base(base: dict[str, Any]) -> str:
    """A manifest's base entry in words, for model cards: the preset and seed, the model directory, or the HF ids."""
    return {
        "preset": f"vmed preset `{base.get('preset')}` (seed {base.get('seed')})",
        "path": f"the model directory `{base.get('path')}`",
        "ids": f"vision `{base.get('vision')}` + language model `{base.get('lm')}`",
    }.get(str(base.get("kind")), str(base))


def write_model_card(run_dir: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """A short README.md: what the run is, its base, policy, data, metrics, and how to use it."""
    run_dir = Path(run_dir)
    cfg = manifest.get("config", {})
    base = manifest.get("base", {})
    base_txt = describe_base(base)
    metrics = manifest.get("metrics", {})
    metric_lines = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items())
    policy = cfg.get("policy", {})
    data = cfg.get("data", {})
    text = f"""---
library_name: transformers
tags: [vmed, llava, medical, visual-dialogue, stage-{manifest.get('stage')}]
---
# vmed stage {manifest.get('stage')} run

- **Base:** {base_txt}; weight fingerprint `{str(base.get('fingerprint'))[:16]}`
- **Policy:** vision {policy.get('vision')}, projector {policy.get('projector')}, language model {policy.get('llm')}
- **Data:** `{data.get('train')}` as {data.get('records')} records (sha256 in `{MANIFEST_NAME}`)
- **Input run:** {(manifest.get('parent') or {}).get('run_dir') or 'none (stage 1)'}
- **Contents:** projector weights{', LoRA adapter `adapter/`' if manifest.get('adapter') else ''}{', merged earlier adapters' if manifest.get('merged_adapters') else ''}, processor files.
  The base model is rebuilt from the manifest, not copied.

## Metrics
| metric | value |
|---|---|
{metric_lines}

## Use
```bash
vmed export --run {run_dir} --output exported --merge   # plain HF LLaVA (transformers / vLLM / SGLang)
vmed export --run {run_dir} --output exported           # base/ (plain HF LLaVA) + adapter/ (peft LoRA on it)
```
This model is a research artifact trained by vmed; it is not a medical device and must not be used for diagnosis.
"""
    path = run_dir / "README.md"
    path.write_text(text, encoding="utf-8")
    return path
