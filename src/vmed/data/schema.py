"""The dialogue record: one JSON object per line, one record per image per split.

This is the contract between data conversion, training, evaluation and chat (see
``docs/architecture.md`` / the README). ``image`` is relative to the JSONL file's folder
(or absolute); ``answer_type`` is ``closed`` or ``open``; ``summary`` may be null only
before summaries are made; anything else goes in ``meta``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from vmed._io import commit_atomic, tmp_path
from vmed.constants import ANSWER_TYPES
from vmed.errors import UserInputError

__all__ = [
    "Turn",
    "Dialogue",
    "RecordError",
    "Problem",
    "read_jsonl",
    "iter_jsonl",
    "iter_jsonl_lenient",
    "iter_json_lines",
    "write_jsonl",
    "JsonlWriter",
    "validate_file",
    "resolve_image",
]


class RecordError(UserInputError):
    """A record that does not follow the schema. The message names the file, line and field (CLI exit 2)."""


@dataclass
class Turn:
    """One question/answer exchange about the record's image."""

    question: str
    answer: str
    answer_type: str = "open"
    question_type: str | None = None
    qid: str | None = None
    alternatives: list[str] | None = None
    """Other accepted answers (e.g. VQA-Med 2019 ``#`` alternatives), used only for scoring."""

    def to_dict(self) -> dict[str, Any]:
        """The turn's fields, None ones left out (built by hand: ``dataclasses.asdict`` deep-copies, and the
        streamed conversions write 500K records)."""
        d: dict[str, Any] = {"question": self.question, "answer": self.answer, "answer_type": self.answer_type}
        for k in ("question_type", "qid"):
            v = getattr(self, k)
            if v is not None:
                d[k] = v
        if self.alternatives is not None:
            d["alternatives"] = list(self.alternatives)
        return d


@dataclass
class Dialogue:
    """A per-image multi-turn dialogue with an optional summary."""

    id: str
    image: str | None
    turns: list[Turn]
    source: str = "unknown"
    split: str = "train"
    summary: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source": self.source,
            "split": self.split,
            "image": self.image,
            "turns": [t.to_dict() for t in self.turns],
            "summary": self.summary,
            "meta": self.meta,
        }

    def to_json(self) -> str:
        return dumps_line(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "<record>") -> "Dialogue":
        """Build a Dialogue from a parsed JSON object; raise RecordError naming ``where`` and the field."""
        if not isinstance(d, dict):
            raise RecordError(f"{where}: expected a JSON object, got {type(d).__name__}")
        for key in ("id", "turns"):
            if key not in d:
                raise RecordError(f"{where}: missing field '{key}'. Every record needs id, image, turns.")
        turns_raw = d["turns"]
        if not isinstance(turns_raw, list):
            raise RecordError(f"{where}: field 'turns' must be a list of {{question, answer, ...}} objects")
        turns = []
        known = {f for f in Turn.__dataclass_fields__}
        for i, t in enumerate(turns_raw):
            if not isinstance(t, dict):
                raise RecordError(f"{where}: turns[{i}] must be an object")
            for key in ("question", "answer"):
                if key not in t:
                    raise RecordError(f"{where}: turns[{i}] is missing '{key}'")
                if t[key] is None:
                    raise RecordError(f"{where}: turns[{i}].{key} is null; expected a string")
            extra = set(t) - known
            if extra:
                raise RecordError(f"{where}: turns[{i}] has unknown keys {sorted(extra)}; put extra data in the record's 'meta'")
            turns.append(
                Turn(
                    question=str(t["question"]),
                    answer=str(t["answer"]),
                    answer_type=str(t.get("answer_type", "open")),
                    question_type=t.get("question_type"),
                    qid=None if t.get("qid") is None else str(t["qid"]),
                    alternatives=t.get("alternatives"),
                )
            )
        if d["id"] is None or not str(d["id"]).strip():
            raise RecordError(f"{where}: field 'id' is null or empty; every record needs a unique id")
        meta = d.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise RecordError(f"{where}: field 'meta' must be an object, got {type(meta).__name__}")
        for key in ("image", "summary"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise RecordError(f"{where}: field '{key}' must be a string or null, got {type(d[key]).__name__}")
        return cls(
            id=str(d["id"]),
            image=d.get("image"),
            turns=turns,
            source=str(d.get("source", "unknown")),
            split=str(d.get("split", "train")),
            summary=d.get("summary"),
            meta=dict(meta or {}),
        )


def _parse_line(raw: bytes, first: bool) -> tuple[Any, str | None, bool]:
    """One JSON line -> (object, None, False), or (None, the fault, whether it is a JSON syntax error)."""
    try:
        text = raw.rstrip(b"\r\n").decode("utf-8")  # per line, so that a column counts within the line
        return json.loads(text.removeprefix("\ufeff") if first else text), None, False
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte {e.start} of the line); save the file as UTF-8", False
    except RecursionError:
        return None, "JSON nested too deeply to parse", False
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})", True


def iter_json_lines(
    path: str | os.PathLike, error: Callable[[str], Exception] = RecordError, last_line_hint: str | None = None
) -> Iterator[tuple[int, str, Any]]:
    """Stream ``(line number, where, parsed object)`` from a JSON-lines file, ``where`` being ``file:line``.

    Blank lines are skipped; line numbers start at 1.

    A line that is not JSON raises ``error(message)``; the message names file:line and the fault and ends
    "Fix or remove that line.", or ``last_line_hint`` where one is given and nothing but blank lines
    follows the bad one (a last line cut short is what an interrupted writer leaves).
    """
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            obj, fault, syntax = _parse_line(raw, lineno == 1)
            if syntax:
                last = last_line_hint is not None and not any(rest.strip() for rest in f)
                raise error(f"{where}: {fault}. {last_line_hint if last else 'Fix or remove that line.'}")
            if fault:
                raise error(f"{where}: {fault}. Fix or remove that line.")
            yield lineno, where, obj


def iter_jsonl(path: str | os.PathLike) -> Iterator[Dialogue]:
    """Stream Dialogues from a JSONL file; blank lines are skipped. Raises RecordError naming file:line."""
    for _, where, obj in iter_json_lines(path):
        yield Dialogue.from_dict(obj, where=where)


def iter_jsonl_lenient(path: str | os.PathLike) -> Iterator[Dialogue | RecordError]:
    """Like ``iter_jsonl``, but a line that is not a valid record is yielded as its RecordError and reading goes on."""
    path = Path(path)
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            obj, fault, _ = _parse_line(raw, lineno == 1)
            if fault:
                yield RecordError(f"{where}: {fault}")
                continue
            try:
                yield Dialogue.from_dict(obj, where=where)
            except RecordError as e:
                yield e


def read_jsonl(path: str | os.PathLike) -> list[Dialogue]:
    """Read every Dialogue of a JSONL file into a list."""
    return list(iter_jsonl(path))


def dumps_line(obj: Any) -> str:
    """One JSON line, UTF-8 as written; text holding a lone surrogate (``"\\ud800"`` in the input JSON, which
    UTF-8 cannot encode) is written with ASCII escapes instead, so that it round-trips unchanged."""
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, ensure_ascii=True)
    return line


class JsonlWriter:
    """Append Dialogues to a JSONL file atomically: writes ``path.tmp`` and renames on close."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = tmp_path(self.path)
        self._f = self._tmp.open("w", encoding="utf-8")
        self.count = 0

    def write(self, record: Dialogue | dict[str, Any]) -> None:
        line = record.to_json() if isinstance(record, Dialogue) else dumps_line(record)
        self._f.write(line + "\n")
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            commit_atomic(self._f, self._tmp, self.path)

    def __enter__(self) -> "JsonlWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:  # leave no half-written output behind
            self._f.close()
            self._tmp.unlink(missing_ok=True)


def write_jsonl(path: str | os.PathLike, records: Iterable[Dialogue | dict[str, Any]]) -> int:
    """Write records to ``path`` atomically; return the number written."""
    with JsonlWriter(path) as w:
        for r in records:
            w.write(r)
        return w.count


def resolve_image(record: Dialogue, jsonl_path: str | os.PathLike) -> Path | None:
    """The absolute path of a record's image (relative paths are relative to the JSONL file's folder)."""
    if not record.image:
        return None
    p = Path(record.image)
    if not p.is_absolute():
        p = Path(jsonl_path).resolve().parent / p
    return p


@dataclass
class Problem:
    """One validation finding: where it is and what is wrong."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.field}: {self.message}"


def validate_file(path: str | os.PathLike, check_images: bool = True) -> tuple[int, list[Problem]]:
    """Check every line of a dialogue JSONL file. Returns (records read, problems).

    Finds: invalid JSON, missing fields, bad ``answer_type``, empty questions/answers,
    missing image files and duplicate ids. Never stops at the first problem.
    """
    path = Path(path)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    n = 0
    with path.open("r", encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            n += 1
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(Problem(lineno, "<json>", f"not valid JSON: {e.msg} at column {e.colno}"))
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(lineno, "<record>", "expected a JSON object"))
                continue
            for key in ("id", "image", "turns"):
                if key not in obj:
                    problems.append(Problem(lineno, key, "missing required field"))
            rid = obj.get("id")
            if "id" in obj and (rid is None or not str(rid).strip()):
                problems.append(Problem(lineno, "id", "is null or empty; every record needs a unique id"))
                rid = None
            if rid is not None:
                rid = str(rid)
                if rid in seen:
                    problems.append(Problem(lineno, "id", f"duplicate id {rid!r} (first on line {seen[rid]})"))
                else:
                    seen[rid] = lineno
            turns = obj.get("turns")
            if "turns" in obj and (not isinstance(turns, list) or not turns):
                problems.append(Problem(lineno, "turns", "must be a non-empty list of {question, answer} objects"))
                turns = []
            for i, t in enumerate(turns or []):
                if not isinstance(t, dict):
                    problems.append(Problem(lineno, f"turns[{i}]", "must be an object"))
                    continue
                extra = set(t) - set(Turn.__dataclass_fields__)
                if extra:
                    problems.append(
                        Problem(lineno, f"turns[{i}]", f"unknown keys {sorted(extra)}; put extra data in the record's 'meta'")
                    )
                for key in ("question", "answer"):
                    if key not in t:
                        problems.append(Problem(lineno, f"turns[{i}].{key}", "missing required field"))
                    elif t[key] is None:
                        problems.append(Problem(lineno, f"turns[{i}].{key}", "is null; expected a string"))
                    elif not str(t[key]).strip():
                        problems.append(Problem(lineno, f"turns[{i}].{key}", "is empty"))
                at = t.get("answer_type")
                if at is not None and at not in ANSWER_TYPES:
                    problems.append(
                        Problem(lineno, f"turns[{i}].answer_type", f"{at!r} is not one of {list(ANSWER_TYPES)}")
                    )
            meta = obj.get("meta")
            if meta is not None and not isinstance(meta, dict):
                problems.append(Problem(lineno, "meta", f"must be an object, got {type(meta).__name__}"))
            summary = obj.get("summary")
            if summary is not None and not isinstance(summary, str):
                problems.append(Problem(lineno, "summary", "must be a string or null"))
            image = obj.get("image")
            if check_images and isinstance(image, str) and image:
                p = Path(image)
                if not p.is_absolute():
                    p = path.resolve().parent / p
                if not p.is_file():
                    problems.append(Problem(lineno, "image", f"file not found: {p}"))
            elif "image" in obj and image is not None and not isinstance(image, str):
                problems.append(Problem(lineno, "image", "must be a path string or null"))
    return n, problems
