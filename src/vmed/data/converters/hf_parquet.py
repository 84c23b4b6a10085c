"""Hugging Face parquet exports (e.g. flaviagiammarino/vqa-rad, flaviagiammarino/path-vqa).

Layout: ``data/{train,validation,test}-*.parquet`` (or any ``*.parquet`` whose name starts with the
split) with columns ``image`` (a struct ``{bytes, path}``), ``question`` and ``answer``. These rows
have no image names, so the image identity is the sha256 of its bytes: rows with the same bytes are
the same image. Each distinct image is written once to ``OUTPUT/images/<sha256[:16]>.<ext>``.
Parquet files are read in batches, so memory does not hold a whole file. A row group that cannot be
decoded (a corrupt page mid-file) costs only its unread rows, counted as ``unreadable_row_group``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

from vmed.data.converters.base import SPLIT_ALIASES, ConvertOptions, DataFormatError, QARow, Tally, image_stem, record_id
from vmed.errors import UserInputError

# lazy: pyarrow (the optional extra vmed[data]) is imported inside the functions that use it, so the other converters never need it

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
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise UserInputError("hf-parquet needs pyarrow: pip install 'vmed[data]'") from None
        from vmed.imaging import sniff_format

        assert opts.images_dir is not None
        written: set[str] = set()
        for split, files in self._files(path).items():
            for file in files:
                for i, rec in _records(file, split, tally):
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


def _one_line(e: BaseException) -> str:
    """An Arrow error's message on one line (Arrow's messages run over several)."""
    return " ".join(str(e).split()) or type(e).__name__


def _records(file: Path, split: str, tally: Tally) -> Iterator[tuple[int, dict]]:
    """``(row index, row)`` of every readable row of one parquet file, read in batches of 256.

    A file whose footer or schema cannot be read is input-level (DataFormatError). A row group that
    fails to decode part-way (a corrupt page) costs only its remaining rows: the rows read before it are
    kept, its unread rows are counted as ``unreadable_row_group`` (read and skipped, with the file, row
    group and row range), and the next row group is read. A file of which no row could be read is an error.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    errors = (pa.ArrowException, OSError, UnicodeDecodeError)
    try:
        pf = pq.ParquetFile(file, page_checksum_verification=True)  # where the file carries page CRCs
        names = set(pf.schema_arrow.names)
        sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    except errors as e:
        raise DataFormatError(f"{file}: not a readable parquet file ({_one_line(e)})") from None
    for col in ("image", "question", "answer"):
        if col not in names:
            raise DataFormatError(f"{file}: missing column '{col}' (expected image{{bytes,path}}, question, answer)")
    start = read = 0
    for g, size in enumerate(sizes):
        done = 0
        batches = pf.iter_batches(batch_size=256, row_groups=[g], columns=["image", "question", "answer"])
        while True:
            try:
                batch = next(batches, None)
                rows = batch.to_pylist() if batch is not None else None
            except errors as e:
                lost = size - done
                tally.saw(split, lost)
                tally.skip(split, "unreadable_row_group", lost, where=(
                    f"{file}, row group {g} (rows {start + done}-{start + size - 1}): {_one_line(e)}"))
                break
            if rows is None:
                break
            for rec in rows:
                yield start + done, rec
                done += 1
        read += done
        start += size
    if sizes and not read and sum(sizes):
        raise DataFormatError(f"{file}: not one row of the parquet file could be read (every row group is corrupt); "
                              "re-download it")
