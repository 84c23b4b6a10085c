"""One training stage, the same skeleton for all three: check -> build -> policy -> data -> train -> save.

Stage 1 (alignment) builds the base from ``model`` and trains the projector on describe records.
Stage 2 (instruction tuning) rebuilds the base a stage-1 run names, loads its projector, and adds LoRA
on the language model. Stage 3 (downstream) starts from a stage-2 run: it merges that adapter into the
base and adds a fresh LoRA (``lora.previous=merge``, the default) or keeps training it (``continue``).
Which parts train is the config's ``policy``; it is logged at start with trainable-parameter counts.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vmed.config import TrainConfig, to_dict
from vmed.errors import ConfigError

__all__ = ["StageResult", "run_stage", "check_input", "build_stage_model", "load_records"]

log = logging.getLogger("vmed.train")

EXPECTED_PARENT = {2: (1,), 3: (2,)}
"""Which stage's output each stage starts from."""


@dataclass
class StageResult:
    """What ``run_stage`` did: the run directory, whether it finished, and the final metrics."""

    run_dir: Path
    completed: bool
    metrics: dict[str, Any]
    checkpoint: Path | None = None


def _is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (or a single process): the one that logs and writes run files."""
    return os.environ.get("RANK", "0") == "0"


def _echo(msg: str) -> None:
    if _is_main_process():
        print(msg, flush=True)


def check_input(cfg: TrainConfig) -> dict[str, Any] | None:
    """Validate the stage's input before anything heavy: returns the input run's manifest (stages 2/3)."""
    from vmed.model.runs import base_spec, read_manifest, same_base

    if cfg.stage == 1:
        if cfg.init_from:
            raise ConfigError("stage 1 starts from a base model (model.*), not from a run; remove init_from")
        base_spec(cfg.model)
        parent = None
    else:
        if not cfg.init_from:
            raise ConfigError(
                f"stage {cfg.stage} needs init_from: the run directory of stage {EXPECTED_PARENT[cfg.stage][0]} "
                f"(e.g. init_from=runs/stage{EXPECTED_PARENT[cfg.stage][0]})"
            )
        parent = read_manifest(cfg.init_from, what=f"init_from")
        if parent.get("status") != "complete":
            raise ConfigError(
                f"init_from {cfg.init_from} did not finish (status {parent.get('status')!r}); resume it with its own config first"
            )
        if parent.get("stage") not in EXPECTED_PARENT[cfg.stage]:
            raise ConfigError(
                f"stage {cfg.stage} starts from a stage-{EXPECTED_PARENT[cfg.stage][0]} run, but {cfg.init_from} "
                f"is a stage-{parent.get('stage')} run (its {cfg.init_from}/run_manifest.json says so)"
            )
        if cfg.model.is_set():
            wanted = base_spec(cfg.model)
            if not same_base(wanted, parent["base"]):
                raise ConfigError(
                    f"init_from {cfg.init_from} was made from a different base model: its manifest says "
                    f"{ {k: v for k, v in parent['base'].items() if k != 'fingerprint'} }, this config asks for {wanted}. "
                    "Point init_from at a run of this base, or drop the model section to use the run's base"
                )
    if not cfg.data.train:
        raise ConfigError("data.train is not set: give the training JSONL (e.g. data.train=phantoms/train.jsonl)")
    for key in ("train", "validation"):
        value = getattr(cfg.data, key)
        if value and not Path(value).is_file():
            raise ConfigError(f"data.{key}: file not found: {value}")
    return parent


def _dtype(cfg: TrainConfig) -> Any:
    """dtype of the frozen base weights: bf16/fp16 on a GPU under that precision (an 8B base in fp32 needs 32 GB),
    else float32. Trainable parameters are kept in float32 either way (see ``_trainable_to_fp32``)."""
    import torch

    if not torch.cuda.is_available():
        return None
    if cfg.runtime.quantization == "4bit":
        return torch.bfloat16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.runtime.precision)


def _trainable_to_fp32(model: Any) -> None:
    """Mixed precision keeps what trains in float32 (autocast computes in bf16/fp16); frozen weights stay as loaded."""
    import torch

    for p in model.parameters():
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.float()


def build_stage_model(cfg: TrainConfig, parent: dict[str, Any] | None) -> tuple[Any, Any, dict[str, Any], list[Path]]:
    """The model to train, before the policy: returns (model, processor, base entry, adapters merged so far).

    Stage 1: the base. Stage 2: base + stage-1 projector. Stage 3: base + stage-2 projector with the
    stage-2 adapter merged (``lora.previous=merge``) or loaded trainable (``continue``).
    """
    from vmed.model.runs import assemble_run, base_spec, build_base, fingerprint

    if parent is None:
        base = base_spec(cfg.model)
        model, processor = build_base(base, dtype=_dtype(cfg))
        base["fingerprint"] = fingerprint(model)
        return model, processor, base, []
    base = dict(parent["base"])
    model, processor = build_base(base, dtype=_dtype(cfg))
    fp = fingerprint(model)
    if base.get("fingerprint") and base["fingerprint"] != fp:
        raise ConfigError(
            f"init_from {cfg.init_from}: the base model rebuilt from its manifest ({base.get('kind')} "
            f"{base.get('preset') or base.get('path') or base.get('lm')}) differs from the one that run used "
            "(weight fingerprints differ); the base's files or seed changed since"
        )
    last = "merge" if cfg.lora.previous == "merge" else "trainable"
    model, merged = assemble_run(model, Path(cfg.init_from), parent, last_adapter=last)
    return model, processor, base, merged


def load_records(path: str, kind: str, seed: int) -> list[Any]:
    """The training records of ``path``: as they are (dialogue), or turned into describe / instruction records."""
    from vmed.data.schema import read_jsonl

    records = read_jsonl(path)
    if kind == "describe":
        from vmed.data.records import describe_records

        records = describe_records(records)
        if not records:
            raise ConfigError(f"data.train {path}: no record has a summary, so there are no describe records for stage 1")
    elif kind == "instruction":
        from vmed.data.records import instruction_records

        records = instruction_records(records, seed=seed)
    if not records:
        raise ConfigError(f"{path}: no training records")
    return records


def _data_hashes(cfg: TrainConfig) -> dict[str, str]:
    from vmed.model.runs import sha256_file

    return {str(Path(p)): sha256_file(p) for p in (cfg.data.train, cfg.data.validation) if p}


def _prepare_output(cfg: TrainConfig) -> Path | None:
    """Create the run directory; find the checkpoint to resume from (incomplete ones are deleted)."""
    from vmed.training.checkpoint import latest_complete_checkpoint, remove_incomplete_checkpoints

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.runtime.resume == "never":
        return None
    if cfg.runtime.resume != "auto":
        ckpt = Path(cfg.runtime.resume)
        if not (ckpt / "COMPLETE").is_file():
            raise ConfigError(f"runtime.resume={ckpt}: not a complete vmed checkpoint (no COMPLETE marker)")
        return ckpt
    if _is_main_process():  # every rank then picks the same marked checkpoint
        for p in remove_incomplete_checkpoints(out):
            _echo(f"removed incomplete checkpoint {p} (written when the run was interrupted)")
    return latest_complete_checkpoint(out)


def run_stage(cfg: TrainConfig) -> StageResult:
    """Run one stage end to end; returns when training finished or was stopped by SIGTERM (then resumable)."""
    import torch
    from transformers import set_seed

    from vmed.data.collate import DialogueCollator, DialogueDataset
    from vmed.model import num_image_tokens
    from vmed.training.checkpoint import CompletionMarker, LossLog, SigtermSave
    from vmed.training.policy import apply_policy, count_parameters, format_policy
    from vmed.model.runs import (
        ADAPTER_DIR,
        MERGED_DIR,
        PROJECTOR_FILE,
        WEIGHTS_FILE,
        git_revision,
        library_versions,
        save_projector,
        save_trained_weights,
        trained_weight_names,
        write_manifest,
        write_model_card,
    )
    from vmed.training.trainer import VmedTrainer, check_precision, training_arguments

    started = time.time()
    check_precision(cfg)
    parent = check_input(cfg)
    resume_from = _prepare_output(cfg)
    set_seed(cfg.runtime.seed)

    model, processor, base, merged = build_stage_model(cfg, parent)
    if cfg.runtime.quantization == "4bit":
        from vmed.training.quantize import quantize_lm_4bit

        model = quantize_lm_4bit(model.to("cuda"))
    if cfg.runtime.attn_implementation != "sdpa" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(cfg.runtime.attn_implementation)
    if _is_main_process():
        write_manifest(cfg.output_dir, {"format": "vmed-run/1", "status": "running", "stage": cfg.stage, "base": base,
                                        "config": to_dict(cfg)})
    model = apply_policy(model, cfg.policy, cfg.lora)
    _trainable_to_fp32(model)
    if cfg.runtime.gradient_checkpointing and cfg.policy.llm != "full":
        model.enable_input_require_grads()
    counts = count_parameters(model)
    _echo(f"stage {cfg.stage}: {cfg.output_dir}\n" + format_policy(cfg.policy, counts))

    n_img = num_image_tokens(model.config if not hasattr(model, "peft_config") else model.get_base_model().config)
    train_records = load_records(cfg.data.train, cfg.data.records, cfg.runtime.seed)
    # the summary turn ends dialogue records; describe / instruction records already are single summary or question turns
    seq = {"num_image_tokens": n_img, "max_length": cfg.data.max_length,
           "summary_turn": cfg.data.summary_turn if cfg.data.records == "dialogue" else "none"}
    train_ds = DialogueDataset(train_records, cfg.data.train, processor, **seq)
    eval_ds = None
    if cfg.data.validation:
        eval_records = load_records(cfg.data.validation, cfg.data.records, cfg.runtime.seed)
        eval_ds = DialogueDataset(eval_records, cfg.data.validation, processor, **seq)
    _echo(
        f"data: {len(train_ds)} training sequences ({cfg.data.records} records from {cfg.data.train}), "
        f"mean length {sum(train_ds.lengths) / len(train_ds):.1f} tokens, {train_ds.summary_turns} ending with the summary turn"
        + (f", {train_ds.dropped_turns} turns dropped by max_length" if train_ds.dropped_turns else "")
        + (f"; {len(eval_ds)} validation sequences" if eval_ds is not None else "")
    )

    sigterm = SigtermSave()
    trainer = VmedTrainer(
        model=model,
        args=training_arguments(cfg, has_eval=eval_ds is not None),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=DialogueCollator(pad_token_id=processor.tokenizer.pad_token_id),
        callbacks=[CompletionMarker(), sigterm, LossLog(Path(cfg.output_dir) / "train_log.jsonl")],
        projector_lr=cfg.optim.projector_lr,
    )
    if resume_from is not None:
        _echo(f"resuming from {resume_from}")
    train_out = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    if sigterm.stopped:
        ckpt = Path(cfg.output_dir) / f"checkpoint-{trainer.state.global_step}"
        _echo(f"SIGTERM: saved {ckpt} at step {trainer.state.global_step}; run the same command again to resume")
        if trainer.args.should_save:
            write_manifest(cfg.output_dir, {"format": "vmed-run/1", "status": "interrupted", "stage": cfg.stage,
                                            "base": base, "config": to_dict(cfg), "checkpoint": str(ckpt)})
        return StageResult(Path(cfg.output_dir), False, {}, ckpt)

    metrics: dict[str, Any] = {
        "train_loss": float(train_out.training_loss),
        "global_step": int(trainer.state.global_step),
        "epochs": float(trainer.state.epoch or 0.0),
        "train_sequences": len(train_ds),
        "trainable_parameters": sum(c.trainable for c in counts.values()),
    }
    if eval_ds is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])

    state_dict = None  # under DeepSpeed / FSDP the full weights are gathered on every rank, then rank 0 saves
    if trainer.is_deepspeed_enabled:
        state_dict = trainer.accelerator.get_state_dict(trainer.deepspeed)
    elif trainer.is_fsdp_enabled:
        state_dict = trainer.accelerator.get_state_dict(trainer.model)
    if not trainer.args.should_save:
        return StageResult(Path(cfg.output_dir), True, metrics)
    out = Path(cfg.output_dir)
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    save_projector(unwrapped, out / PROJECTOR_FILE, state_dict)
    processor.save_pretrained(str(out))
    carried = trained_weight_names(cfg.init_from, parent) if parent is not None else []  # earlier stages' full weights
    weights_rel = WEIGHTS_FILE if save_trained_weights(unwrapped, out / WEIGHTS_FILE, state_dict, carried) else None
    adapter_rel = None
    if hasattr(unwrapped, "peft_config"):
        adapter_rel = ADAPTER_DIR
        unwrapped.save_pretrained(str(out / ADAPTER_DIR), state_dict=state_dict)
    merged_rel = []
    for i, src in enumerate(merged):
        rel = f"{MERGED_DIR}/{i:02d}"
        if (out / rel).resolve() != src.resolve():
            shutil.rmtree(out / rel, ignore_errors=True)
            shutil.copytree(src, out / rel)
        merged_rel.append(rel)
    metrics["wall_seconds"] = round(time.time() - started, 1)
    manifest = {
        "format": "vmed-run/1",
        "status": "complete",
        "stage": cfg.stage,
        "base": base,
        "parent": None if parent is None else {"run_dir": str(Path(cfg.init_from).resolve()), "stage": parent["stage"]},
        "projector": PROJECTOR_FILE,
        "adapter": adapter_rel,
        "weights": weights_rel,
        "merged_adapters": merged_rel,
        "policy": to_dict(cfg.policy),
        "parameters": {k: {"total": v.total, "trainable": v.trainable} for k, v in counts.items()},
        "num_image_tokens": n_img,
        "config": to_dict(cfg),
        "data_sha256": _data_hashes(cfg),
        "versions": library_versions(),
        "git_revision": git_revision(),
        "torch_device": "cuda" if torch.cuda.is_available() else "cpu",
        "world_size": trainer.args.world_size,
        "metrics": metrics,
    }
    write_manifest(out, manifest)
    write_model_card(out, manifest)
    _echo(f"stage {cfg.stage} done: {out} (train loss {metrics['train_loss']:.4f}"
          + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "") + ")")
    return StageResult(out, True, metrics)
