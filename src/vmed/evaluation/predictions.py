"""The predictions file: one JSON object per answered question, the contract between ``vmed eval run``,
``vmed eval score`` and any other tool that wants its outputs scored.

Required keys: ``id`` (the dialogue record id), ``turn`` (0-based position in the dialogue; the summary
row comes after the last question), ``question``, ``reference``, ``prediction``, ``answer_type``
(``closed``, ``open`` or ``summary``) and ``question_type`` (string or null). Extra keys are kept
(``alternatives``: other accepted answers; ``source``; ``mode``; ``finish_reason``...).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vmed._io import atomic_open, sha256_file
from vmed.data.schema import iter_json_lines
from vmed.errors import UserInputError

__all__ = ["PredictionRow", "ANSWER_TYPES", "REQUIRED_KEYS", "read_predictions", "load_complete_rows", "write_rows", "PredictionsWriter"]

ANSWER_TYPES = ("closed", "open", "summary")
REQUIRED_KEYS = ("id", "turn", "question", "reference", "prediction", "answer_type", "question_type")
_INTERRUPTED_HINT = "It is the last line: the run was probably interrupted; re-run the same `vmed eval run` to resume."


@dataclass
class PredictionRow:
    """One scored exchange. ``extra`` holds every key beyond the required ones."""

    id: str
    turn: int
    question: str
    reference: str
    prediction: str
    answer_type: str
    question_type: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def alternatives(self) -> list[str] | None:
        alts = self.extra.get("alternatives")
        return [str(a) for a in alts] if isinstance(alts, list) else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "turn": self.turn,
            "question": self.question,
            "reference": self.reference,
            "prediction": self.prediction,
            "answer_type": self.answer_type,
            "question_type": self.question_type,
        }
        d.update(self.extra)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "PredictionRow":
        """Validate one parsed line; ``where`` (file:line) starts every error message."""
        if not isinstance(d, dict):
            raise UserInputError(f"{where}: expected a JSON object, got {type(d).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in d]
        if missing:
            raise UserInputError(
                f"{where}: missing key(s) {missing}. A predictions row needs {list(REQUIRED_KEYS)} "
                "(question_type may be null)."
            )
        at = d["answer_type"]
        if at not in ANSWER_TYPES:
            raise UserInputError(f"{where}: answer_type {at!r} is not one of {list(ANSWER_TYPES)}")
        try:
            turn = int(d["turn"])
        except (TypeError, ValueError):
            raise UserInputError(f"{where}: turn must be a 0-based integer, got {d['turn']!r}") from None
        if turn < 0:
            raise UserInputError(f"{where}: turn must be >= 0, got {turn}")
        for key in ("question", "reference", "prediction"):
            if d[key] is None or isinstance(d[key], (dict, list)):
                raise UserInputError(f"{where}: {key} must be a string, got {type(d[key]).__name__}")
        qt = d["question_type"]
        return cls(
            id=str(d["id"]),
            turn=turn,
            question=str(d["question"]),
            reference=str(d["reference"]),
            prediction=str(d["prediction"]),
            answer_type=at,
            question_type=None if qt is None else str(qt),
            extra={k: v for k, v in d.items() if k not in REQUIRED_KEYS},
        )


def read_predictions(path: str | os.PathLike) -> list[PredictionRow]:
    """Read and validate a predictions file. Raises UserInputError naming the file and line of any problem,
    including a duplicated (id, turn) pair and a truncated last line (an interrupted run: resume it)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"predictions file not found: {path}")
    rows: list[PredictionRow] = []
    seen: dict[tuple[str, int], int] = {}
    for lineno, where, obj in iter_json_lines(path, UserInputError, _INTERRUPTED_HINT):
        row = PredictionRow.from_dict(obj, where)
        key = (row.id, row.turn)
        if key in seen:
            raise UserInputError(f"{where}: duplicate row for id {row.id!r} turn {row.turn} (first on line {seen[key]})")
        seen[key] = lineno
        rows.append(row)
    return rows


def _readable_rows(path: Path) -> list[PredictionRow]:
    """Every row of ``path`` that parses; a partial line from an interrupted write is left out."""
    if not path.is_file():
        return []
    rows: list[PredictionRow] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append(PredictionRow.from_dict(json.loads(line), f"{path}:{lineno}"))
        except (json.JSONDecodeError, UserInputError):
            continue
    return rows


def load_complete_rows(path: Path, expected: dict[str, int]) -> tuple[list[PredictionRow], set[str]]:
    """For resuming: the rows of dialogues that are complete in ``path`` and their ids.

    A truncated last line is dropped, and so are the rows of any dialogue with fewer rows than
    ``expected[id]`` (written before a crash). The caller rewrites the file with the returned rows.
    """
    rows = _readable_rows(path)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.id] = counts.get(r.id, 0) + 1
    done = {i for i, n in counts.items() if expected.get(i) == n}
    return [r for r in rows if r.id in done], done


class PredictionsWriter:
    """The one writer of a run's predictions.jsonl.

    ``resume`` keeps the complete dialogues already in the file (see :func:`load_complete_rows`). Inside
    ``with``, ``write`` appends one dialogue's rows and flushes them to disk, in whatever order dialogues
    finish; on leaving, the file is rewritten sorted by ``order`` (record id -> position in the data file)
    and turn, so its bytes do not depend on how many dialogues were in flight.
    """

    def __init__(self, path: Path, order: dict[str, int]) -> None:
        self.path = path
        self.order = order
        self._f: Any = None

    def resume(self, expected: dict[str, int]) -> tuple[set[str], int]:
        """Keep the complete dialogues of an earlier run; return their ids and their row count."""
        kept, done = load_complete_rows(self.path, expected)
        self._rewrite(kept)
        return done, len(kept)

    def __enter__(self) -> "PredictionsWriter":
        self._f = self.path.open("a", encoding="utf-8")
        return self

    def write(self, rows: Iterable[PredictionRow]) -> None:
        write_rows(self._f, rows)

    def __exit__(self, *exc: object) -> None:
        self._f.close()
        self._f = None
        self._rewrite(_readable_rows(self.path))

    def _rewrite(self, rows: list[PredictionRow]) -> None:
        rows = sorted(rows, key=lambda r: (self.order.get(r.id, len(self.order)), r.turn))
        with atomic_open(self.path) as f:
            write_rows(f, rows)


def write_rows(f, rows: Iterable[PredictionRow]) -> None:
    """Write rows to an open text file and flush them to disk."""
    for r in rows:
        f.write(r.to_json() + "\n")
    f.flush()
    os.fsync(f.fileno())
