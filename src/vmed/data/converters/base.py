"""What every dataset converter shares: the row types it yields, its options, and its errors.

A converter reads one dataset layout and yields rows; it does no grouping, ordering or writing
(that is ``vmed.data.build``). Two kinds of row:

- ``QARow``: one question/answer about one image (VQA-RAD, SLAKE, PathVQA, VQA-Med, parquet).
  ``build`` groups them by (split, image) into dialogues.
- ``RecordRow``: a whole record already (LLaVA conversations, ROCO captions). These formats are
  large, so ``build`` streams them one by one and memory does not grow with the input.

A converter counts the rows it drops itself (``Tally.skip``) so that nothing is lost silently.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence

from vmed.errors import UserInputError

__all__ = [
    "DataFormatError",
    "ConvertOptions",
    "QARow",
    "RecordRow",
    "Tally",
    "Converter",
    "normalise_answer",
    "normalise_answer_type",
    "is_yes_no",
    "find_file",
    "load_json",
    "iter_json_array",
    "iter_question_rows",
    "SPLIT_ALIASES",
]

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}
"""Split names found in dataset files, mapped to the record's split names."""

class DataFormatError(UserInputError):
    """An input file that does not have the layout its format promises. Names the file, row and field."""

    @classmethod
    def at(cls, path: str | os.PathLike, row: int | str | None, message: str) -> "DataFormatError":
        where = f"{path}" if row is None else f"{path}, row {row}"
        return cls(f"{where}: {message}")


@dataclass
class ConvertOptions:
    """The user's choices that converters act on (the rest is for ``build``)."""

    lang: str = "en"
    """SLAKE question language to keep: ``en``, ``zh`` or ``all``."""
    include_frames: bool = False
    """VQA-RAD: keep the templated ``frame`` rows."""
    split: str | None = None
    """Split for inputs that carry none (LLaVA JSON, a lone captions file); default ``train``."""
    image_root: Path | None = None
    """LLaVA/alignment JSON: the folder image paths are relative to (default: the JSON file's folder)."""
    images_dir: Path | None = None
    """Where parquet images are written (set by ``build``)."""


@dataclass
class QARow:
    """One question/answer about one image, as read from the dataset (answers already normalised)."""

    split: str
    image_key: str
    """The image's name within the dataset (relative path); rows with the same key are the same image."""
    image_path: Path | None
    """Where the image file should be (absolute); None when the format has no file."""
    question: str
    answer: str
    answer_type: str
    question_type: str | None = None
    qid: str | None = None
    alternatives: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    """Per-image metadata (organ, modality, location, ...); the first row's values win."""
    variant: str | None = None
    """Splits one image's rows into separate dialogues (SLAKE ``--lang all``: one per language)."""
    where: str = ""
    """File and row, for messages."""

    @classmethod
    def from_raw(
        cls,
        split: str,
        image_key: str,
        image_path: Path | None,
        question: Any,
        answer: Any,
        answer_type: Any = None,
        qid: Any = None,
        **fields: Any,
    ) -> "QARow":
        """A row from a dataset's raw values: question and answer normalised (``normalise_answer``), the
        answer type normalised or, where the dataset gives none, inferred (``normalise_answer_type``),
        and the question id, where there is one, as a string. ``fields`` are the other QARow fields."""
        answer = normalise_answer(answer)
        return cls(
            split=split,
            image_key=image_key,
            image_path=image_path,
            question=normalise_answer(question),
            answer=answer,
            answer_type=normalise_answer_type(answer_type, answer),
            qid=None if qid is None else str(qid),
            **fields,
        )


@dataclass
class RecordRow:
    """A whole record as read (streamed formats): one image, its turns in order, and metadata."""

    split: str
    id: str
    image_key: str | None
    image_path: str | None
    """A path string: streamed inputs have 500K of them, and pathlib objects cost more than the rest of a row."""
    turns: list[tuple[str, str]]
    summary: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    where: str = ""


@dataclass
class Tally:
    """Counts of rows read and skipped per split, filled by converters and ``build``."""

    read: Counter = field(default_factory=Counter)
    skipped: dict[str, Counter] = field(default_factory=dict)
    examples: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    """split -> reason -> the first few skipped rows (file, row, qid), so that a reader can find them."""
    max_examples: int = 5

    def saw(self, split: str, n: int = 1) -> None:
        self.read[split] += n

    def skip(self, split: str, reason: str, n: int = 1, where: str | None = None) -> None:
        self.skipped.setdefault(split, Counter())[reason] += n
        if where:
            found = self.examples.setdefault(split, {}).setdefault(reason, [])
            if len(found) < self.max_examples:
                found.append(where)


class Converter(Protocol):
    """One dataset layout. ``streaming`` converters yield RecordRow, the others QARow."""

    name: str
    streaming: bool

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        """The splits this input holds (known before reading)."""

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow | RecordRow]:
        """Yield the rows of every split; count read/skipped rows in ``tally``."""


def normalise_answer(value: Any) -> str:
    """Strip and collapse spaces; numbers become strings. Case and meaning are kept."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return " ".join(str(value).split())


def is_yes_no(answer: str) -> bool:
    return answer.strip().lower() in ("yes", "no")


def normalise_answer_type(raw: Any, answer: str) -> str:
    """``"CLOSED "`` -> ``closed``; a missing or unknown type is inferred: yes/no answers are closed."""
    text = str(raw).strip().lower() if raw is not None else ""
    if text in ("closed", "open"):
        return text
    return "closed" if is_yes_no(answer) else "open"


def find_file(folder: Path, names: list[str], what: str) -> Path:
    """The first of ``names`` inside ``folder`` (searched one level deep too), or a clear error."""
    for name in names:
        for cand in (folder / name, *folder.glob(f"*/{name}")):
            if cand.is_file():
                return cand
    raise UserInputError(f"{folder}: no {what} found (looked for {', '.join(names)}). Point --input at the dataset folder.")


def load_json(path: Path) -> Any:
    """Parse a JSON file, with an error that names the file and position."""
    try:
        with path.open("r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def iter_question_rows(file: Path, rows: Any, required: Sequence[str], expected: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(index, row)`` for each row of a dataset file's list of question rows (parsed JSON or pickle).

    Checks that ``rows`` is a list of objects that each have every ``required`` field, and raises
    DataFormatError naming the file, the row and the field otherwise. ``expected`` ends the missing-field
    message with what the dataset's rows hold, e.g. ``"SLAKE rows have img_name, question, answer, ..."``.
    """
    if not isinstance(rows, list):
        raise DataFormatError(f"{file}: expected a list of question rows, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise DataFormatError.at(file, i, f"expected an object with {', '.join(required)}")
        for key in required:
            if key not in row:
                raise DataFormatError.at(file, i, f"missing field '{key}' ({expected})")
        yield i, row


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array one by one, reading ``chunk_size`` characters at a time.

    Memory holds one chunk plus one element, whatever the file size (LLaVA-Med alignment is
    500K records in one array). Uses ``json.JSONDecoder.raw_decode`` on a sliding buffer.
    """
    decoder = json.JSONDecoder()
    with path.open("r", encoding="utf-8") as f:
        buf = ""
        pos = 0
        eof = False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            more = f.read(chunk_size)
            if not more:
                eof = True
                return False
            buf = buf[pos:] + more
            pos = 0
            return True

        def skip_ws() -> None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n":
                    pos += 1
                if pos < len(buf) or not fill():
                    return

        fill()
        skip_ws()
        if pos >= len(buf) or buf[pos] != "[":
            raise DataFormatError(f"{path}: expected a JSON array ('[' at the start of the file)")
        pos += 1
        index = 0
        skip_ws()
        if pos < len(buf) and buf[pos] == "]":
            return
        while True:
            skip_ws()
            while True:
                try:
                    obj, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as e:
                    if fill():
                        continue
                    raise DataFormatError(f"{path}: element {index} is not valid JSON ({e.msg})") from None
                if not eof and (end >= len(buf) or buf[end] not in ",] \t\r\n") and fill():
                    continue  # a number cut at the chunk boundary ("-1." + "5e-3"): read on
                break
            pos = end
            yield obj
            index += 1
            skip_ws()
            if pos >= len(buf):
                raise DataFormatError(f"{path}: the array is not closed (file ends after element {index - 1})")
            if buf[pos] == ",":
                pos += 1
                continue
            if buf[pos] == "]":
                return
            raise DataFormatError(f"{path}: expected ',' or ']' after element {index - 1}, found {buf[pos]!r}")
