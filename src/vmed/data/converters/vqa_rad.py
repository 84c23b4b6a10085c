"""VQA-RAD (Lau et al. 2018): the official OSF release and the MEVF processed form.

- Official (https://osf.io/89kps/): ``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``.
  The split is in ``phrase_type``: freeform/para = train, test_freeform/test_para = test.
- MEVF (github.com/aioz-ai/MICCAI19-MedVQA, ``data_RAD``): ``trainset.json``, ``testset.json``, ``images/``.
  It adds ``frame`` rows (templated questions), kept only with ``--include-frames``.

Quirks handled: int answers, ``answer_type`` with a trailing space (``"CLOSED "``), combined
question types (``"PRES, POS"``) and typos (``PRSE``, ``ATRIB``, ``Other``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from vmed.data.converters.base import ConvertOptions, QARow, Tally, image_stem, record_id
from vmed.data.converters.reading import RowGuard, iter_question_rows, load_json
from vmed.errors import UserInputError

__all__ = ["VqaRadConverter", "normalise_vqa_rad_qtype"]

OFFICIAL_JSON = "VQA_RAD Dataset Public.json"
OFFICIAL_IMAGES = "VQA_RAD Image Folder"
_OFFICIAL_SPLIT = {"freeform": "train", "para": "train", "frame": "train", "test_freeform": "test", "test_para": "test"}
_QTYPE_TYPOS = {"PRSE": "PRES", "ATRIB": "ATTRIB"}
_REQUIRED = ("image_name", "question", "answer")


def normalise_vqa_rad_qtype(raw: Any) -> str | None:
    """``"pres, pos "`` -> ``"PRES, POS"``; known typos fixed (PRSE -> PRES, ATRIB -> ATTRIB)."""
    if raw is None or not str(raw).strip():
        return None
    parts = [p.strip().upper() for p in str(raw).split(",") if p.strip()]
    return ", ".join(_QTYPE_TYPOS.get(p, p) for p in parts)


class VqaRadConverter:
    name = "vqa-rad"
    streaming = False
    carves_validation = True
    """VQA-RAD has train and test only; ``build`` carves a validation split from train (by image)."""

    def record_id(self, image_key: str, variant: str | None) -> str:
        return record_id(self.name, image_stem(image_key), variant)

    def _layout(self, path: Path) -> tuple[str, dict[str, Path], Path]:
        if path.is_file():
            path = path.parent
        official = path / OFFICIAL_JSON
        if official.is_file():
            return "official", {"all": official}, path / OFFICIAL_IMAGES
        files = {s: path / f"{s}set.json" for s in ("train", "test") if (path / f"{s}set.json").is_file()}
        if files:
            return "mevf", files, path / "images"
        raise UserInputError(
            f"{path}: not a VQA-RAD folder. Expected '{OFFICIAL_JSON}' (official OSF release) "
            "or trainset.json/testset.json (MEVF form)."
        )

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        layout, files, _ = self._layout(path)
        return ["train", "test"] if layout == "official" else list(files)

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow]:
        layout, files, images = self._layout(path)
        for file_split, file in files.items():
            expected = f"VQA-RAD rows have {', '.join(_REQUIRED)}, ..."
            guard = RowGuard(file, tally)
            # the official file's rows carry their split (phrase_type); a malformed one is counted as "unsplit"
            bad_split = "unsplit" if layout == "official" else file_split
            for i, row in iter_question_rows(file, load_json(file), _REQUIRED, expected, guard, bad_split):
                phrase = str(row.get("phrase_type", "")).strip()
                if layout == "official":
                    if phrase not in _OFFICIAL_SPLIT:
                        guard.reject(bad_split, "bad_row", f"{file}, row {i}",
                                     f"phrase_type {phrase!r} is not one of {sorted(_OFFICIAL_SPLIT)}; it decides the split", late=True)
                        continue
                    split = _OFFICIAL_SPLIT[phrase]
                else:
                    split = file_split
                name = str(row["image_name"] if row["image_name"] is not None else "").strip()
                if not name:
                    guard.reject(split, "bad_row", f"{file}, row {i}", "field 'image_name' is empty", late=True)
                    continue
                tally.saw(split)
                if phrase == "frame" and not opts.include_frames:
                    tally.skip(split, "frame_row")
                    continue
                meta = {"organ": str(row["image_organ"]).strip()} if row.get("image_organ") else {}
                yield QARow.from_raw(
                    split, name, images / name, row["question"], row["answer"], row.get("answer_type"),
                    qid=row.get("qid"),
                    question_type=normalise_vqa_rad_qtype(row.get("question_type")),
                    meta=meta,
                    where=f"{file}, row {i}",
                )
            guard.finish()
