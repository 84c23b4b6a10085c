"""The HF Trainer, set up for vmed stages: trainable-only checkpoints, a projector learning rate, length grouping.

``VmedTrainer`` changes three things in ``transformers.Trainer``:

- checkpoints hold only the trainable parameters (``trainable.safetensors``: projector, LoRA, or
  whatever the policy unfroze), not a copy of the frozen 8B base at every save; resuming loads them back;
- the projector can have its own learning rate (``optim.projector_lr``, LLaVA-Med's 2e-5 next to LoRA's 2e-4);
- length-grouped batches come from the lengths the dataset already knows, reshuffled per epoch from the seed.

Everything else (mixed precision, gradient accumulation, warmup + cosine, DDP / DeepSpeed / FSDP through
accelerate, evaluation, TensorBoard, progress bars, RNG and data-position restore) is the Trainer's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib.util
import os
import typing
from typing import Any, Iterator

import torch
import transformers
from transformers import Trainer, TrainingArguments

from vmed.config import TrainConfig
from vmed.data.collate import LengthGroupedSampler
from vmed.errors import ConfigError

# lazy: the distributed-only helpers (torch.distributed.checkpoint, accelerate.utils, transformers.integrations) and safetensors are imported on the code paths that use them

__all__ = ["VmedTrainer", "TRAINABLE_FILE", "training_arguments", "check_precision", "resolve_report_to",
           "follow_runtime_precision", "cpu_fsdp_environment", "model_build_context",
           "save_fsdp_adapter_weights"]

TRAINABLE_FILE = "trainable.safetensors"


def check_precision(cfg: TrainConfig) -> None:
    """Refuse precision / quantization settings this machine cannot run, before anything is built."""
    rt = cfg.runtime
    if rt.quantization == "4bit":
        if not torch.cuda.is_available():
            raise ConfigError(
                "runtime.quantization=4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run on CPU. "
                "Use runtime.quantization=none on this machine."
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("runtime.quantization=4bit (QLoRA) needs bitsandbytes: pip install bitsandbytes")
        if cfg.policy.llm != "lora":
            raise ConfigError("runtime.quantization=4bit only works with policy.llm=lora (a 4-bit base cannot be trained)")
    if rt.precision == "fp16" and not torch.cuda.is_available():
        raise ConfigError("runtime.precision=fp16 needs a CUDA GPU; use bf16 or fp32 on CPU")
    if rt.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ConfigError("runtime.attn_implementation=flash_attention_2 needs the flash-attn package; use sdpa")


_TRACKERS: dict[str, tuple[str, str]] = {
    "azure_ml": ("is_azureml_available", "azureml-sdk"),
    "comet_ml": ("is_comet_available", "comet-ml"),
    "mlflow": ("is_mlflow_available", "mlflow"),
    "neptune": ("is_neptune_available", "neptune"),
    "tensorboard": ("is_tensorboard_available", "tensorboard"),
    "trackio": ("is_trackio_available", "trackio"),
    "wandb": ("is_wandb_available", "wandb"),
    "codecarbon": ("is_codecarbon_available", "codecarbon"),
    "clearml": ("is_clearml_available", "clearml"),
    "dagshub": ("is_dagshub_available", "dagshub"),
    "flyte": ("is_flytekit_available", "flytekit"),
    "dvclive": ("is_dvclive_available", "dvclive"),
    "swanlab": ("is_swanlab_available", "swanlab"),
    "kubeflow": ("is_kubeflow_available", "kubeflow"),
}
"""Tracker name -> (transformers' availability check, pip package). A tracker the installed Trainer knows but this
table does not (a newer transformers) is passed on unchecked: the Trainer's own callback then reports a missing package."""


def resolve_report_to(choice: str | list[str]) -> list[str]:
    """``runtime.report_to`` as the Trainer's ``report_to`` list: auto = TensorBoard when installed, none, all, or the
    names the installed transformers accepts; a tracker whose package is missing is a ConfigError naming the package."""
    from transformers.integrations import integration_utils as iu

    names = [choice] if isinstance(choice, str) else list(choice)
    special = {"auto", "none", "all"} & set(names)
    if special and len(names) > 1:
        raise ConfigError(f"runtime.report_to: {sorted(special)[0]!r} cannot be combined with other trackers ({names})")
    if names == ["auto"]:
        return ["tensorboard"] if iu.is_tensorboard_available() else []
    if names == ["none"]:
        return []
    if names == ["all"]:
        return list(iu.get_available_reporting_integrations())
    known = list(iu.INTEGRATION_TO_CALLBACK)
    for name in names:
        if name not in known:
            raise ConfigError(
                f"runtime.report_to: {name!r} is not a tracker of the installed transformers {transformers.__version__}; "
                f"choose from auto, none, all, {', '.join(known)}"
            )
        check, package = _TRACKERS.get(name, (None, name))
        if check is not None and hasattr(iu, check) and not getattr(iu, check)():
            raise ConfigError(f"runtime.report_to={name} needs the {package} package, which is not installed: pip install {package}")
    return names


_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
_CHECKPOINTING = "activation_checkpointing" if "activation_checkpointing" in _FIELDS else "gradient_checkpointing"
"""transformers 5.2x renamed gradient_checkpointing to activation_checkpointing (the old name warns)."""
_ALIASES = {"gradient_checkpointing": "activation_checkpointing", "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs"}
_ALIASES.update({new: old for old, new in list(_ALIASES.items())})


def _vmed_arguments(cfg: TrainConfig, *, has_eval: bool) -> dict[str, tuple[Any, str]]:
    """The TrainingArguments vmed sets: name -> (value, the vmed key it comes from, or why vmed fixes it)."""
    o, rt = cfg.optim, cfg.runtime
    eval_every = rt.eval_steps if (has_eval and rt.eval_steps > 0) else 0
    fixed = "fixed by vmed"
    return {
        "output_dir": (cfg.output_dir, "output_dir"),
        "per_device_train_batch_size": (o.batch_size, "optim.batch_size"),
        "per_device_eval_batch_size": (o.batch_size, "optim.batch_size"),
        "gradient_accumulation_steps": (o.grad_accum, "optim.grad_accum"),
        "learning_rate": (o.lr, "optim.lr"),
        "weight_decay": (o.weight_decay, "optim.weight_decay"),
        "warmup_steps": (o.warmup_ratio, "optim.warmup_ratio"),  # a float below 1 is a ratio of the steps (transformers 5)
        "lr_scheduler_type": (o.scheduler, "optim.scheduler"),
        "num_train_epochs": (o.epochs, "optim.epochs"),
        "max_steps": (o.max_steps, "optim.max_steps"),
        "max_grad_norm": (o.max_grad_norm, "optim.max_grad_norm"),
        "bf16": (rt.precision == "bf16", "runtime.precision"),
        "fp16": (rt.precision == "fp16", "runtime.precision"),
        "use_cpu": (not torch.cuda.is_available(), f"{fixed}: the CPU exactly when there is no CUDA device"),
        _CHECKPOINTING: (rt.gradient_checkpointing, "runtime.gradient_checkpointing"),
        _CHECKPOINTING + "_kwargs": ({"use_reentrant": False} if rt.gradient_checkpointing else None,
                                     "runtime.gradient_checkpointing"),
        "seed": (rt.seed, "runtime.seed"),
        "data_seed": (rt.seed, "runtime.seed"),
        "logging_steps": (rt.logging_steps, "runtime.logging_steps"),
        "logging_first_step": (True, f"{fixed}: the first loss is always logged (train_log.jsonl)"),
        "eval_strategy": ("steps" if eval_every else "no", "runtime.eval_steps"),
        "eval_steps": (eval_every or None, "runtime.eval_steps"),
        "save_strategy": ("steps" if rt.save_steps > 0 else "no", "runtime.save_steps"),
        "save_steps": (rt.save_steps if rt.save_steps > 0 else 500, "runtime.save_steps"),
        "save_total_limit": (rt.save_total_limit, "runtime.save_total_limit"),
        "report_to": (resolve_report_to(rt.report_to), "runtime.report_to"),
        "disable_tqdm": (not rt.progress_bar, "runtime.progress_bar"),
        "remove_unused_columns": (False, f"{fixed}: the collator needs every column of the dataset"),
        "dataloader_num_workers": (cfg.data.num_workers, "data.num_workers"),
        "train_sampling_strategy": ("group_by_length" if cfg.data.group_by_length else "random", "data.group_by_length"),
        "ddp_find_unused_parameters": (False, f"{fixed}: frozen parts have no gradients by design, never unused ones"),
        "label_names": (["labels"], f"{fixed}: the collator's label column"),
    }


def _check_passthrough_type(key: str, value: Any, annotation: Any) -> None:
    """Plain bool / int / float TrainingArguments must get a value of that type (``"yes"`` is not a bool)."""
    args = {a for a in typing.get_args(annotation) if a is not type(None)} or {annotation}
    if value is None and type(None) in typing.get_args(annotation):
        return
    expected = next(iter(args)) if len(args) == 1 else None
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(expected, True)
    if not ok:
        raise ConfigError(f"config key 'trainer.{key}': expected {expected.__name__}, got {value!r}")


def follow_runtime_precision(cfg: TrainConfig) -> str | None:
    """Make a launcher's ``mixed_precision`` (``ACCELERATE_MIXED_PRECISION``) agree with ``runtime.precision``.

    The Trainer takes the launcher's value whenever bf16 and fp16 are both off, so the shipped accelerate files'
    ``mixed_precision: bf16`` would silently turn a ``runtime.precision=fp32`` run into bf16 autocast (and DeepSpeed
    would refuse the mismatch). The vmed config decides; returns a note to log when the launcher asked otherwise.
    """
    wanted = {"bf16": "bf16", "fp16": "fp16"}.get(cfg.runtime.precision, "no")
    launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if launcher is None or launcher == wanted:
        return None
    os.environ["ACCELERATE_MIXED_PRECISION"] = wanted
    return (f"runtime.precision={cfg.runtime.precision} decides the precision; the launcher's mixed_precision={launcher} "
            "is ignored (set runtime.precision to change it)")


def training_arguments(cfg: TrainConfig, *, has_eval: bool) -> TrainingArguments:
    """TrainingArguments from a stage config (the Trainer's output_dir is the run directory), plus ``cfg.trainer``.

    ``cfg.trainer`` passes further arguments through, checked against the installed transformers: an unknown name
    fails naming it (with close matches), and a name vmed sets from its own config is refused with the vmed key to use.
    """
    own = _vmed_arguments(cfg, has_eval=has_eval)
    hints = typing.get_type_hints(TrainingArguments)
    for key, value in cfg.trainer.items():
        owned = key if key in own else _ALIASES.get(key)
        if owned in own:
            source = own[owned][1]
            hint = "vmed fixes it" + source.split("fixed by vmed", 1)[1] if source.startswith("fixed by vmed") else f"set {source} instead"
            raise ConfigError(f"config key 'trainer.{key}': vmed sets TrainingArguments.{key} itself; {hint}")
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, sorted(_FIELDS), n=3)
            raise ConfigError(
                f"config key 'trainer.{key}': transformers {transformers.__version__} TrainingArguments has no argument "
                f"{key!r}" + (f"; did you mean {', '.join(close)}?" if close else "")
            )
        _check_passthrough_type(key, value, hints.get(key))
    try:
        return TrainingArguments(**{k: v for k, (v, _) in own.items()}, **cfg.trainer)
    except ValueError as e:  # TrainingArguments' own checks (an unknown optim name, conflicting flags)
        if not cfg.trainer:
            raise
        raise ConfigError(f"config keys {', '.join('trainer.' + k for k in cfg.trainer)}: TrainingArguments refused them: {e}") from None


_WRAPPER_PREFIXES = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.")


def _clean_name(name: str) -> str:
    """A parameter name without the FSDP / activation-checkpoint wrapper prefixes (as in a full state dict)."""
    for prefix in _WRAPPER_PREFIXES:
        name = name.replace(prefix, "")
    return name


@contextlib.contextmanager
def model_build_context() -> Iterator[None]:
    """Build the model with whole weights on every process unless the launcher asked for ZeRO-3 init.

    Under a ZeRO-3 launch transformers builds every model inside ``deepspeed.zero.Init`` (partitioned at creation)
    as soon as TrainingArguments exist, whatever the accelerate file's ``zero3_init_flag`` says; with the shipped
    ``zero3_init_flag: false`` that is not what was asked, and on CPU it fails ("Cannot copy out of meta tensor").
    Here zero-3 init is off while the model is built (DeepSpeed still shards it when the engine starts), unless
    ``ACCELERATE_DEEPSPEED_ZERO3_INIT`` is true.
    """
    from transformers.integrations import deepspeed as hf_ds

    ref = hf_ds._hf_deepspeed_config_weak_ref
    config = ref() if ref is not None else None
    if config is None or os.environ.get("ACCELERATE_DEEPSPEED_ZERO3_INIT", "false").lower() == "true":
        yield
        return
    hf_ds.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        hf_ds.set_hf_deepspeed_config(config)


def _wants_fsdp() -> bool:
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def cpu_fsdp_environment() -> bool:
    """On a CPU-only FSDP launch, turn ``sync_module_states`` off before accelerate reads it; returns whether it did.

    ``sync_module_states`` (rank 0's weights broadcast to the others at wrap time; ``true`` in the shipped
    ``configs/accelerate/fsdp.yaml``, which GPU launches keep) makes accelerate refuse to start without an
    accelerator device. It is not needed here: every process rebuilds the same base from the run manifest
    (fingerprint-checked) and seeds the same LoRA initialisation; ``tests/integration/test_distributed.py``
    checks the losses against one process. So the shipped file runs on CPU unchanged.
    """
    from accelerate.utils import get_torch_accelerator_backend

    if not _wants_fsdp() or get_torch_accelerator_backend()[0] is not None:
        return False
    if os.environ.get("FSDP_SYNC_MODULE_STATES", "false").lower() not in ("true", "1"):
        return False
    os.environ["FSDP_SYNC_MODULE_STATES"] = "false"
    return True


def enable_fsdp_on_cpu(accelerator: Any) -> bool:
    """Turn a CPU launch that asked for FSDP into FSDP; returns whether it did.

    accelerate (1.15) enables FSDP only for accelerator devices: on a CPU launch (gloo, ``MULTI_CPU``) its
    ``AcceleratorState`` ignores ``ACCELERATE_USE_FSDP`` and silently trains plain DDP, although torch's FSDP runs on
    gloo. Here the state is switched to FSDP with the plugin accelerate itself builds from the launcher's
    ``FSDP_*`` environment (the accelerate config file), so that a CPU run takes the same FSDP code path as a GPU
    one. Nothing changes on GPU launches, or on CPU launches that did not ask for FSDP.

    ``sync_module_states`` must already be off (``cpu_fsdp_environment``).
    """
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if not _wants_fsdp() or state.distributed_type != DistributedType.MULTI_CPU:
        return False
    plugin = FullyShardedDataParallelPlugin()
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    state.device = torch.device("cpu")  # not "cpu:0": FSDP compares device_id with the parameters' device "cpu"
    return True


def fsdp_state_dict(model: Any, *, trainable_only: bool) -> dict[str, Any]:
    """The full (unsharded) state dict of an FSDP-wrapped model, by torch's distributed-checkpoint API (FSDP 1 and 2).

    A collective: every rank calls it. On GPUs the tensors land on the CPU of rank 0 only (the others get an empty
    dict); on a CPU launch every rank gets them. ``trainable_only`` gathers just what trains (LoRA, projector),
    not the frozen base. accelerate's own gather (``get_state_dict``) crashes on a CPU launch (SIGSEGV under FSDP 1,
    freed storage under FSDP 2), this one does not.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    on_gpu = torch.cuda.is_available()
    options = StateDictOptions(full_state_dict=True, cpu_offload=on_gpu, ignore_frozen_params=trainable_only)
    return {k: v.detach().clone() for k, v in get_model_state_dict(model, options=options).items()}


def save_fsdp_adapter_weights(model: Any, state_dict: dict[str, Any], adapter_dir: str | os.PathLike) -> int:
    """Write the LoRA tensors of an FSDP-trained PeftModel as peft's ``adapter_model.safetensors``; returns their count.

    peft (0.19) picks an adapter's tensors by the names of its LoRA modules, and inside FSDP 1's wrappers those
    names carry ``_fsdp_wrapped_module.``, so ``save_pretrained`` writes an empty adapter. The full state dict's
    names are clean; the LoRA ones get peft's saved form (the adapter name dropped: ``lora_A.default.weight`` ->
    ``lora_A.weight``), the same file a 1-process run writes.
    """
    from safetensors.torch import save_file

    names = {_clean_name(n) for n, p in model.named_parameters() if p.requires_grad and ".lora_" in n}
    adapters = list(getattr(model, "peft_config", {}) or ["default"])
    tensors = {}
    for name in names:
        if name not in state_dict:
            raise RuntimeError(f"LoRA weight {name} is missing from the gathered FSDP state dict")
        key = name
        for adapter in adapters:
            key = key.replace(f".{adapter}.", ".")
        tensors[key] = state_dict[name].detach().cpu().contiguous()
    save_file(tensors, os.path.join(adapter_dir, "adapter_model.safetensors"), metadata={"format": "pt"})
    return len(tensors)


class VmedTrainer(Trainer):
    """``transformers.Trainer`` with trainable-only checkpoints, a projector learning rate and known lengths."""

    def __init__(self, *args: Any, projector_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr

    def create_accelerator_and_postprocess(self) -> None:
        cpu_fsdp_environment()
        super().create_accelerator_and_postprocess()
        if enable_fsdp_on_cpu(self.accelerator):
            self.is_fsdp_enabled = True

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length" and hasattr(dataset, "lengths"):
            return LengthGroupedSampler(dataset.lengths, self.args.per_device_train_batch_size, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        if self.optimizer is not None or self.projector_lr is None:
            return super().create_optimizer(model)
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups = []
        for is_projector in (False, True):
            for decayed in (True, False):
                params = [
                    p
                    for n, p in opt_model.named_parameters()
                    if p.requires_grad and ("multi_modal_projector" in n) == is_projector and (n in decay) == decayed
                ]
                if not params:
                    continue
                group: dict[str, Any] = {"params": params, "weight_decay": self.args.weight_decay if decayed else 0.0}
                if is_projector:
                    group["lr"] = self.projector_lr
                groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        if not self.is_fsdp_enabled:
            return super().save_model(output_dir, _internal_call)
        state_dict = fsdp_state_dict(self.model, trainable_only=True)  # all ranks; rank 0 writes
        if self.args.should_save:
            self._save(output_dir, state_dict=state_dict)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """Under FSDP: the full optimizer state (of the trainable parameters) and the scheduler, as ``optimizer.pt``
        and ``scheduler.pt`` (accelerate's FSDP optimizer save crashes on a CPU launch; this is one code path for both)."""
        if not self.is_fsdp_enabled:
            return super()._save_optimizer_and_scheduler(output_dir)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=torch.cuda.is_available())
        optimizer_state = get_optimizer_state_dict(self.model, self.optimizer, options=options)
        if self.args.should_save:
            torch.save(optimizer_state, os.path.join(output_dir, "optimizer.pt"))
            torch.save(self.lr_scheduler.state_dict(), os.path.join(output_dir, "scheduler.pt"))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        if not self.is_fsdp_enabled or checkpoint is None:
            return super()._load_optimizer_and_scheduler(checkpoint)
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        state = torch.load(os.path.join(checkpoint, "optimizer.pt"), map_location="cpu", weights_only=True)
        set_optimizer_state_dict(self.model, self.optimizer, state, options=StateDictOptions(full_state_dict=True))
        self.lr_scheduler.load_state_dict(
            torch.load(os.path.join(checkpoint, "scheduler.pt"), map_location="cpu", weights_only=True))

    def _trainable_names(self) -> set[str]:
        model = self.accelerator.unwrap_model(self.model)
        return {_clean_name(n) for n, p in model.named_parameters() if p.requires_grad}

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        from safetensors.torch import save_file

        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        names = self._trainable_names()
        if state_dict is None:
            state_dict = self.accelerator.unwrap_model(self.model).state_dict()
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if k in names}
        save_file(tensors, os.path.join(output_dir, TRAINABLE_FILE), metadata={"format": "pt"})

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        from safetensors.torch import load_file

        path = os.path.join(resume_from_checkpoint, TRAINABLE_FILE)
        if not os.path.isfile(path):
            raise ConfigError(f"checkpoint {resume_from_checkpoint} has no {TRAINABLE_FILE}; it was not written by vmed train")
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        saved = load_file(path)
        expected = self._trainable_names()
        if set(saved) != expected:
            missing = sorted(expected - set(saved))[:3]
            extra = sorted(set(saved) - expected)[:3]
            raise ConfigError(
                f"checkpoint {resume_from_checkpoint} does not match this stage's trainable parameters "
                f"(missing e.g. {missing}, unexpected e.g. {extra}); was it made with another config?"
            )
        if self.is_fsdp_enabled and model is not None and model is not target:  # loaded after wrapping: full names
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(model, saved, options=StateDictOptions(full_state_dict=True, strict=False))
            return
        target.load_state_dict(saved, strict=False)
