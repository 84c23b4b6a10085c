"""File-level scoring: predictions.jsonl in, metrics.json + row_scores.jsonl + report.md + plots out.

``vmed eval score`` is :func:`score_file`; ``vmed eval run`` calls the runner and then :func:`score_file`.
Nothing written here holds a timestamp except what is copied from run_info.json (the run's start and end),
so scoring the same predictions twice gives byte-identical files.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from vmed.errors import UserInputError
from vmed._io import sha256_file
from vmed.evaluation.predictions import read_predictions
from vmed.evaluation.report import write_report
from vmed.evaluation.scoring import ScoreOptions, score_rows

__all__ = ["score_file", "RUN_INFO", "METRICS_FILE", "ROW_SCORES_FILE", "PREDICTIONS_FILE"]

PREDICTIONS_FILE = "predictions.jsonl"
RUN_INFO = "run_info.json"
METRICS_FILE = "metrics.json"
ROW_SCORES_FILE = "row_scores.jsonl"


def _clean(obj):
    """JSON-safe copy: NaN/inf become null (JSON has no NaN)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


TIMESTAMP_KEYS = ("started_at", "finished_at")


def _run_settings(path: Path) -> dict | None:
    """run_info.json without its timestamps, so that metrics.json and report.md of two identical runs are
    byte-identical (the timestamps stay in run_info.json)."""
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return {k: v for k, v in info.items() if k not in TIMESTAMP_KEYS}


def score_file(
    predictions: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    options: ScoreOptions = ScoreOptions(),
    command: str | None = None,
) -> dict:
    """Score a predictions file and write metrics.json, row_scores.jsonl, report.md and the PNG plots.

    Args:
        predictions: a predictions.jsonl (see :mod:`vmed.evaluation.predictions`).
        output_dir: where to write; default: the predictions file's folder.
        command: the command line to record in the report (``vmed eval score ...``).
    Returns:
        The metrics document written to metrics.json.
    """
    path = Path(predictions)
    if path.is_dir():
        path = path / PREDICTIONS_FILE
    rows = read_predictions(path)
    if not rows:
        raise UserInputError(f"{path}: no prediction rows to score")
    out = Path(output_dir) if output_dir is not None else path.parent
    out.mkdir(parents=True, exist_ok=True)
    doc, rs = score_rows(rows, options)
    run_info = path.parent / RUN_INFO
    header = {
        "schema": "vmed.eval.metrics/1",
        "predictions": {"path": str(path), "sha256": sha256_file(path)},
        "run": _run_settings(run_info),
        "score_command": command,
    }
    doc = _clean({**header, **doc})
    (out / METRICS_FILE).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    with (out / ROW_SCORES_FILE).open("w", encoding="utf-8") as f:
        for i, r in enumerate(rs.rows):
            rec = {"id": r.id, "turn": r.turn, "answer_type": r.answer_type, "question_type": r.question_type, **rs.row_values(i)}
            f.write(json.dumps(_clean(rec), ensure_ascii=False) + "\n")
    write_report(doc, out)
    return doc
