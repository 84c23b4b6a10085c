"""Run a model over a dialogue JSONL file and write predictions.jsonl (the input of ``vmed eval score``).

Two protocols:

* ``dialogue`` (default): per image, the turns are asked in order with the conversation so far as context
  (the model's own answers, or the references with ``history="gold"``), then the summary prompt is asked
  as a final turn and scored against the record's summary. The engine's ``dialogue`` reuses the KV cache,
  so the image and earlier turns are encoded once per dialogue.
* ``single``: every question on its own with the image (LLaVA-Med's protocol), in left-padded batches;
  the summary prompt is asked on its own too.

Decoding is greedy with a fixed seed, so a rerun writes the same file. Rows are appended and flushed one
dialogue at a time; running again into the same folder resumes: complete dialogues are kept, a partial
last line and the rows of an unfinished dialogue are dropped. A record whose image cannot be read (or
whose prompt does not fit the context) is skipped with its reason, and the run goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from vmed.constants import SUMMARY_PROMPT
from vmed.data.records import record_turns
from vmed.data.schema import Dialogue, RecordError, read_jsonl, resolve_image
from vmed.errors import UserInputError
from vmed.evaluation.pipeline import PREDICTIONS_FILE, RUN_INFO
from vmed.evaluation.predictions import PredictionRow, load_complete_rows, sha256_file, write_rows

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


def hash_model_dir(path: str | os.PathLike) -> dict[str, Any]:
    """sha256 over a model folder: each file's relative path and content hash, in sorted order."""
    root = Path(path)
    if root.is_file():
        return {"path": str(root), "sha256": sha256_file(root), "files": 1}
    files = sorted(p for p in root.rglob("*") if p.is_file())
    h = hashlib.sha256()
    for p in files:
        h.update(p.relative_to(root).as_posix().encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return {"path": str(root), "sha256": h.hexdigest(), "files": len(files)}


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


def _rows_for(rec: Dialogue, answers: Sequence[Any], questions: Sequence[str], mode: str, history: str) -> list[PredictionRow]:
    """One row per answered turn, then the summary row (when the record has a summary)."""
    rows = []
    for t, turn in enumerate(rec.turns):
        extra: dict[str, Any] = {"source": rec.source, "mode": mode, "history": history, "finish_reason": answers[t].finish_reason}
        if turn.alternatives:
            extra["alternatives"] = list(turn.alternatives)
        if turn.qid is not None:
            extra["qid"] = turn.qid
        rows.append(PredictionRow(rec.id, t, turn.question, turn.answer, answers[t].text.strip(), turn.answer_type,
                                  turn.question_type, extra))  # fmt: skip
    if rec.summary:
        t = len(rec.turns)
        extra = {"source": rec.source, "mode": mode, "history": history, "finish_reason": answers[t].finish_reason}
        rows.append(PredictionRow(rec.id, t, questions[t], rec.summary, answers[t].text.strip(), "summary", "summary", extra))
    return rows


def _questions(rec: Dialogue, summary_prompt: str) -> list[str]:
    """The questions training puts in a sequence (``vmed.data.records.record_turns``): the turns, then the summary prompt."""
    return [q for q, _ in record_turns(rec, "last", summary_prompt)]


def _load(rec: Dialogue, data_path: Path):
    """The record's RGB image (None for a record without an image)."""
    from vmed.imaging import load_image

    p = resolve_image(rec, data_path)
    return None if p is None else load_image(p)


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
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _chunks(records: Sequence[Dialogue], summary_prompt: str, batch_size: int) -> Iterable[list[Dialogue]]:
    """Groups of whole dialogues holding at least ``batch_size`` questions (the last may hold fewer)."""
    chunk: list[Dialogue] = []
    n = 0
    for rec in records:
        chunk.append(rec)
        n += len(_questions(rec, summary_prompt))
        if n >= batch_size:
            yield chunk
            chunk, n = [], 0
    if chunk:
        yield chunk


def run_eval(
    engine: Any,
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
    """Answer every record of ``data_path`` with ``engine`` and write ``output_dir/predictions.jsonl``
    (plus run_info.json with the settings, hashes, skipped records and timestamps).

    Args:
        engine: a :class:`vmed.inference.Engine` (anything with its ``dialogue`` and ``generate_batch``).
        mode: ``"dialogue"`` (turns in order, KV cache reused, then the summary prompt) or ``"single"``.
        history: in dialogue mode, ``"model"`` (the model's own earlier answers) or ``"gold"`` (references).
        batch_size: questions per batch in single mode.
        limit: only the first ``limit`` records.
        model_path: recorded (with its sha256) in run_info.json.
    """
    from vmed.imaging import ImageError
    from vmed.inference import GenParams

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
    data_path = Path(data_path)
    out = Path(output_dir)
    all_records = _read_records(data_path)
    records = all_records[:limit] if limit is not None else all_records
    params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0, seed=seed)

    settings: dict[str, Any] = {
        "mode": mode,
        "history": history,
        "max_new_tokens": max_new_tokens,
        "seed": seed,
        "summary_prompt": summary_prompt,
        "data": {"path": str(data_path), "sha256": sha256_file(data_path), "images_sha256": _images_digest(all_records, data_path)},
        "model": hash_model_dir(model_path) if model_path is not None else None,
    }
    out.mkdir(parents=True, exist_ok=True)
    info_path, pred_path = out / RUN_INFO, out / PREDICTIONS_FILE
    _check_resume(info_path, settings)

    expected = {r.id: len(_questions(r, summary_prompt)) for r in records}
    kept, done_ids = load_complete_rows(pred_path, expected)
    tmp = pred_path.with_name(pred_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        write_rows(f, kept)
    os.replace(tmp, pred_path)

    import torch
    import transformers

    from vmed import __version__

    info: dict[str, Any] = {
        "command": command,
        **settings,
        "batch_size": batch_size,
        "limit": limit,
        "greedy": True,
        "versions": {"vmed": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},  # fmt: skip
        "started_at": _now(),
    }
    _write_json(info_path, {**info, "status": "running"})

    pending = [r for r in records if r.id not in done_ids]
    result = RunResult(out, pred_path, len(records), 0, len(done_ids), len(kept))
    result.dialogues_without_summary = sum(1 for r in records if not r.summary)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(pending), unit="dialogue", desc=f"eval {mode}", disable=not progress, dynamic_ncols=True)
    skippable = (ImageError, UserInputError, OSError)
    with pred_path.open("a", encoding="utf-8") as f:

        def finish(rec: Dialogue, answers: Sequence[Any]) -> None:
            rows = _rows_for(rec, answers, _questions(rec, summary_prompt), mode, history)
            write_rows(f, rows)
            result.rows += len(rows)
            result.dialogues_done += 1

        def skip(rec: Dialogue, e: BaseException) -> None:
            result.skipped.append({"id": rec.id, "reason": f"{type(e).__name__}: {e}"})

        if mode == "dialogue":
            for rec in pending:
                try:
                    image = _load(rec, data_path)
                    gold = None
                    if history == "gold":
                        gold = [t.answer for t in rec.turns] + ([rec.summary] if rec.summary else [])
                    finish(rec, engine.dialogue(image, _questions(rec, summary_prompt), params, gold_answers=gold))
                except skippable as e:
                    skip(rec, e)
                bar.update(1)
        else:
            for chunk in _chunks(pending, summary_prompt, batch_size):
                loaded: list[tuple[Dialogue, Any]] = []
                for rec in chunk:
                    try:
                        loaded.append((rec, _load(rec, data_path)))
                    except skippable as e:
                        skip(rec, e)
                items = [(img, [], q) for rec, img in loaded for q in _questions(rec, summary_prompt)]
                try:
                    answers = engine.generate_batch(items, params, batch_size) if items else []
                except UserInputError:
                    answers = None  # one record does not fit: answer record by record to find it
                if answers is not None:
                    k = 0
                    for rec, _ in loaded:
                        n = len(_questions(rec, summary_prompt))
                        finish(rec, answers[k : k + n])
                        k += n
                else:
                    for rec, img in loaded:
                        try:
                            qs = _questions(rec, summary_prompt)
                            finish(rec, engine.generate_batch([(img, [], q) for q in qs], params, batch_size))
                        except UserInputError as e:
                            skip(rec, e)
                bar.update(len(chunk))
    bar.close()
    _write_json(
        info_path,
        {
            **info,
            "status": "complete",
            "dialogues_total": result.dialogues_total,
            "dialogues_done": result.dialogues_done + result.dialogues_resumed,
            "dialogues_resumed": result.dialogues_resumed,
            "dialogues_without_summary": result.dialogues_without_summary,
            "rows": result.rows,
            "skipped": result.skipped,
            "finished_at": _now(),
        },
    )
    return result

