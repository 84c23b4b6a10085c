"""Checkpoints that are complete or ignored, resume from the latest complete one, SIGTERM handling, loss log.

The HF Trainer writes ``checkpoint-N/`` (trainable weights, optimizer, scheduler, RNG states,
trainer state with the data position). ``CompletionMarker`` writes ``checkpoint-N/COMPLETE`` after
the Trainer has written everything (``on_save`` runs after the save), so a process killed during a
save leaves a directory without the marker. ``latest_complete_checkpoint`` ignores such directories
and ``remove_incomplete_checkpoints`` deletes them before a resumed run writes there again.

``verify_checkpoint`` reads what a resume will read (the safetensors header of the trainable weights, the
trainer state JSON, the zip directories of the optimizer / scheduler / RNG files), so ``pick_checkpoint`` can fall
back from a damaged checkpoint to the previous complete one and say why.

``SigtermSave`` turns SIGTERM into "save a checkpoint at the end of this step and stop". ``LossLog``
appends every logged value (with its step) to ``train_log.jsonl``; a resumed run appends to the same
file, so the last entry per step is what counts. ``ResumeMarker`` notes each resume in the trainer state's log
history, so that ``mean_train_loss`` can weight every logged loss by the steps it covers, across resumes.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import zipfile
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

# lazy: safetensors is imported inside verify_checkpoint, the one function that reads a checkpoint's weights

__all__ = [
    "COMPLETE_MARKER",
    "CompletionMarker",
    "SigtermSave",
    "LossLog",
    "ResumeMarker",
    "latest_complete_checkpoint",
    "remove_incomplete_checkpoints",
    "verify_checkpoint",
    "pick_checkpoint",
    "mean_train_loss",
    "read_loss_log",
]

COMPLETE_MARKER = "COMPLETE"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _checkpoints(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if p.is_dir() and (m := _CKPT.match(p.name))]
    return sorted(found)


def latest_complete_checkpoint(folder: str | Path) -> Path | None:
    """The highest-step ``checkpoint-N`` in ``folder`` that has the completion marker, or None."""
    complete = [p for _, p in _checkpoints(Path(folder)) if (p / COMPLETE_MARKER).is_file()]
    return complete[-1] if complete else None


def remove_incomplete_checkpoints(folder: str | Path) -> list[Path]:
    """Delete ``checkpoint-N`` directories without the completion marker; return what was removed."""
    removed = []
    for _, p in _checkpoints(Path(folder)):
        if not (p / COMPLETE_MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def verify_checkpoint(ckpt: str | Path, trainable_file: str = "trainable.safetensors") -> str | None:
    """None if ``ckpt`` looks resumable, else why not (one phrase naming the file).

    Checks the completion marker, that the trainable weights' safetensors header reads and covers the file (a
    truncated file fails here), that ``trainer_state.json`` parses with a ``global_step``, and that every
    ``*.pt`` / ``*.pth`` / ``*.bin`` file the Trainer restores (optimizer, scheduler, RNG states, FSDP optimizer) has an intact zip directory.
    """
    from safetensors import SafetensorError, safe_open

    ckpt = Path(ckpt)
    if not (ckpt / COMPLETE_MARKER).is_file():
        return f"no {COMPLETE_MARKER} marker (the save was interrupted)"
    weights = ckpt / trainable_file
    if not weights.is_file():
        return f"{trainable_file} is missing"
    try:
        with safe_open(str(weights), framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        return f"{trainable_file} is unreadable ({e})"
    state = ckpt / "trainer_state.json"
    try:
        step = json.loads(state.read_text(encoding="utf-8")).get("global_step")
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as e:
        return f"trainer_state.json is not valid JSON ({e})"
    if not isinstance(step, int):
        return "trainer_state.json has no global_step"
    for f in sorted([*ckpt.glob("*.pt"), *ckpt.glob("*.pth"), *ckpt.glob("*.bin")]):
        try:
            with zipfile.ZipFile(f):
                pass
        except (zipfile.BadZipFile, OSError) as e:
            return f"{f.name} is damaged ({e})"
    return None


def pick_checkpoint(folder: str | Path) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint of ``folder`` that passes ``verify_checkpoint``, and the newer complete ones
    that failed it, each with its reason (newest first)."""
    rejected = []
    for _, p in reversed(_checkpoints(Path(folder))):
        if not (p / COMPLETE_MARKER).is_file():
            continue
        reason = verify_checkpoint(p)
        if reason is None:
            return p, rejected
        rejected.append((p, reason))
    return None, rejected


def mean_train_loss(log_history: list[dict[str, Any]], global_step: int, last_process_loss: float | None = None) -> tuple[float | None, int]:
    """The mean per-step training loss over a whole run, resumes included: (mean, steps it covers).

    Each logged ``loss`` is the mean over the steps since the previous log or resume (``ResumeMarker`` entries),
    so it is weighted by that many steps. Steps after the last log are filled from ``last_process_loss`` (the
    Trainer's ``training_loss``, the mean over this process's steps). Steps that a killed process trained after its
    last log and before its checkpoint were never logged: they are the only ones missing from the count.
    """
    total, covered, boundary, since_resume = 0.0, 0, 0, 0.0
    for entry in sorted(log_history, key=lambda e: e.get("step", 0)):
        step = int(entry.get("step", 0))
        if entry.get(ResumeMarker.KEY):
            boundary, since_resume = max(boundary, step), 0.0
        elif "loss" in entry and step > boundary:
            n = step - boundary
            total += float(entry["loss"]) * n
            since_resume += float(entry["loss"]) * n
            covered += n
            boundary = step
    if last_process_loss is not None and global_step > boundary:
        start = max((int(e["step"]) for e in log_history if e.get(ResumeMarker.KEY)), default=0)
        tail = global_step - boundary
        total += float(last_process_loss) * (global_step - start) - since_resume
        covered += tail
    return (total / covered if covered else None), covered


class ResumeMarker(TrainerCallback):
    """Adds ``{"step": N, "vmed_resumed_at": N}`` to the trainer state's log history when training resumes at step N
    (the log history is saved in every checkpoint, so the markers of earlier resumes survive later ones)."""

    KEY = "vmed_resumed_at"

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step > 0:
            state.log_history.append({"step": state.global_step, self.KEY: state.global_step})


class CompletionMarker(TrainerCallback):
    """Writes ``COMPLETE`` into a checkpoint once the Trainer has finished writing it."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            (ckpt / COMPLETE_MARKER).write_text(json.dumps({"global_step": state.global_step}) + "\n")


class SigtermSave(TrainerCallback):
    """On SIGTERM: finish the current step, save a checkpoint, stop training (``stopped`` becomes True)."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True
            self.stopped = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class LossLog(TrainerCallback):
    """Appends each log entry (loss, learning rate, eval loss) with its step to a JSONL file (main process)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": state.global_step, **logs}) + "\n")


def read_loss_log(path: str | Path, key: str = "loss") -> dict[int, float]:
    """``{step: value}`` from a ``train_log.jsonl``; a later entry for the same step (after a resume) wins."""
    out: dict[int, float] = {}
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            if key in row:
                out[int(row["step"])] = float(row[key])
    return out
