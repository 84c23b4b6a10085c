"""What every dataset converter shares: the row types it yields, its options, and its errors.

A converter reads one dataset layout and yields rows; it does no grouping, ordering or writing
(that is ``vmed.data.build``). Two kinds of row:

- ``QARow``: one question/answer about one image (VQA-RAD, SLAKE, PathVQA, VQA-Med, parquet).
  ``build`` groups them by (split, image) into dialogues.
- ``RecordRow``: a whole record already (LLaVA conversations, ROCO captions). These formats are
  large, so ``build`` streams them one by one and memory does not grow with the input.

A converter counts the rows it drops itself (``Tally.skip``) so that nothing is lost silently; a
malformed row is skipped and counted too (``Tally.reject``; the tolerant readers are in ``reading``).
A grouped converter names its records (``record_id``); a streamed one gives each RecordRow its id.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Protocol

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
    "image_stem",
    "record_id",
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

    def reject(self, split: str, reason: str, where: str) -> None:
        """A malformed row: read, and skipped under ``reason``; ``where`` names the file, row and fault."""
        self.saw(split)
        self.skip(split, reason, where=where)


class Converter(Protocol):
    """One dataset layout. ``streaming`` converters yield RecordRow, the others QARow.

    Grouped (non-streaming) converters also have ``record_id(image_key, variant) -> str`` (the id of the
    record of one image) and ``carves_validation`` (True when the dataset may come without a validation
    split, which ``build`` then carves from train).
    """

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


def image_stem(key: str) -> str:
    """``"sub/synpic1.jpg"`` -> ``"sub_synpic1"``: the image name without extension, folders joined by ``_``."""
    stem = key.rsplit(".", 1)[0] if "." in Path(key).name else key
    return stem.replace("/", "_")


def record_id(source: str, stem: str, variant: str | None = None) -> str:
    """``source/stem`` plus ``-variant`` (SLAKE ``--lang all``: one record per image and language)."""
    return f"{source}/{stem}" + (f"-{variant}" if variant else "")
