"""Image captions for stage 1: ROCO and LLaVA-Med alignment JSON, streamed.

- ROCO (Pelka et al. 2018, https://github.com/razorx89/roco-dataset): ``captions.txt`` files
  (``ROCO_ID<TAB>caption``) next to an ``images/`` folder (``images/ROCO_ID.jpg``); the official
  layout is ``data/{train,validation,test}/{radiology,non-radiology}/``. The split comes from the
  path; the subset (radiology / non-radiology) goes in meta.
- LLaVA-Med alignment (``llava_med_alignment_500k.json``): a JSON array of LLaVA records whose gpt
  turn is the figure caption.

Each caption becomes a one-turn "describe" record: question ``SUMMARY_PROMPT`` ("Describe the
image."), answer = the caption, summary = the caption.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

from vmed.constants import SUMMARY_PROMPT
from vmed.data.converters.base import SPLIT_ALIASES, ConvertOptions, RecordRow, Tally, normalise_answer
from vmed.data.converters.reading import RowGuard, utf8_lines
from vmed.data.converters.llava import iter_llava_file, llava_files, record_name
from vmed.errors import UserInputError

__all__ = ["RocoConverter"]


def _caption_split(file: Path, opts: ConvertOptions) -> str:
    for part in reversed(file.parts[:-1]):
        if part.lower() in SPLIT_ALIASES:
            return SPLIT_ALIASES[part.lower()]
    return opts.split or "train"


class RocoConverter:
    name = "roco"
    streaming = True

    def _inputs(self, path: Path, opts: ConvertOptions) -> dict[str, list[Path]]:
        if path.is_file() and path.suffix in (".json", ".jsonl"):
            return llava_files(path, opts)
        caps = [path] if path.is_file() else sorted(path.rglob("captions.txt"))
        if not caps:
            if path.is_dir() and any(p.suffix == ".json" for p in path.iterdir()):
                return llava_files(path, opts)
            raise UserInputError(f"{path}: no captions.txt (ROCO) or .json (LLaVA-Med alignment) found")
        out: dict[str, list[Path]] = {}
        for f in caps:
            out.setdefault(_caption_split(f, opts), []).append(f)
        return out

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(self._inputs(path, opts))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[RecordRow]:
        for split, files in self._inputs(path, opts).items():
            for file in files:
                if file.suffix in (".json", ".jsonl"):
                    yield from self._alignment(file, split, opts, tally)
                else:
                    yield from self._captions(file, split, tally)

    def _captions(self, file: Path, split: str, tally: Tally) -> Iterator[RecordRow]:
        subset = file.parent.name if file.parent.name.lower() in ("radiology", "non-radiology") else None
        images = str(file.parent / "images")
        guard = RowGuard(file, tally, what="line")
        for lineno, where, line in utf8_lines(file, split, guard):
            roco_id, tab, caption = line.partition("\t")
            roco_id = roco_id.strip()
            if not tab or not roco_id:
                guard.reject(split, "bad_row", where, "expected 'ROCO_ID<TAB>caption'")
                continue
            guard.ok()
            tally.saw(split)
            caption = normalise_answer(caption)
            yield RecordRow(
                split=split,
                id=f"roco/{roco_id}",
                image_key=f"{roco_id}.jpg",
                image_path=os.path.join(images, f"{roco_id}.jpg"),
                turns=[(SUMMARY_PROMPT, caption)],
                summary=caption or None,
                meta={"subset": subset} if subset else {},
                where=where,
            )
        guard.finish()

    def _alignment(self, file: Path, split: str, opts: ConvertOptions, tally: Tally) -> Iterator[RecordRow]:
        root = opts.image_root or file.parent
        for i, el, turns, image_path, where in iter_llava_file(file, split, root, tally):
            caption = turns[0][1] if turns else ""
            yield RecordRow(
                split=split,
                id=record_name(el, file, i),
                image_key=str(el["image"]) if el.get("image") else None,
                image_path=image_path,
                turns=[(SUMMARY_PROMPT, caption)],
                summary=caption or None,
                where=where,
            )
