"""Typed run configs: dataclasses, YAML files and dotted ``key=value`` overrides.

A YAML file only sets values of the dataclasses below; every field has a type and a help text
(``vmed train --list-keys`` prints them). Unknown keys and values of the wrong type are
``ConfigError``s that name the key and list the valid ones. Overrides use dotted paths::

    vmed train --config configs/tiny-phantom/stage2.yaml optim.lr=3e-3 lora.r=16 data.max_length=256

Values of overrides are parsed as YAML scalars (``1e-3``, ``true``, ``null``, ``[a, b]``).
Imports only the standard library and PyYAML.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from vmed.errors import ConfigError

__all__ = [
    "ModelSpec",
    "PolicyConfig",
    "LoraConfigSpec",
    "DataConfig",
    "OptimConfig",
    "RuntimeConfig",
    "TrainConfig",
    "LM_LORA_TARGETS",
    "load_config",
    "from_dict",
    "to_dict",
    "apply_overrides",
    "describe_keys",
]

LM_LORA_TARGETS = r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"
"""Default LoRA targets: q,k,v,o and the MLP projections of the language model only (the vision tower has q_proj too)."""


def _f(default: Any = dataclasses.MISSING, help: str = "", factory: Any = None, **check: Any) -> Any:
    """A dataclass field with a help text (shown by ``vmed train --list-keys``).

    ``check`` holds the value's limits, enforced when a config is loaded (``_check_value``): ``ge``/``gt``/``lt``
    (numbers; ``None`` always passes), ``allowed`` (extra values outside those limits, e.g. -1 = unset) and
    ``regex=True`` (the text must compile as a Python regular expression).
    """
    metadata = {"help": help, **check}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelSpec:
    """Where the base model comes from. Set it in stage 1; in later stages it is read from the input run's
    manifest, and if set it must match that manifest (the stage refuses otherwise)."""

    preset: str | None = _f(None, "a vmed.model preset name (tiny, small, vmed-llama3-8b, vmed-llama3-8b-instruct)")
    path: str | None = _f(None, "a model directory written by `vmed model init` or `vmed export --merge`")
    vision: str | None = _f(None, "vision encoder HF id (with `lm`, instead of a preset)")
    lm: str | None = _f(None, "causal LM HF id (with `vision`, instead of a preset)")
    seed: int = _f(0, "seed for the randomly initialised parts of the base (tiny preset, new token rows)")

    def is_set(self) -> bool:
        return any(v is not None for v in (self.preset, self.path, self.vision, self.lm))


@dataclass
class PolicyConfig:
    """Which parts train: the stage's trainable policy, held as data."""

    vision: Literal["frozen", "train"] = _f("frozen", "vision tower: frozen (the paper recipe) or train")
    projector: Literal["frozen", "train"] = _f("train", "the 2-layer MLP projector: train or frozen")
    llm: Literal["frozen", "lora", "full"] = _f("frozen", "language model: frozen, lora (adapter on the LM only) or full")


@dataclass
class LoraConfigSpec:
    """LoRA on the language model (used when policy.llm is lora)."""

    r: int = _f(128, "LoRA rank", ge=1)
    alpha: int = _f(256, "LoRA alpha (scale = alpha / r)", gt=0)
    dropout: float = _f(0.05, "dropout on the LoRA input", ge=0, lt=1)
    target_modules: str = _f(LM_LORA_TARGETS, "regex over full module names; keep it inside model.language_model", regex=True)
    previous: Literal["merge", "continue"] = _f(
        "merge", "stage 3 with a stage-2 adapter: merge it into the base and add a fresh LoRA, or continue training it"
    )


@dataclass
class DataConfig:
    """Training data: dialogue JSONL files (the output of `vmed data convert` / `vmed data phantom`)."""

    train: str | None = _f(None, "training JSONL (dialogue records)")
    validation: str | None = _f(None, "validation JSONL for the eval loss (optional)")
    records: Literal["dialogue", "describe", "instruction"] = _f(
        "dialogue",
        "how records become training sequences: dialogue (all turns in one sequence), describe "
        "('Describe the image.' -> summary; stage 1), instruction (phantom instruction-style records; stage 2)",
    )
    summary_turn: Literal["last", "none"] = _f(
        "last",
        "dialogue records: last (end each sequence with the evaluation's summary turn, 'Describe the image.' -> the "
        "record's summary; records without a summary keep their turns) or none (the VQA turns only)",
    )
    max_length: int = _f(
        2048,
        "maximum tokens per sequence (image tokens included); a longer dialogue loses whole question turns, "
        "the latest ones before the summary turn first, and never part of an answer",
        ge=1,
    )
    group_by_length: bool = _f(True, "batch dialogues of similar length together (less padding)")
    num_workers: int = _f(0, "DataLoader worker processes", ge=0)
    max_bad_images: float = _f(
        0.01,
        "pre-flight image check: how many unreadable or missing images the run skips (with their rows, reasons printed "
        "and kept in the manifest) before it refuses to start: a fraction of the images (below 1) or a count (1 or more)",
        ge=0,
    )


@dataclass
class OptimConfig:
    """Optimizer and schedule (AdamW, linear warmup then cosine decay)."""

    lr: float = _f(2e-4, "peak learning rate (LoRA / LM / projector unless projector_lr is set)", gt=0)
    projector_lr: float | None = _f(None, "learning rate of the projector (null = lr)", gt=0)
    weight_decay: float = _f(0.0, "AdamW weight decay", ge=0)
    warmup_ratio: float = _f(0.03, "fraction of steps with linear warmup", ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant_with_warmup"] = _f("cosine", "learning-rate schedule after warmup")
    epochs: float = _f(1.0, "passes over the training data", gt=0)
    max_steps: int = _f(-1, "stop after this many optimizer steps (-1: use epochs)", ge=1, allowed=(-1,))
    batch_size: int = _f(16, "sequences per device per micro-step", ge=1)
    grad_accum: int = _f(1, "micro-steps per optimizer step (global batch = batch_size * grad_accum * processes)", ge=1)
    max_grad_norm: float = _f(1.0, "gradient clipping norm (0: no clipping)", ge=0)


@dataclass
class RuntimeConfig:
    """Precision, logging, checkpoints and resume."""

    precision: Literal["fp32", "bf16", "fp16"] = _f("fp32", "mixed precision: fp32, bf16 or fp16")
    quantization: Literal["none", "4bit"] = _f("none", "4bit = QLoRA (bitsandbytes NF4 base; CUDA only)")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (less memory)")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = _f("sdpa", "attention kernel of the LM")
    seed: int = _f(0, "seed for data order, dropout and new weights")
    logging_steps: int = _f(10, "log the training loss every N steps", ge=1)
    eval_steps: int = _f(0, "validation loss every N steps (0: only at the end, if data.validation is set)", ge=0)
    save_steps: int = _f(500, "checkpoint every N steps (0: no intermediate checkpoints)", ge=0)
    save_total_limit: int = _f(2, "keep at most this many checkpoints", ge=1)
    report_to: str | list[str] = _f(
        "auto",
        "experiment trackers, as the installed Trainer names them (tensorboard, wandb, mlflow, ...; a list for several): "
        "auto = TensorBoard when installed, none = no tracker, all = every installed one",
    )
    resume: str = _f("auto", "auto (latest complete checkpoint in output_dir), never, or a checkpoint directory")
    progress_bar: bool = _f(True, "show progress bars")


@dataclass
class TrainConfig:
    """One training stage: its input, its trainable policy, data, optimizer and runtime."""

    stage: Literal[1, 2, 3] = _f(1, "1 alignment (projector), 2 instruction tuning (LoRA), 3 downstream (LoRA)")
    output_dir: str = _f("runs/stage1", "the run directory this stage writes")
    init_from: str | None = _f(None, "stage 2/3: the previous stage's run directory")
    model: ModelSpec = _f(help="the base model", factory=ModelSpec)
    policy: PolicyConfig = _f(help="what trains", factory=PolicyConfig)
    lora: LoraConfigSpec = _f(help="LoRA settings", factory=LoraConfigSpec)
    data: DataConfig = _f(help="training data", factory=DataConfig)
    optim: OptimConfig = _f(help="optimizer", factory=OptimConfig)
    runtime: RuntimeConfig = _f(help="precision, logging, checkpoints", factory=RuntimeConfig)
    trainer: dict[str, Any] = _f(
        help="further transformers.TrainingArguments passed through as they are (e.g. trainer.optim=adamw_torch_fused, "
        "trainer.run_name=x); checked against the installed transformers; keys vmed sets from its own config are refused",
        factory=dict,
    )


# --------------------------------------------------------------------------- loading


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_type_name(typing.get_args(tp)[0])}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; convert int->float; raise ConfigError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value in choices and type(value) is type(choices[choices.index(value)]):
            return value
        raise ConfigError(f"config key '{key}': {value!r} is not one of {list(choices)}")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': {value!r} is not a {_type_name(tp)}")
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"config key '{key}': expected a mapping of names to values, got {value!r}")
        return dict(value)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif _is_dataclass_type(tp):
        if isinstance(value, dict):
            return from_dict(tp, value, prefix=key + ".")
    raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from a nested dict; unknown keys raise ConfigError listing the valid ones."""
    if not isinstance(data, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'. Valid keys here: {', '.join(prefix + n for n in names)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        if f.name in kwargs:
            _check_value(kwargs[f.name], f.metadata, prefix + f.name)
    return cls(**kwargs)


def _check_value(value: Any, meta: Any, key: str) -> None:
    """Enforce a field's limits (``_f``'s ``check``); the message names the key and the allowed range."""
    if value is None or value in meta.get("allowed", ()):
        return
    if meta.get("regex"):
        try:
            re.compile(value)
        except re.error as e:
            raise ConfigError(f"config key '{key}': {value!r} is not a valid regular expression ({e})") from None
    limits = [(name, meta[name]) for name in ("ge", "gt", "lt") if name in meta]
    if not limits or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    ok = {"ge": value >= meta.get("ge", 0), "gt": value > meta.get("gt", 0), "lt": value < meta.get("lt", 0)}
    if not all(ok[name] for name, _ in limits):
        words = {"ge": ">=", "gt": ">", "lt": "<"}
        wanted = " and ".join(f"{words[name]} {bound}" for name, bound in limits)
        extra = "".join(f" (or {a})" for a in meta.get("allowed", ()))
        raise ConfigError(f"config key '{key}': {value!r} is out of range; it must be {wanted}{extra}")


def to_dict(obj: Any) -> dict[str, Any]:
    """A config dataclass as a plain nested dict (for manifests and YAML)."""
    return dataclasses.asdict(obj)


def _set_dotted(tree: dict[str, Any], cls: type, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    node, node_cls, prefix = tree, cls, ""
    for i, part in enumerate(parts):
        names = [f.name for f in dataclasses.fields(node_cls)]
        if part not in names:
            raise ConfigError(
                f"unknown config key '{prefix}{part}' in override '{dotted}={raw}'. "
                f"Valid keys here: {', '.join(prefix + n for n in names)}"
            )
        tp = typing.get_type_hints(node_cls)[part]
        if i == len(parts) - 1:
            try:
                node[part] = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                node[part] = raw
            if tp is str and not isinstance(node[part], str) and node[part] is not None:
                node[part] = raw  # a string field keeps the text as written (e.g. output_dir=2024)
            return
        if typing.get_origin(tp) is dict:  # a free mapping (``trainer``): the rest of the path is one name
            try:
                value = yaml.safe_load(raw) if raw != "" else ""
            except yaml.YAMLError:
                value = raw
            node.setdefault(part, {})[".".join(parts[i + 1 :])] = value
            return
        if not _is_dataclass_type(tp):
            raise ConfigError(f"config key '{prefix}{part}' is a value, not a section; cannot set '{dotted}'")
        node = node.setdefault(part, {})
        node_cls, prefix = tp, prefix + part + "."


def apply_overrides(tree: dict[str, Any], cls: type, overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` strings to a nested dict in place (checked against ``cls``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like key=value, e.g. optim.lr=1e-3")
        key, raw = item.split("=", 1)
        _set_dotted(tree, cls, key.strip(), raw.strip())
    return tree


def load_config(path: str | Path | None, overrides: list[str] | None = None, cls: type = TrainConfig) -> Any:
    """Read a YAML file (or nothing), apply overrides, and return the typed config.

    Relative paths inside the YAML stay relative to the current directory (the command runs from the repo root,
    as the first line of every shipped YAML shows).
    """
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of config keys")
        tree = loaded or {}
    apply_overrides(tree, cls, overrides or [])
    return from_dict(cls, tree)


def describe_keys(cls: type = TrainConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """Every config key as (dotted key, type, default, help), for ``--list-keys``."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_dataclass_type(tp):
            rows.extend(describe_keys(tp, prefix + f.name + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc,operator]
        rows.append((prefix + f.name, _type_name(tp), repr(default), f.metadata.get("help", "")))
    return rows
