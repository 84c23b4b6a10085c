"""SLAKE 1.0 (Liu et al. 2021, https://www.med-vqa.com/slake/).

Layout: ``train.json``, ``validate.json``, ``test.json`` and ``imgs/xmlabN/source.jpg``. Rows carry
``img_name`` ("xmlabN/source.jpg"), ``question``, ``answer``, ``q_lang`` (en/zh), ``location``,
``modality``, ``answer_type``, ``content_type``, ``base_type``, ``triple`` and ``qid``; key order varies.
English only by default (``--lang zh`` or ``--lang all`` for the rest); an empty answer (train qid
1622) is skipped by ``build`` and counted. ``content_type`` becomes the turn's question_type;
location and modality go in the record's meta.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from vmed.data.converters.base import ConvertOptions, QARow, Tally, image_stem, record_id
from vmed.data.converters.reading import RowGuard, iter_question_rows, load_json
from vmed.errors import UserInputError

__all__ = ["SlakeConverter"]

_FILES = {"train": "train.json", "validation": "validate.json", "test": "test.json"}
_REQUIRED = ("img_name", "question", "answer")
LANGS = ("en", "zh", "all")


class SlakeConverter:
    name = "slake"
    streaming = False
    carves_validation = False
    """SLAKE ships a validation split (validate.json)."""

    def record_id(self, image_key: str, variant: str | None) -> str:
        """``xmlab1/source.jpg`` -> ``slake/xmlab1``: every SLAKE image is ``source.jpg`` in its own folder."""
        folder, _, name = image_key.rpartition("/")
        stem = folder if folder and name.rsplit(".", 1)[0] == "source" else image_stem(image_key)
        return record_id(self.name, stem.replace("/", "_"), variant)

    def _files(self, path: Path) -> dict[str, Path]:
        if path.is_file():
            path = path.parent
        files = {s: path / n for s, n in _FILES.items() if (path / n).is_file()}
        if not files:
            raise UserInputError(f"{path}: not a SLAKE folder. Expected train.json, validate.json and/or test.json.")
        return files

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(self._files(path))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow]:
        if opts.lang not in LANGS:
            raise UserInputError(f"--lang {opts.lang!r}: SLAKE has 'en' and 'zh'; use one of {', '.join(LANGS)}")
        files = self._files(path)
        root = next(iter(files.values())).parent
        images = root / "imgs"
        for split, file in files.items():
            expected = f"SLAKE rows have {', '.join(_REQUIRED)}, q_lang, ..."
            guard = RowGuard(file, tally)
            for i, row in iter_question_rows(file, load_json(file), _REQUIRED, expected, guard, split):
                name = str(row["img_name"] if row["img_name"] is not None else "").strip()
                if not name:
                    guard.reject(split, "bad_row", f"{file}, row {i}", "field 'img_name' is empty", late=True)
                    continue
                tally.saw(split)
                lang = str(row.get("q_lang", "en")).strip().lower()
                if opts.lang != "all" and lang != opts.lang:
                    tally.skip(split, "other_language")
                    continue
                meta = {k: str(row[k]).strip() for k in ("location", "modality") if row.get(k)}
                meta["lang"] = lang
                qtype = str(row["content_type"]).strip() if row.get("content_type") else None
                yield QARow.from_raw(
                    split, name, images / name, row["question"], row["answer"], row.get("answer_type"),
                    qid=row.get("qid"),
                    question_type=qtype,
                    meta=meta,
                    variant=lang if opts.lang == "all" else None,
                    where=f"{file}, row {i}",
                )
            guard.finish()
