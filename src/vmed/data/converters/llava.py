"""LLaVA conversation JSON (e.g. LLaVA-Med instruct 60K), streamed; used for stage 2.

Each element: ``{"id": ..., "image": "relative/path.jpg", "conversations": [{"from": "human",
"value": "<image>\\nQuestion"}, {"from": "gpt", "value": "Answer"}, ...]}``. The ``<image>`` token may
be anywhere in the first human turn; it is removed from the question. Turns keep their order.
Images are relative to ``--image-root`` (default: the JSON file's folder). Input: a ``.json``
array or ``.jsonl`` file (split from ``--split``, or from the file name when it is train/val/test),
or a folder of them. The array is parsed incrementally, so memory does not grow with the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator

from vmed.constants import IMAGE_TOKEN
from vmed.data.converters.base import (
    SPLIT_ALIASES,
    ConvertOptions,
    DataFormatError,
    RecordRow,
    Tally,
    iter_json_array,
    normalise_answer,
)
from vmed.errors import UserInputError

__all__ = ["LlavaConverter", "iter_llava_file", "llava_files", "parse_conversation"]

_HUMAN = {"human", "user"}
_GPT = {"gpt", "assistant"}


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
    """``conversations`` -> [(question, answer)], with the ``<image>`` token removed."""
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
        question = str(h["value"]).replace(IMAGE_TOKEN, " ")
        turns.append((normalise_answer(question), normalise_answer(g["value"])))
    return turns


def iter_llava_file(file: Path, split: str, image_root: Path, tally: Tally) -> Iterator[tuple[int, dict, list, str | None]]:
    """Yield (index, raw element, turns, image path) for each element of a LLaVA JSON/JSONL file."""
    elements: Iterator[Any]
    root = str(image_root)
    if file.suffix == ".jsonl":
        elements = (json.loads(line) for line in file.open("r", encoding="utf-8") if line.strip())
    else:
        elements = iter_json_array(file)
    for i, el in enumerate(elements):
        where = f"{file}, element {i}"
        if not isinstance(el, dict):
            raise DataFormatError(f"{where}: expected an object with id, image, conversations")
        if "conversations" not in el:
            raise DataFormatError(f"{where}: missing field 'conversations' (LLaVA records have id, image, conversations)")
        tally.saw(split)
        turns = parse_conversation(el["conversations"], where)
        image = el.get("image")
        path = os.path.join(root, str(image)) if image else None
        yield i, el, turns, path


class LlavaConverter:
    name = "llava"
    streaming = True

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(llava_files(path, opts))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[RecordRow]:
        for split, files in llava_files(path, opts).items():
            for file in files:
                root = opts.image_root or file.parent
                for i, el, turns, image_path in iter_llava_file(file, split, root, tally):
                    meta = {k: v for k, v in el.items() if k not in ("id", "image", "conversations", "summary")}
                    summary = el.get("summary") if isinstance(el.get("summary"), str) else None
                    yield RecordRow(
                        split=split,
                        id=str(el.get("id", f"{file.stem}-{i}")),
                        image_key=str(el["image"]) if el.get("image") else None,
                        image_path=image_path,
                        turns=turns,
                        summary=summary,
                        meta=meta,
                        where=f"{file}, element {i}",
                    )
