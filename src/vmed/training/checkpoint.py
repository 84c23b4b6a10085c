"""Checkpoints that are complete or ignored, resume from the latest complete one, SIGTERM handling, loss log.

The HF Trainer writes ``checkpoint-N/`` (trainable weights, optimizer, scheduler, RNG states,
trainer state with the data position). ``CompletionMarker`` writes ``checkpoint-N/COMPLETE`` after
the Trainer has written everything (``on_save`` runs after the save), so a process killed during a
save leaves a directory without the marker. ``latest_complete_checkpoint`` ignores such directories
and ``remove_incomplete_checkpoints`` deletes them before a resumed run writes there again.

``SigtermSave`` turns SIGTERM into "save a checkpoint at the end of this step and stop". ``LossLog``
appends every logged value (with its step) to ``train_log.jsonl``; a resumed run appends to the same
file, so the last entry per step is what counts.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

__all__ = [
    "COMPLETE_MARKER",
    "CompletionMarker",
    "SigtermSave",
    "LossLog",
    "latest_complete_checkpoint",
    "remove_incomplete_checkpoints",
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
