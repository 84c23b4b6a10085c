"""Tolerant readers of dataset files: a malformed row or line is skipped and counted, the rest is read.

Two kinds of fault:

- **row-level** (one row that is not an object, lacks a field, holds a list where text belongs, is nested
  too deeply for the JSON parser, one line that is not JSON or not UTF-8): the row is rejected
  (``Tally.reject``, reasons ``bad_row``, ``bad_json``, ``not_utf8``) with its file, row and fault, and the
  conversion goes on;
- **input-level** (the file is not JSON at all, is UTF-16, is not a list of rows, or not one of its rows
  can be read): ``DataFormatError`` naming the file, so that the CLI prints one ``error:`` line.

``RowGuard`` tells the two apart per file: a file with rejected rows and no usable one is input-level.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from vmed.data.converters.base import DataFormatError, Tally

__all__ = ["BadElement", "RowGuard", "load_json", "iter_json_array", "iter_lines", "iter_question_rows", "parse_json_line"]

_TEXT = (str, int, float, bool)


class BadElement:
    """An element of a JSON array that could not be parsed on its own (nested too deeply); ``message`` says why."""

    def __init__(self, message: str):
        self.message = message


class RowGuard:
    """Counts the usable and rejected rows of one input file; ``finish`` raises when none was usable."""

    def __init__(self, file: Path, tally: Tally, what: str = "row"):
        self.file, self.tally, self.what = file, tally, what
        self.good = 0
        self.bad = 0
        self.first: str | None = None

    def ok(self) -> None:
        self.good += 1

    def reject(self, split: str, reason: str, where: str, message: str, late: bool = False) -> None:
        """Count a malformed row; ``late``: one that ``ok`` had already counted as usable."""
        self.good -= late
        self.bad += 1
        if self.first is None:
            self.first = f"{where}: {message}"
        self.tally.reject(split, reason, f"{where}: {message}")

    def finish(self) -> None:
        if self.bad and not self.good:
            raise DataFormatError(
                f"{self.first}. Not one {self.what} of {self.file} could be read ({self.bad} malformed); "
                "check that the file is the one --format expects."
            )


def _utf16(head: bytes, path: Path) -> None:
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataFormatError(f"{path}: UTF-16 text; save it as UTF-8 (e.g. iconv -f UTF-16 -t UTF-8)")


def load_json(path: Path) -> Any:
    """Parse a JSON file, with an error that names the file and position.

    A document nested too deeply for the parser as a whole is read element by element
    (``iter_json_array``), so that one deep element costs only itself.
    """
    with path.open("rb") as f:
        _utf16(f.read(2), path)
    try:
        with path.open("r", encoding="utf-8-sig") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except RecursionError:
        return list(iter_json_array(path))


def parse_json_line(raw: bytes) -> tuple[Any, str | None, str | None]:
    """One JSON line -> (object, None, None) or (None, skip reason, message)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, "not_utf8", f"not UTF-8 text (byte {e.start} of the line)"
    try:
        return json.loads(text), None, None
    except json.JSONDecodeError as e:
        return None, "bad_json", f"not valid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, "bad_json", "JSON nested too deeply to parse"


def utf8_lines(path: Path, split: str, guard: "RowGuard") -> Iterator[tuple[int, str, str]]:
    """``(line number, "file, line N", text)`` for every non-blank UTF-8 line; a line that is not UTF-8 is
    rejected through ``guard`` (counted as ``not_utf8``) and reading goes on."""
    for lineno, raw in iter_lines(path):
        where = f"{path}, line {lineno}"
        try:
            yield lineno, where, raw.decode("utf-8")
        except UnicodeDecodeError as e:
            guard.reject(split, "not_utf8", where, f"not UTF-8 text (byte {e.start} of the line)")


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """``(line number, raw bytes without the line break)`` for every non-blank line; a UTF-8 BOM is dropped."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                _utf16(raw, path)
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield lineno, raw


def iter_question_rows(
    file: Path, rows: Any, required: Sequence[str], expected: str, guard: RowGuard, split: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(index, row)`` for each usable row of a dataset file's list of question rows (parsed JSON or pickle).

    ``rows`` must be a list (else DataFormatError: an input-level fault). A row that is not an object, lacks
    one of the ``required`` fields, or holds a list/object in one of them is rejected under ``split``
    (``bad_row``), its message ending with ``expected`` (what the dataset's rows hold). Call
    ``guard.finish()`` after the loop.
    """
    if not isinstance(rows, list):
        raise DataFormatError(f"{file}: expected a list of question rows, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        where = f"{file}, row {i}"
        if isinstance(row, BadElement):
            guard.reject(split, "bad_row", where, row.message)
            continue
        if not isinstance(row, dict):
            guard.reject(split, "bad_row", where, f"expected an object with {', '.join(required)}")
            continue
        missing = next((k for k in required if k not in row), None)
        if missing is not None:
            guard.reject(split, "bad_row", where, f"missing field '{missing}' ({expected})")
            continue
        wrong = next((k for k in required if row[k] is not None and not isinstance(row[k], _TEXT)), None)
        if wrong is not None:
            guard.reject(split, "bad_row", where, f"field '{wrong}' holds a {type(row[wrong]).__name__}; expected text ({expected})")
            continue
        guard.ok()
        yield i, row


def _value_end(buf: str, pos: int) -> int | None:
    """Index just past the JSON array/object that starts at ``buf[pos]``, or None if ``buf`` ends first.

    A bracket counter that honours strings; used only to step over an element the parser cannot
    recurse into.
    """
    depth, in_str, esc = 0, False, False
    for j in range(pos, len(buf)):
        c = buf[j]
        if in_str:
            if esc:
                esc = False
            elif c == "\\":
                esc = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
            if depth == 0:
                return j + 1
    return None


def iter_json_array(path: Path, chunk_size: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a top-level JSON array one by one, reading ``chunk_size`` characters at a time.

    Memory holds one chunk plus one element, whatever the file size (LLaVA-Med alignment is
    500K records in one array). Uses ``json.JSONDecoder.raw_decode`` on a sliding buffer. An element
    nested too deeply for the parser is yielded as a ``BadElement``; a syntax error is input-level
    (DataFormatError), since the rest of the array cannot be found reliably after it.
    """
    with path.open("rb") as f:
        _utf16(f.read(2), path)
    try:
        yield from _array_elements(path, chunk_size)
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{path}: not UTF-8 text ({e.reason}); save it as UTF-8") from None


def _array_elements(path: Path, chunk_size: int) -> Iterator[Any]:
    decoder = json.JSONDecoder()
    with path.open("r", encoding="utf-8-sig") as f:
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
                except RecursionError:
                    end = _value_end(buf, pos)
                    if end is None:
                        if fill():
                            continue
                        raise DataFormatError(f"{path}: element {index} is not closed (the file ends inside it)") from None
                    obj = BadElement("JSON nested too deeply to parse")
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

