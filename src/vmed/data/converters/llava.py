"""LLaVA conversation JSON (e.g. LLaVA-Med instruct 60K), streamed; used for stage 2.

Each element: ``{"id": ..., "image": "relative/path.jpg", "conversations": [{"from": "human",
"value": "<image>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}``. The ``<image>`` token may
be anywhere in the first human turn; it is removed from the question. Turns keep their order.
Images are relative to ``--image-root`` (default: the JSON file's folder). Input: a ``.json``
array or ``.jsonl`` file (split from ``--split``, or from the file name when it is train/val/test),
or a folder of them. The array is parsed incrementally, so memory does not grow with the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

from vmed.constants import IMAGE_TOKEN
from vmed.data.converters.base import SPLIT_ALIASES, ConvertOptions, DataFormatError, RecordRow, Tally, normalise_answer
from vmed.data.converters.reading import BadElement, RowGuard, iter_json_array, iter_lines, parse_json_line
from vmed.errors import UserInputError

__all__ = ["LlavaConverter", "iter_llava_file", "llava_files", "parse_conversation", "record_name"]

_HUMAN = {"human", "user"}
_GPT = {"gpt", "assistant"}
_TEXT = (str, int, float, bool)


def llava_files(path: Path, opts: ConvertOptions) -> dict[str, list[Path]]:
    """split -> JSON/JSONL files."""
    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl"))
    if not files:
        raise UserInputError(f"{path}: no .json or .jsonl files found")
    out: dict[str, list[Path]] = {}
    for f in files:
        split = SPLIT_ALIASES.get(f.stem.lower()) or opts.split or "train"
        out.setdefault(split, []).append(f)
    return out


def parse_conversation(conv: Any, where: str) -> list[tuple[str, str]]:
    """``conversations`` -> [(question, answer)], with the ``<image>`` token removed; DataFormatError if malformed."""
    if not isinstance(conv, list) or not conv:
        raise DataFormatError(f"{where}: field 'conversations' must be a non-empty list of {{from, value}} turns")
    turns: list[tuple[str, str]] = []
    for j in range(0, len(conv) - 1, 2):
        h, g = conv[j], conv[j + 1]
        if not isinstance(h, dict) or not isinstance(g, dict) or "value" not in h or "value" not in g:
            raise DataFormatError(f"{where}: conversations[{j}] and [{j + 1}] must be objects with 'from' and 'value'")
        if str(h.get("from", "")).lower() not in _HUMAN or str(g.get("from", "")).lower() not in _GPT:
            raise DataFormatError(
                f"{where}: conversations[{j}] must be from 'human' and [{j + 1}] from 'gpt' "
                f"(found {h.get('from')!r}, {g.get('from')!r})"
            )
        if not isinstance(h["value"], _TEXT) or not isinstance(g["value"], _TEXT):
            raise DataFormatError(f"{where}: conversations[{j}] and [{j + 1}] must have text values")
        question = str(h["value"]).replace(IMAGE_TOKEN, " ")
        turns.append((normalise_answer(question), normalise_answer(g["value"])))
    return turns


def _elements(file: Path, guard: RowGuard, split: str) -> Iterator[tuple[int, str, Any]]:
    """(index, where, parsed element) of a .json array or .jsonl file; bad JSONL lines are rejected here."""
    if file.suffix != ".jsonl":
        for i, el in enumerate(iter_json_array(file)):
            yield i, f"{file}, element {i}", el
        return
    for i, (lineno, raw) in enumerate(iter_lines(file)):
        el, reason, message = parse_json_line(raw)
        if reason is not None:
            guard.reject(split, reason, f"{file}, line {lineno}", message or reason)
            continue
        yield i, f"{file}, line {lineno}", el


def iter_llava_file(file: Path, split: str, image_root: Path, tally: Tally) -> Iterator[tuple[int, dict, list, str | None, str]]:
    """Yield (index, raw element, turns, image path, where) for each usable element of a LLaVA JSON/JSONL file.

    A malformed element (not an object, no usable ``conversations``, an image that is not one path) is
    rejected (``bad_record``, ``bad_json``, ``not_utf8``) and counted; a file of nothing else is an error.
    """
    root = str(image_root)
    guard = RowGuard(file, tally, what="record")
    for i, where, el in _elements(file, guard, split):
        if isinstance(el, BadElement):
            guard.reject(split, "bad_json", where, el.message)
            continue
        if not isinstance(el, dict):
            guard.reject(split, "bad_record", where, "expected an object with id, image, conversations")
            continue
        if "conversations" not in el:
            guard.reject(split, "bad_record", where, "missing field 'conversations' (LLaVA records have id, image, conversations)")
            continue
        image = el.get("image")
        if image is not None and not isinstance(image, str):
            guard.reject(split, "bad_record", where, f"field 'image' holds a {type(image).__name__}; expected one path")
            continue
        try:
            turns = parse_conversation(el["conversations"], where)
        except DataFormatError as e:
            guard.reject(split, "bad_record", where, str(e).removeprefix(f"{where}: "))
            continue
        guard.ok()
        tally.saw(split)
        path = os.path.join(root, image) if image else None
        yield i, el, turns, path, where
    guard.finish()


def record_name(el: dict, file: Path, index: int) -> str:
    """The element's ``id``, or ``<file stem>-<index>`` where it has none."""
    rid = el.get("id")
    return str(rid) if rid is not None and str(rid).strip() else f"{file.stem}-{index}"


class LlavaConverter:
    name = "llava"
    streaming = True

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(llava_files(path, opts))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[RecordRow]:
        for split, files in llava_files(path, opts).items():
            for file in files:
                root = opts.image_root or file.parent
                for i, el, turns, image_path, where in iter_llava_file(file, split, root, tally):
                    meta = {k: v for k, v in el.items() if k not in ("id", "image", "conversations", "summary")}
                    summary = el.get("summary") if isinstance(el.get("summary"), str) else None
                    yield RecordRow(
                        split=split,
                        id=record_name(el, file, i),
                        image_key=str(el["image"]) if el.get("image") else None,
                        image_path=image_path,
                        turns=turns,
                        summary=summary,
                        meta=meta,
                        where=where,
                    )
