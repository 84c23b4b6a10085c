"""One training stage, the same recipe for all three, read top to bottom in ``run_stage``:
setup -> model -> data -> train -> save.

Stage 1 (alignment) builds the base from ``model`` and trains the projector on describe records.
Stage 2 (instruction tuning) rebuilds the base a stage-1 run names, loads its projector, and adds LoRA
on the language model. Stage 3 (downstream) starts from a stage-2 run: it merges that adapter into the
base and adds a fresh LoRA (``lora.previous=merge``, the default) or keeps training it (``continue``).
Which parts train is the config's ``policy``; it is logged at start with trainable-parameter counts.

Each step owns its rules: ``setup`` checks every input (config, input run, data files, images, the checkpoint
to resume) before anything heavy and marks the run ``running``; ``setup_model`` builds what trains;
``setup_data`` encodes the records; ``train`` runs the HF Trainer; ``save`` writes the run's files and its
``complete`` manifest. A failure after ``setup`` marks the manifest ``failed`` with the reason.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vmed._io import RUN_FORMAT
from vmed.config import TrainConfig, to_dict
from vmed.errors import ConfigError

# lazy: torch, transformers and the model, data and trainer modules are imported inside the step functions that use
# them, so importing this module stays light (about 0.16 s; torch is not loaded)

__all__ = ["StageResult", "run_stage", "check_input", "build_stage_model", "parent_processor", "load_records"]

EXPECTED_PARENT = {2: (1,), 3: (2,)}
"""Which stage's output each stage starts from."""



@dataclass
class StageResult:
    """What ``run_stage`` did: the run directory, whether it finished, and the final metrics."""

    run_dir: Path
    completed: bool
    metrics: dict[str, Any]
    checkpoint: Path | None = None


@dataclass
class _Run:
    """What ``setup`` settled: the inputs, the checkpoint to resume from, the records that passed the image check."""

    cfg: TrainConfig
    out: Path
    parent: dict[str, Any] | None
    resume_from: Path | None
    args: Any  # transformers.TrainingArguments
    train_records: list[Any]
    eval_records: list[Any] | None
    preflight: list[dict[str, Any]]
    started: float = field(default_factory=time.time)
    trainer: Any = None  # set by ``train``, read when a failure is recorded

    def manifest(self, status: str, **extra: Any) -> dict[str, Any]:
        """The manifest fields every state shares, plus ``extra``."""
        base = self.parent["base"] if self.parent is not None else None
        return {"format": RUN_FORMAT, "status": status, "stage": self.cfg.stage, "base": base,
                "config": to_dict(self.cfg), "preflight": self.preflight, **extra}


@dataclass
class _Model:
    """What ``setup_model`` built: the model to train, its processor, base entry, merged adapters, counts."""

    model: Any
    processor: Any
    base: dict[str, Any]
    merged: list[Path]
    counts: dict[str, Any]
    num_image_tokens: int


def _is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (or a single process): the one that logs and writes run files."""
    return os.environ.get("RANK", "0") == "0"


def _echo(msg: str) -> None:
    if _is_main_process():
        print(msg, flush=True)


def run_stage(cfg: TrainConfig) -> StageResult:
    """Run one stage end to end; returns when training finished or was stopped by SIGTERM (then resumable)."""
    run = setup(cfg)
    try:
        m = setup_model(run)
        train_ds, eval_ds = setup_data(run, m)
        train_out, stopped = train(run, m, train_ds, eval_ds)
        if stopped:
            return save_interrupted(run, m)
        return save(run, m, train_ds, eval_ds, train_out)
    except BaseException as e:  # record why the run stopped (then let the error go on to the CLI's boundary)
        _mark_failed(run, e)
        raise


# --------------------------------------------------------------------------- setup


def setup(cfg: TrainConfig) -> _Run:
    """Check everything that can be checked without the model, pick the checkpoint, mark the run ``running``."""
    from transformers import set_seed

    from vmed.training.trainer import check_precision, follow_runtime_precision, training_arguments

    check_precision(cfg)
    parent = check_input(cfg)
    note = follow_runtime_precision(cfg)
    if note:
        _echo(note)
    args = training_arguments(cfg, has_eval=bool(cfg.data.validation))
    resume_from = _prepare_output(cfg)
    train_records, report = _checked_records(cfg, cfg.data.train, "data.train")
    preflight = [report]
    eval_records = None
    if cfg.data.validation:
        eval_records, eval_report = _checked_records(cfg, cfg.data.validation, "data.validation")
        preflight.append(eval_report)
    set_seed(cfg.runtime.seed)
    run = _Run(cfg, Path(cfg.output_dir), parent, resume_from, args, train_records, eval_records, preflight)
    if _is_main_process():
        from vmed.model.runs import write_manifest

        write_manifest(run.out, run.manifest("running"))
    return run


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
        parent = read_manifest(cfg.init_from, what="init_from")
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


def _prepare_output(cfg: TrainConfig) -> Path | None:
    """Create the run directory; find the checkpoint to resume from, verified (damaged ones are reported and
    removed, incomplete ones removed, and the previous complete one is used)."""
    from vmed.training.checkpoint import pick_checkpoint, remove_incomplete_checkpoints, verify_checkpoint

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.runtime.resume == "never":
        return None
    if cfg.runtime.resume != "auto":
        ckpt = Path(cfg.runtime.resume)
        reason = verify_checkpoint(ckpt)
        if reason is not None:
            raise ConfigError(f"runtime.resume={ckpt}: cannot resume from it: {reason}. Pick another checkpoint-N, "
                              "or runtime.resume=auto for the newest one that is intact")
        return ckpt
    ckpt, damaged = pick_checkpoint(out)  # every rank reads the same files, so every rank picks the same one
    if _is_main_process():
        for p in remove_incomplete_checkpoints(out):
            _echo(f"removed incomplete checkpoint {p} (written when the run was interrupted)")
        for p, reason in damaged:
            _echo(f"checkpoint {p} is damaged ({reason}); removed it, "
                  + (f"falling back to {ckpt}" if ckpt else "and no intact checkpoint is left: starting over"))
            shutil.rmtree(p, ignore_errors=True)
    return ckpt


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


def _checked_records(cfg: TrainConfig, path: str, key: str) -> tuple[list[Any], dict[str, Any]]:
    """The records of ``path`` whose images passed the pre-flight check, and the check's report."""
    from vmed.training.preflight import preflight_images

    records = load_records(path, cfg.data.records, cfg.runtime.seed)
    kept, report = preflight_images(records, path, max_bad=cfg.data.max_bad_images, key=key,
                                    progress=cfg.runtime.progress_bar and _is_main_process())
    _echo(report.summary())
    if not kept:
        raise ConfigError(f"{key} {path}: no record is left after the image check")
    return kept, report.to_dict()


# --------------------------------------------------------------------------- model


def setup_model(run: _Run) -> _Model:
    """The model to train: base (+ earlier stages) -> 4-bit (QLoRA) -> attention kernel -> policy, logged with counts."""
    from vmed.model import num_image_tokens
    from vmed.training.policy import apply_policy, count_parameters, format_policy
    from vmed.training.trainer import model_build_context

    cfg = run.cfg
    with model_build_context():
        model, processor, base, merged = build_stage_model(cfg, run.parent)
    if cfg.runtime.quantization == "4bit":
        from vmed.training.quantize import load_4bit

        model = load_4bit(model, gradient_checkpointing=cfg.runtime.gradient_checkpointing)
    if cfg.runtime.attn_implementation != "sdpa" and hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(cfg.runtime.attn_implementation)
    model = apply_policy(model, cfg.policy, cfg.lora)
    _trainable_to_fp32(model)
    if cfg.runtime.gradient_checkpointing and cfg.policy.llm != "full":
        model.enable_input_require_grads()
    counts = count_parameters(model)
    _echo(f"stage {cfg.stage}: {cfg.output_dir}\n" + format_policy(cfg.policy, counts))
    n_img = num_image_tokens(model.config if not hasattr(model, "peft_config") else model.get_base_model().config)
    return _Model(model, processor, base, merged, counts, n_img)


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
    from vmed.model.runs import assemble_run, base_spec, build_base, check_base_fingerprint, fingerprint

    if parent is None:
        base = base_spec(cfg.model)
        model, processor = build_base(base, dtype=_dtype(cfg))
        base["fingerprint"] = fingerprint(model)
        return model, processor, base, []
    assert cfg.init_from is not None  # the parent manifest was read from it
    base = dict(parent["base"])
    model, processor = build_base(base, dtype=_dtype(cfg))
    check_base_fingerprint(model, base, f"init_from {cfg.init_from}")
    last = "merge" if cfg.lora.previous == "merge" else "trainable"
    model, merged = assemble_run(model, Path(cfg.init_from), parent, last_adapter=last)
    return model, parent_processor(Path(cfg.init_from), processor, model), base, merged


def parent_processor(run_dir: str | os.PathLike, fresh: Any, model: Any) -> Any:
    """The processor of the input run, so that a stage sees images (and text) as its parent was trained on them.

    A base rebuilt today gets today's defaults (pad to square); a parent saved before that change centre-crops,
    and its projector learned from centre-cropped images. So the parent's saved processor is used, never the
    fresh one, and the model's serving fields (``image_aspect_ratio``) follow its ``do_pad``. A difference is logged.
    """
    from transformers import AutoProcessor

    from vmed.model.build import serving_config

    processor = AutoProcessor.from_pretrained(str(run_dir))
    pad = bool(getattr(processor.image_processor, "do_pad", False))
    config = model.get_base_model().config if hasattr(model, "peft_config") else model.config
    for key, value in serving_config(pad).items():
        setattr(config, key, value)
    if pad != bool(getattr(fresh.image_processor, "do_pad", False)):
        _echo(f"image preprocessing kept from {run_dir}: " + ("pad to square" if pad else "resize + centre crop (do_pad false)")
              + "; a base built now would " + ("centre-crop" if pad else "pad to square"))
    return processor


# --------------------------------------------------------------------------- data


def setup_data(run: _Run, m: _Model) -> tuple[Any, Any]:
    """The encoded training (and validation) sequences of the records that passed the image check."""
    from vmed.data.collate import DialogueDataset

    cfg = run.cfg
    # the summary turn ends dialogue records; describe / instruction records already are single summary or question turns
    seq = {"num_image_tokens": m.num_image_tokens, "max_length": cfg.data.max_length,
           "summary_turn": cfg.data.summary_turn if cfg.data.records == "dialogue" else "none"}
    train_ds = DialogueDataset(run.train_records, cfg.data.train, m.processor, **seq)
    eval_ds = None
    if run.eval_records is not None:
        eval_ds = DialogueDataset(run.eval_records, cfg.data.validation, m.processor, **seq)
    _echo(
        f"data: {len(train_ds)} training sequences ({cfg.data.records} records from {cfg.data.train}), "
        f"mean length {sum(train_ds.lengths) / len(train_ds):.1f} tokens, {train_ds.summary_turns} ending with the summary turn"
        + (f", {train_ds.dropped_turns} turns dropped by max_length" if train_ds.dropped_turns else "")
        + (f"; {len(eval_ds)} validation sequences" if eval_ds is not None else "")
    )
    return train_ds, eval_ds


# --------------------------------------------------------------------------- train


def train(run: _Run, m: _Model, train_ds: Any, eval_ds: Any) -> tuple[Any, bool]:
    """The HF Trainer over the datasets, resumed from ``run.resume_from``: returns (TrainOutput, stopped by SIGTERM)."""
    from vmed.data.collate import DialogueCollator
    from vmed.training.checkpoint import CompletionMarker, LossLog, ResumeMarker, SigtermSave
    from vmed.training.trainer import VmedTrainer

    sigterm = SigtermSave()
    run.trainer = VmedTrainer(
        model=m.model,
        args=run.args,
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        data_collator=DialogueCollator(pad_token_id=m.processor.tokenizer.pad_token_id),
        callbacks=[CompletionMarker(), sigterm, LossLog(run.out / "train_log.jsonl"), ResumeMarker()],
        projector_lr=run.cfg.optim.projector_lr,
    )
    if run.resume_from is not None:
        _echo(f"resuming from {run.resume_from}")
    train_out = run.trainer.train(resume_from_checkpoint=str(run.resume_from) if run.resume_from else None)
    return train_out, sigterm.stopped


# --------------------------------------------------------------------------- save


def save_interrupted(run: _Run, m: _Model) -> StageResult:
    """SIGTERM: the Trainer saved a checkpoint at this step; the manifest says ``interrupted`` and names it."""
    from vmed.model.runs import write_manifest

    step = run.trainer.state.global_step
    ckpt = run.out / f"checkpoint-{step}"
    _echo(f"SIGTERM: saved {ckpt} at step {step}; run the same command again to resume")
    if run.trainer.args.should_save:
        write_manifest(run.out, run.manifest("interrupted", base=m.base, checkpoint=str(ckpt)))
    return StageResult(run.out, False, {}, ckpt)


def save(run: _Run, m: _Model, train_ds: Any, eval_ds: Any, train_out: Any) -> StageResult:
    """Final metrics, then (main process) the run's weights and its ``complete`` manifest and model card."""
    from vmed.model.runs import write_manifest, write_model_card

    metrics = _final_metrics(run, m, train_ds, eval_ds, train_out)
    state_dict = _gathered_state_dict(run.trainer)  # every rank takes part in the gather; then rank 0 writes
    if not run.trainer.args.should_save:
        return StageResult(run.out, True, metrics)
    files = _save_weights(run, m, state_dict)
    metrics["wall_seconds"] = round(time.time() - run.started, 1)
    manifest = _complete_manifest(run, m, files, metrics)
    write_manifest(run.out, manifest)
    write_model_card(run.out, manifest)
    _echo(f"stage {run.cfg.stage} done: {run.out} (train loss {metrics['train_loss']:.4f} over "
          f"{metrics['train_loss_steps']} steps" + (f", eval loss {metrics['eval_loss']:.4f}" if "eval_loss" in metrics else "") + ")")
    return StageResult(run.out, True, metrics)


def _final_metrics(run: _Run, m: _Model, train_ds: Any, eval_ds: Any, train_out: Any) -> dict[str, Any]:
    """Train loss over every step of the run (resumes included: ``mean_train_loss``), steps, epochs, eval loss."""
    from vmed.training.checkpoint import mean_train_loss

    state = run.trainer.state
    loss, covered = mean_train_loss(state.log_history, state.global_step, train_out.training_loss)
    metrics: dict[str, Any] = {
        "train_loss": float(loss if loss is not None else train_out.training_loss),
        "train_loss_steps": covered,
        "global_step": int(state.global_step),
        "epochs": float(state.epoch or 0.0),
        "train_sequences": len(train_ds),
        "trainable_parameters": sum(c.trainable for c in m.counts.values()),
    }
    if eval_ds is not None:
        metrics["eval_loss"] = float(run.trainer.evaluate()["eval_loss"])
    return metrics


def _gathered_state_dict(trainer: Any) -> dict[str, Any] | None:
    """Under DeepSpeed / FSDP the full weights, gathered on every rank (a collective); None otherwise."""
    if trainer.is_deepspeed_enabled:
        return trainer.accelerator.get_state_dict(trainer.deepspeed)
    if trainer.is_fsdp_enabled:
        from vmed.training.trainer import fsdp_state_dict

        return fsdp_state_dict(trainer.model, trainable_only=False)
    return None


def _save_weights(run: _Run, m: _Model, state_dict: dict[str, Any] | None) -> dict[str, Any]:
    """Projector, processor, trained full weights, adapter and the merged earlier adapters; returns their paths."""
    from vmed.model.runs import (
        ADAPTER_DIR,
        MERGED_DIR,
        PROJECTOR_FILE,
        WEIGHTS_FILE,
        save_projector,
        save_trained_weights,
        trained_weight_names,
    )

    out, cfg = run.out, run.cfg
    unwrapped = run.trainer.accelerator.unwrap_model(run.trainer.model)
    save_projector(unwrapped, out / PROJECTOR_FILE, state_dict)
    m.processor.save_pretrained(str(out))
    carried = trained_weight_names(cfg.init_from, run.parent) if run.parent is not None else []  # earlier stages' weights
    weights = WEIGHTS_FILE if save_trained_weights(unwrapped, out / WEIGHTS_FILE, state_dict, carried) else None
    adapter = None
    if hasattr(unwrapped, "peft_config"):
        adapter = ADAPTER_DIR
        unwrapped.save_pretrained(str(out / ADAPTER_DIR), state_dict=state_dict)
        if run.trainer.is_fsdp_enabled:  # peft finds no LoRA layer by name inside FSDP's wrappers: write its tensors
            from vmed.training.trainer import save_fsdp_adapter_weights

            assert state_dict is not None  # _gathered_state_dict returns the gathered dict whenever FSDP is on
            save_fsdp_adapter_weights(unwrapped, state_dict, out / ADAPTER_DIR)
    merged = []
    for i, src in enumerate(m.merged):
        rel = f"{MERGED_DIR}/{i:02d}"
        if (out / rel).resolve() != src.resolve():
            shutil.rmtree(out / rel, ignore_errors=True)
            shutil.copytree(src, out / rel)
        merged.append(rel)
    return {"projector": PROJECTOR_FILE, "adapter": adapter, "weights": weights, "merged_adapters": merged}


def _complete_manifest(run: _Run, m: _Model, files: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any]:
    import torch

    from vmed._io import sha256_file
    from vmed.model.runs import git_revision, library_versions

    cfg, parent = run.cfg, run.parent
    return run.manifest(
        "complete",
        base=m.base,
        parent=None if parent is None else {"run_dir": str(Path(cfg.init_from).resolve()), "stage": parent["stage"]},
        **files,
        policy=to_dict(cfg.policy),
        parameters={k: {"total": v.total, "trainable": v.trainable} for k, v in m.counts.items()},
        num_image_tokens=m.num_image_tokens,
        data_sha256={str(Path(p)): sha256_file(p) for p in (cfg.data.train, cfg.data.validation) if p},
        versions=library_versions(),
        git_revision=git_revision(),
        torch_device="cuda" if torch.cuda.is_available() else "cpu",
        world_size=run.trainer.args.world_size,
        distributed=_distributed_kind(run.trainer),
        metrics=metrics,
    )


def _distributed_kind(trainer: Any) -> str:
    """How the run was spread over processes: DeepSpeed ZeRO-N, FSDP, DDP or single."""
    if trainer.is_deepspeed_enabled:
        return f"deepspeed-zero{trainer.accelerator.state.deepspeed_plugin.zero_stage}"
    if trainer.is_fsdp_enabled:
        return f"fsdp{getattr(trainer.accelerator.state.fsdp_plugin, 'fsdp_version', 1)}"
    return "ddp" if trainer.args.world_size > 1 else "single"


def _mark_failed(run: _Run, error: BaseException) -> None:
    """The manifest says ``failed``, why, and at which step (main process; the run directory stays resumable)."""
    from vmed.model.runs import write_manifest

    if not _is_main_process():
        return
    step = run.trainer.state.global_step if run.trainer is not None else None
    reason = "interrupted (KeyboardInterrupt)" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {error}"
    write_manifest(run.out, run.manifest("failed", error=reason, failed_at_step=step))
