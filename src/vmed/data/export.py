"""``vmed data export``: dialogue JSONL -> the formats other trainers read.

- ``llava``: one JSON array of ``{"id", "image", "conversations": [{"from": "human", "value":
  "<image>\\nQ1"}, {"from": "gpt", "value": "A1"}, ...], "summary"}`` (LLaVA / LLaVA-Med); the
  ``<image>`` token starts the first human turn.
- ``messages``: OpenAI-messages JSONL as LLaMA-Factory (sharegpt ``messages`` + ``images``) and
  ms-swift read it: ``{"messages": [{"role": "user", "content": "<image>Q1"}, {"role": "assistant",
  "content": "A1"}, ...], "images": ["path"]}``.

Image paths are rewritten relative to the output file's folder (absolute if on another drive).
Records are streamed; the output is written to a temporary file and renamed at the end. A line that is
not a valid record is skipped and named (``skipped``); a file with no valid record at all is an error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vmed._io import atomic_open
from vmed.constants import IMAGE_TOKEN
from vmed.data.schema import Dialogue, RecordError, iter_jsonl_lenient, resolve_image
from vmed.errors import UserInputError

__all__ = ["export", "to_llava", "to_messages", "EXPORT_FORMATS"]

EXPORT_FORMATS = ("llava", "messages")


def _image_for(d: Dialogue, src: Path, out: Path) -> str | None:
    img = resolve_image(d, src)
    if img is None:
        return None
    try:
        return os.path.relpath(img, out.resolve().parent)
    except ValueError:  # another drive (Windows)
        return str(img)


def to_llava(d: Dialogue, image: str | None) -> dict[str, Any]:
    """One record as a LLaVA conversation (``<image>\\n`` starts the first human turn when there is an image)."""
    conv = []
    for i, t in enumerate(d.turns):
        q = f"{IMAGE_TOKEN}\n{t.question}" if i == 0 and image else t.question
        conv.append({"from": "human", "value": q})
        conv.append({"from": "gpt", "value": t.answer})
    rec: dict[str, Any] = {"id": d.id, "image": image, "conversations": conv}
    if image is None:
        del rec["image"]
    if d.summary:
        rec["summary"] = d.summary
    return rec


def to_messages(d: Dialogue, image: str | None) -> dict[str, Any]:
    """One record as OpenAI-style messages with an ``images`` list (LLaMA-Factory / ms-swift)."""
    messages = []
    for i, t in enumerate(d.turns):
        q = f"{IMAGE_TOKEN}{t.question}" if i == 0 and image else t.question
        messages.append({"role": "user", "content": q})
        messages.append({"role": "assistant", "content": t.answer})
    return {"messages": messages, "images": [image] if image else []}


def export(src: str | os.PathLike, to: str, output: str | os.PathLike, skipped: list[str] | None = None) -> int:
    """Export the records of ``src`` (a dialogue JSONL file) to ``output``; return the number written.

    Lines that are not valid records are left out; their messages (file:line: fault) go in ``skipped``.
    """
    if to not in EXPORT_FORMATS:
        raise UserInputError(f"--to {to!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    src, out = Path(src), Path(output)
    if not src.is_file():
        raise UserInputError(f"{src}: no such file (export reads one dialogue JSONL file, e.g. DIR/train.jsonl)")
    if out.is_dir():
        raise UserInputError(f"--output {out}: is a folder; give a file name, e.g. {out / 'train_llava.json'}")
    bad = skipped if skipped is not None else []
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with atomic_open(out) as f:  # a failure leaves no partial file behind
        if to == "llava":
            f.write("[\n")
        for d in iter_jsonl_lenient(src):
            if isinstance(d, RecordError):
                bad.append(str(d))
                continue
            image = _image_for(d, src, out)
            if to == "llava":
                f.write((",\n" if n else "") + json.dumps(to_llava(d, image), ensure_ascii=False))
            else:
                f.write(json.dumps(to_messages(d, image), ensure_ascii=False) + "\n")
            n += 1
        if to == "llava":
            f.write("\n]\n")
        if bad and not n:
            raise UserInputError(f"{bad[0]}; not one of the {len(bad)} lines of {src} is a valid dialogue record")
    return n
