"""ImageCLEF VQA-Med 2019 (Ben Abacha et al., https://github.com/abachaa/VQA-Med-2019).

Layout (the three official zips unpacked under one folder, searched recursively):

- training: ``QAPairsByCategory/C1_Modality_train.txt`` ... ``C4_Abnormality_train.txt`` (preferred,
  they carry the category) or ``All_QA_Pairs_train.txt``; lines ``imageid|question|answer``;
  images in ``Train_images/``;
- validation: the same with ``_val`` and ``Val_images/``;
- test: ``VQAMed2019_Test_Questions_w_Ref_Answers.txt`` with ``imageid|category|question|answer``;
  images in ``VQAMed2019_Test_Images/``.

The category becomes the turn's question_type (Modality, Plane, Organ, Abnormality). A ``#`` in a
test answer separates accepted alternatives: the first is the answer, all of them are kept in
``Turn.alternatives`` for scoring.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

from vmed.data.converters.base import (
    ConvertOptions,
    QARow,
    Tally,
    image_stem,
    normalise_answer,
    normalise_answer_type,
    record_id,
)
from vmed.data.converters.reading import RowGuard, utf8_lines
from vmed.errors import UserInputError

__all__ = ["VqaMed2019Converter"]

_CAT_FILE = re.compile(r"^C\d+_(?P<cat>[A-Za-z]+)_(?P<split>train|val)\.txt$", re.I)
_ALL_FILE = re.compile(r"^All_QA_Pairs_(?P<split>train|val)\.txt$", re.I)
_SPLIT = {"train": "train", "val": "validation", "test": "test"}
_IMAGE_DIR_HINT = {"train": "train", "validation": "val", "test": "test"}


def _category(raw: str) -> str:
    return raw.strip().capitalize()


class VqaMed2019Converter:
    name = "vqa-med-2019"
    streaming = False
    carves_validation = False
    """VQA-Med 2019 ships a validation split."""

    def record_id(self, image_key: str, variant: str | None) -> str:
        return record_id(self.name, image_stem(image_key), variant)

    def _files(self, path: Path) -> dict[str, list[tuple[Path, str | None, int]]]:
        """split -> [(file, category or None, number of fields)]."""
        if path.is_file():
            path = path.parent
        found: dict[str, list[tuple[Path, str | None, int]]] = {}
        by_cat: dict[str, list] = {}
        all_pairs: dict[str, list] = {}
        for f in sorted(path.rglob("*.txt")):
            m = _CAT_FILE.match(f.name)
            if m:
                by_cat.setdefault(_SPLIT[m["split"].lower()], []).append((f, _category(m["cat"]), 3))
                continue
            m = _ALL_FILE.match(f.name)
            if m:
                all_pairs.setdefault(_SPLIT[m["split"].lower()], []).append((f, None, 3))
                continue
            if "test" in f.name.lower() and "answer" in f.name.lower():
                found.setdefault("test", []).append((f, None, 4))
        for split in ("train", "validation"):
            files = by_cat.get(split) or all_pairs.get(split)
            if files:
                found[split] = files
        if not found:
            raise UserInputError(
                f"{path}: no VQA-Med 2019 files found. Expected QAPairsByCategory/C*_<Category>_{{train,val}}.txt, "
                "All_QA_Pairs_{train,val}.txt or VQAMed2019_Test_Questions_w_Ref_Answers.txt."
            )
        return {s: found[s] for s in ("train", "validation", "test") if s in found}

    def _image_dir(self, root: Path, split: str) -> Path:
        hint = _IMAGE_DIR_HINT[split]
        dirs = sorted(d for d in root.rglob("*") if d.is_dir() and d.name.lower().endswith("images") and hint in d.name.lower())
        return dirs[0] if dirs else root / f"{hint.capitalize()}_images"

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(self._files(path))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow]:
        root = path if path.is_dir() else path.parent
        for split, files in self._files(path).items():
            images = self._image_dir(root, split)
            for file, category, nfields in files:
                yield from self._lines(file, split, category, nfields, images, len(files) == 1, tally)

    def _lines(self, file: Path, split: str, category: str | None, nfields: int, images: Path, qids: bool,
               tally: Tally) -> Iterator[QARow]:
        layout = "imageid|question|answer" if nfields == 3 else "imageid|category|question|answer"
        guard = RowGuard(file, tally, what="line")
        for lineno, where, line in utf8_lines(file, split, guard):
            parts = line.split("|")
            if len(parts) != nfields:
                guard.reject(split, "bad_row", where, f"expected {nfields} fields '{layout}', found {len(parts)}")
                continue
            if not parts[0].strip():
                guard.reject(split, "bad_row", where, "the image id (first field) is empty")
                continue
            guard.ok()
            tally.saw(split)
            if nfields == 4:
                image_id, cat, question, answer_raw = parts
                category = _category(cat)
            else:
                image_id, question, answer_raw = parts
            options = [normalise_answer(a) for a in answer_raw.split("#")] if nfields == 4 else [normalise_answer(answer_raw)]
            options = [a for a in options if a]
            answer = options[0] if options else ""
            name = image_id.strip()
            name = name if Path(name).suffix else f"{name}.jpg"
            yield QARow(
                split=split,
                image_key=name,
                image_path=images / name,
                question=normalise_answer(question),
                answer=answer,
                answer_type=normalise_answer_type(None, answer),
                question_type=category,
                qid=f"{lineno}" if qids else None,
                alternatives=options[1:] if len(options) > 1 else None,
                where=where,
            )
        guard.finish()
