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

import importlib.util
import os
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from vmed.config import TrainConfig
from vmed.data.collate import LengthGroupedSampler
from vmed.errors import ConfigError

__all__ = ["VmedTrainer", "TRAINABLE_FILE", "training_arguments", "check_precision"]

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


def _report_to(choice: str) -> list[str]:
    if choice == "none":
        return []
    has_tb = importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None
    if choice == "tensorboard" and not has_tb:
        raise ConfigError("runtime.report_to=tensorboard but tensorboard is not installed: pip install tensorboard")
    return ["tensorboard"] if has_tb else []


def training_arguments(cfg: TrainConfig, *, has_eval: bool) -> TrainingArguments:
    """TrainingArguments from a stage config (the Trainer's output_dir is the run directory)."""
    o, rt = cfg.optim, cfg.runtime
    eval_every = rt.eval_steps if (has_eval and rt.eval_steps > 0) else 0
    return TrainingArguments(
        output_dir=cfg.output_dir,
        per_device_train_batch_size=o.batch_size,
        per_device_eval_batch_size=o.batch_size,
        gradient_accumulation_steps=o.grad_accum,
        learning_rate=o.lr,
        weight_decay=o.weight_decay,
        warmup_steps=o.warmup_ratio,  # a float below 1 is a ratio of the total steps (transformers 5)
        lr_scheduler_type=o.scheduler,
        num_train_epochs=o.epochs,
        max_steps=o.max_steps,
        max_grad_norm=o.max_grad_norm,
        bf16=rt.precision == "bf16",
        fp16=rt.precision == "fp16",
        use_cpu=not torch.cuda.is_available(),
        gradient_checkpointing=rt.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if rt.gradient_checkpointing else None,
        seed=rt.seed,
        data_seed=rt.seed,
        logging_steps=rt.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        save_strategy="steps" if rt.save_steps > 0 else "no",
        save_steps=rt.save_steps if rt.save_steps > 0 else 500,
        save_total_limit=rt.save_total_limit,
        report_to=_report_to(rt.report_to),
        disable_tqdm=not rt.progress_bar,
        remove_unused_columns=False,
        dataloader_num_workers=cfg.data.num_workers,
        train_sampling_strategy="group_by_length" if cfg.data.group_by_length else "random",
        ddp_find_unused_parameters=False,
        label_names=["labels"],
    )


class VmedTrainer(Trainer):
    """``transformers.Trainer`` with trainable-only checkpoints, a projector learning rate and known lengths."""

    def __init__(self, *args: Any, projector_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr

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

    def _trainable_names(self) -> set[str]:
        model = self.accelerator.unwrap_model(self.model)
        return {n for n, p in model.named_parameters() if p.requires_grad}

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
        target.load_state_dict(saved, strict=False)
