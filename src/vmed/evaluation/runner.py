"""Run a model over a dialogue JSONL file and write predictions.jsonl (the input of ``vmed eval score``).

``run_eval`` reads top to bottom: check the settings (and that an existing folder holds the same run),
keep the complete dialogues of an earlier run, ask the rest through a backend (the local engine, or an
OpenAI-compatible endpoint: :mod:`vmed.evaluation.backends`, :mod:`vmed.evaluation.endpoint`) with the
protocol of :mod:`vmed.evaluation.protocol`, then write the tally to run_info.json. Two protocols:

* ``dialogue`` (default): per image, the turns are asked in order with the conversation so far as context
  (the model's own answers, or the references with ``history="gold"``), then the summary prompt is asked
  as a final turn and scored against the record's summary. The engine's ``dialogue`` reuses the KV cache,
  so the image and earlier turns are encoded once per dialogue.
* ``single``: every question on its own with the image (LLaVA-Med's protocol), in left-padded batches;
  the summary prompt is asked on its own too.

Decoding is greedy with a fixed seed, so a rerun writes the same file. Rows are appended and flushed one
dialogue at a time; running again into the same folder resumes: complete dialogues are kept, a partial
last line and the rows of an unfinished dialogue are dropped. A record whose image cannot be read (or
whose prompt does not fit the context, or that an endpoint refuses) is skipped with its reason, and the
run goes on. A backend that stops answering stops the run (status ``interrupted`` in run_info.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from vmed import __version__
from vmed._io import sha256_file, write_json_atomic
from vmed.constants import SUMMARY_PROMPT
from vmed.data.records import record_turns
from vmed.data.schema import Dialogue, RecordError, read_jsonl, resolve_image
from vmed.errors import UserInputError
from vmed.evaluation.backends import BackendUnavailable, EvalBackend, LocalBackend, hash_model_dir
from vmed.evaluation.pipeline import PREDICTIONS_FILE, RUN_INFO
from vmed.evaluation.predictions import PredictionsWriter
from vmed.evaluation.protocol import EvalProtocol, Tally, drive

if TYPE_CHECKING:
    from vmed.inference.engine import Engine

# lazy: the inference package (torch) are imported inside the functions that use them, so importing this module stays light
__all__ = ["RunResult", "run_eval", "MODES", "HISTORIES", "hash_model_dir"]

MODES = ("dialogue", "single")
HISTORIES = ("model", "gold")
# Settings that must match for a run to resume into an existing folder.
_RESUME_KEYS = ("mode", "history", "max_new_tokens", "seed", "summary_prompt", "data", "model")


@dataclass
class RunResult:
    """What a run did. ``skipped``: [{"id", "reason"}] for records that got no predictions."""

    output_dir: Path
    predictions: Path
    dialogues_total: int
    dialogues_done: int
    dialogues_resumed: int
    rows: int
    skipped: list[dict[str, str]] = field(default_factory=list)
    dialogues_without_summary: int = 0


def _images_digest(records: Sequence[Dialogue], data_path: Path) -> str:
    """sha256 over the (image path, content hash) of every record's image; missing files hash as 'missing'.
    Taken over the whole file (not only ``--limit`` records), so that a larger limit can resume a run."""
    h = hashlib.sha256()
    for rec in records:
        p = resolve_image(rec, data_path)
        if p is None:
            continue
        digest = sha256_file(p) if p.is_file() else "missing"
        h.update(f"{rec.image}\0{digest}\n".encode())
    return h.hexdigest()


def _read_records(data_path: Path) -> list[Dialogue]:
    if not data_path.is_file():
        raise UserInputError(f"data file not found: {data_path}. Give a dialogue JSONL (see `vmed data validate`).")
    try:
        records = read_jsonl(data_path)
    except RecordError as e:
        raise UserInputError(str(e)) from None
    seen: set[str] = set()
    for rec in records:
        if rec.id in seen:
            raise UserInputError(f"{data_path}: duplicate record id {rec.id!r}; ids must be unique to score and resume a run")
        seen.add(rec.id)
    return records


def _check_resume(info_path: Path, settings: dict[str, Any]) -> None:
    if not info_path.is_file():
        return
    try:
        old = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return
    diffs = [k for k in _RESUME_KEYS if k in old and old[k] != settings[k]]
    if diffs:
        raise UserInputError(
            f"{info_path.parent} holds a run with different settings ({', '.join(diffs)}); resuming would mix them. "
            "Use a new --output folder, or delete that one to start over."
        )


def _write_json(path: Path, obj: dict) -> None:
    write_json_atomic(path, obj, ensure_ascii=False)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _data_settings(data_path: Path, all_records: Sequence[Dialogue]) -> dict[str, Any]:
    return {"path": str(data_path), "sha256": sha256_file(data_path), "images_sha256": _images_digest(all_records, data_path)}


def _start_info(settings: dict[str, Any], backend: EvalBackend, command: str | None, batch_size: int, limit: int | None) -> dict[str, Any]:
    """run_info.json's fixed part: the command, the settings that must match to resume, how requests are sent."""
    info: dict[str, Any] = {"command": command, **settings, "batch_size": batch_size, "limit": limit, "greedy": True}
    request = backend.request_settings()
    if request is not None:
        info["request"] = request
    info["versions"] = {"vmed": __version__, **backend.versions(), "python": platform.python_version()}
    info["started_at"] = _now()
    return info


def _end_info(info: dict[str, Any], result: RunResult, status: str, **more: Any) -> dict[str, Any]:
    return {
        **info,
        "status": status,
        "dialogues_total": result.dialogues_total,
        "dialogues_done": result.dialogues_done + result.dialogues_resumed,
        "dialogues_resumed": result.dialogues_resumed,
        "dialogues_without_summary": result.dialogues_without_summary,
        "rows": result.rows,
        "skipped": result.skipped,
        **more,
        "finished_at": _now(),
    }


def run_eval(
    engine: "Engine | EvalBackend",
    data_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    mode: str = "dialogue",
    history: str = "model",
    batch_size: int = 8,
    max_new_tokens: int = 64,
    limit: int | None = None,
    summary_prompt: str = SUMMARY_PROMPT,
    *,
    seed: int = 0,
    model_path: str | os.PathLike | None = None,
    command: str | None = None,
    progress: bool = True,
) -> RunResult:
    """Answer every record of ``data_path`` and write ``output_dir/predictions.jsonl`` (plus run_info.json
    with the settings, hashes, skipped records and timestamps).

    Args:
        engine: what answers: a :class:`vmed.inference.Engine` (anything with its ``dialogue`` and
            ``generate_batch``), or an :class:`~vmed.evaluation.backends.EvalBackend` such as
            :class:`~vmed.evaluation.endpoint.EndpointBackend`.
        mode: ``"dialogue"`` (turns in order with context, then the summary prompt) or ``"single"``.
        history: in dialogue mode, ``"model"`` (the model's own earlier answers) or ``"gold"`` (references).
        batch_size: questions per batch in single mode (local engine).
        limit: only the first ``limit`` records.
        model_path: for an engine, recorded (with its sha256) in run_info.json.
    Raises:
        BackendUnavailable: the backend stopped answering; every finished dialogue is kept, run again to resume.
    """
    from vmed.inference import GenParams

    _check_arguments(mode, history, batch_size, limit)
    backend = engine if isinstance(engine, EvalBackend) else LocalBackend(engine, model_path)
    data_path, out = Path(data_path), Path(output_dir)
    all_records = _read_records(data_path)
    records = all_records[:limit] if limit is not None else all_records
    protocol = EvalProtocol(mode, history, summary_prompt, batch_size,
                            GenParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed), data_path)  # fmt: skip

    # 1. settings, and refusing to resume a folder that holds another run
    settings: dict[str, Any] = {"mode": mode, "history": history, "max_new_tokens": max_new_tokens, "seed": seed,
                                "summary_prompt": summary_prompt, "data": _data_settings(data_path, all_records),
                                "model": backend.identity()}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    info_path = out / RUN_INFO
    _check_resume(info_path, settings)

    # 2. keep the complete dialogues of an earlier run
    writer = PredictionsWriter(out / PREDICTIONS_FILE, {r.id: i for i, r in enumerate(all_records)})
    done_ids, kept_rows = writer.resume({r.id: len(protocol.questions(r)) for r in records})
    info = _start_info(settings, backend, command, batch_size, limit)
    _write_json(info_path, {**info, "status": "running"})

    # 3. ask the rest
    pending = [r for r in records if r.id not in done_ids]
    result = RunResult(out, writer.path, len(records), 0, len(done_ids), kept_rows)
    result.dialogues_without_summary = sum(1 for r in records if not r.summary)
    tally = Tally()
    try:
        with writer:
            drive(protocol, backend, pending, writer, tally, progress)
    except BackendUnavailable as e:
        _collect(result, tally, writer.order)
        _write_json(info_path, _end_info(info, result, "interrupted", error=str(e)))
        raise BackendUnavailable(
            f"{e}. Stopped after {result.dialogues_done + result.dialogues_resumed} of {result.dialogues_total} dialogues "
            f"(kept in {writer.path}); run the same command again to resume."
        ) from None

    # 4. the tally
    _collect(result, tally, writer.order)
    _write_json(info_path, _end_info(info, result, "complete"))
    return result


def _check_arguments(mode: str, history: str, batch_size: int, limit: int | None) -> None:
    if mode not in MODES:
        raise UserInputError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if history not in HISTORIES:
        raise UserInputError(f"history must be one of {list(HISTORIES)}, got {history!r}")
    if mode == "single" and history != "model":
        raise UserInputError("history='gold' applies to dialogue mode only: in single mode every question is asked alone")
    if batch_size < 1:
        raise UserInputError(f"batch size must be >= 1, got {batch_size}")
    if limit is not None and limit < 1:
        raise UserInputError(f"limit must be >= 1, got {limit}")


def _collect(result: RunResult, tally: Tally, order: dict[str, int]) -> None:
    """Add the drive's counts to ``result``; skipped records in data-file order (whatever finished first)."""
    result.dialogues_done += tally.dialogues_done
    result.rows += tally.rows
    result.skipped = sorted(tally.skipped, key=lambda s: order.get(s["id"], len(order)))
