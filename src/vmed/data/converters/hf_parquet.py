"""Hugging Face parquet exports (e.g. flaviagiammarino/vqa-rad, flaviagiammarino/path-vqa).

Layout: ``data/{train,validation,test}-*.parquet`` (or any ``*.parquet`` whose name starts with the
split) with columns ``image`` (a struct ``{bytes, path}``), ``question`` and ``answer``. These rows
have no image names, so the image identity is the sha256 of its bytes: rows with the same bytes are
the same image. Each distinct image is written once to ``OUTPUT/images/<sha256[:16]>.<ext>``.
Parquet files are read in batches, so memory does not hold a whole file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from vmed.data.converters.base import SPLIT_ALIASES, ConvertOptions, DataFormatError, QARow, Tally, image_stem, record_id
from vmed.errors import UserInputError

__all__ = ["HfParquetConverter"]

_EXT = {"jpeg": "jpg", "png": "png", "bmp": "bmp", "tiff": "tif", "dicom": "dcm"}


def _split_of(file: Path) -> str | None:
    stem = file.name.split(".")[0].lower()
    for part in [stem.split("-")[0], stem.split("_")[0], file.parent.name.lower()]:
        if part in SPLIT_ALIASES:
            return SPLIT_ALIASES[part]
    return None


class HfParquetConverter:
    name = "hf-parquet"
    streaming = False
    carves_validation = True
    """flaviagiammarino/vqa-rad has train and test only; ``build`` carves validation from train."""

    def record_id(self, image_key: str, variant: str | None) -> str:
        return record_id(self.name, image_stem(image_key), variant)

    def _files(self, path: Path) -> dict[str, list[Path]]:
        files = [path] if path.is_file() else sorted(path.rglob("*.parquet"))
        out: dict[str, list[Path]] = {}
        for f in files:
            split = _split_of(f)
            if split is None:
                raise UserInputError(
                    f"{f}: cannot tell its split; name parquet files train-*.parquet, validation-*.parquet or test-*.parquet"
                )
            out.setdefault(split, []).append(f)
        if not out:
            raise UserInputError(f"{path}: no *.parquet files found")
        return out

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(self._files(path))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow]:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise UserInputError("hf-parquet needs pyarrow: pip install 'vmed[data]'") from None
        from vmed.imaging import sniff_format

        assert opts.images_dir is not None
        written: set[str] = set()
        for split, files in self._files(path).items():
            for file in files:
                try:
                    pf = pq.ParquetFile(file)
                except (pa.ArrowException, OSError) as e:
                    raise DataFormatError(f"{file}: not a readable parquet file ({e})") from None
                names = set(pf.schema_arrow.names)
                for col in ("image", "question", "answer"):
                    if col not in names:
                        raise DataFormatError(f"{file}: missing column '{col}' (expected image{{bytes,path}}, question, answer)")
                row_index = 0
                for batch in pf.iter_batches(batch_size=256, columns=["image", "question", "answer"]):
                    for rec in batch.to_pylist():
                        i = row_index
                        row_index += 1
                        tally.saw(split)
                        img = rec["image"]
                        data = img.get("bytes") if isinstance(img, dict) else None
                        if not isinstance(data, bytes) or not data:
                            tally.skip(split, "image_missing", where=f"{file}, row {i}")
                            continue
                        digest = hashlib.sha256(data).hexdigest()
                        key = f"{digest[:16]}.{_EXT.get(sniff_format(data) or '', 'bin')}"
                        dest = opts.images_dir / key
                        if key not in written:
                            if not dest.exists():
                                dest.parent.mkdir(parents=True, exist_ok=True)
                                dest.write_bytes(data)
                            written.add(key)
                        meta = {"original_path": str(img["path"])} if img.get("path") else {}
                        yield QARow.from_raw(
                            split, key, dest, rec["question"], rec["answer"],
                            qid=i,
                            meta=meta,
                            where=f"{file}, row {i}",
                        )
