"""Hostile inputs through every converter, via ``vmed data convert`` (the CLI boundary): seeded and bounded.

- **Rows.** Bad rows (each must be skipped and counted) and odd-but-valid rows (each must be kept as one
  turn, its text as text) are mixed into the valid rows of each format (``_fuzz_convert``). The run must
  exit 0, keep every valid row of the clean dataset plus every odd one, count every bad one under a skip
  reason in report.json, and write nothing outside the output folder (``--copy-images`` is on).
- **Bytes.** One data file's bytes are mutated (truncated, flipped, latin-1 / invalid UTF-8 / NUL / BOM,
  UTF-16, empty, another JSON type). The run must end with exit 0 and every row read accounted for (kept
  or skipped) and the written files matching the report, or exit 2 with one ``error:`` line naming the
  file: never an internal error or a traceback, never a write outside the output folder.

``VMED_FUZZ_ROUNDS`` (default 2) sets the seeds per format and mutation; ``VMED_FUZZ_TALLY=path`` appends one
JSON line per conversion (format, input, exit code, skip reasons) for ``benchmarks/fuzz_tally.py``.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from pathlib import Path

import pytest
from _fixtures_data import make_image
from _fuzz_convert import CASES, MARK, MUTATIONS, copy_case

from vmed.cli import main

ROUNDS = int(os.environ.get("VMED_FUZZ_ROUNDS", "2"))
MALFORMED = {"bad_row", "bad_record", "bad_json", "not_utf8", "image_path_unsafe", "image_missing", "image_unreadable",
             "empty_answer", "empty_question", "unreadable_row_group"}
"""The skip reasons a bad row may be counted under."""


def _tally(**fields) -> None:
    path = os.environ.get("VMED_FUZZ_TALLY")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(fields) + "\n")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """Each case's clean dataset and the report of its conversion (the baseline)."""
    base = tmp_path_factory.mktemp("clean")
    out = {}
    for name, case in CASES.items():
        src = case.build(base / name)
        rc, report, _ = _convert(case, src, base / f"{name}-out", base)
        assert rc == 0, name
        out[name] = (base / name, src, report)
    return out


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _convert(case, src: Path, out: Path, sandbox: Path, capsys=None):
    before = _files(sandbox)
    args = ["data", "convert", "-f", case.format, "-i", str(src), "-o", str(out), "-q", "--copy-images"]
    rc = main(args)
    err = capsys.readouterr().err if capsys is not None else ""
    created = _files(sandbox) - before
    outside = [p for p in created if not p.resolve().is_relative_to(out.resolve()) and p != out]
    assert not outside, f"{case.format}: written outside the output folder: {outside}"
    report = json.loads((out / "report.json").read_text(encoding="utf-8")) if rc == 0 else None
    return rc, report, err


def _totals(report: dict) -> tuple[int, int, int, Counter]:
    read = kept = 0
    skipped: Counter = Counter()
    for s in report["splits"].values():
        read += s["rows_read"]
        kept += s["rows_kept"]
        skipped.update(s["skipped"])
    return read, kept, sum(skipped.values()), skipped


def _check_accounted(case, report: dict, out: Path) -> None:
    """Every row read is kept or counted; the files hold what the report says."""
    read, kept, skipped, _ = _totals(report)
    assert read == kept + skipped, (case.format, report["splits"])
    for split, s in report["splits"].items():
        path = out / f"{split}.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        assert len(lines) == s["records"], (case.format, split)
        turns = sum(len(json.loads(x)["turns"]) for x in lines)
        if case.streaming:
            assert len(lines) == s["rows_kept"]
        else:
            assert turns == s["rows_kept"], (case.format, split)


def _texts(out: Path) -> list[str]:
    found = []
    for f in out.glob("*.jsonl"):
        for line in f.read_text(encoding="utf-8").splitlines():
            for t in json.loads(line)["turns"]:
                found += [t["question"], t["answer"]]
    return found


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_rows_are_counted_and_every_valid_row_is_kept(name, clean, tmp_path, capsys):
    case = CASES[name]
    root0, src0, base = clean[name]
    _, kept0, skipped0, reasons0 = _totals(base)
    for seed in range(ROUNDS):
        rng = random.Random(f"{name}-{seed}")
        work = tmp_path / f"s{seed}"
        copy_case(root0, work / name)
        outside = make_image(work / "outside" / "evil.jpg", seed=99)
        injected = case.inject(work / name, rng, outside)
        src = work / name / src0.relative_to(root0)
        rc, report, err = _convert(case, src, work / "out", work, capsys)
        _tally(test="rows", format=name, seed=seed, rc=rc, injected_bad=injected.bad, injected_odd=injected.odd,
               skipped=dict(_totals(report)[3]) if report else None, error=err.strip() if rc else None)
        assert rc == 0 and "error" not in err and "Traceback" not in err, err
        _, kept, skipped, reasons = _totals(report)
        assert kept == kept0 + injected.odd, (name, seed, kept, kept0, injected)
        assert skipped == skipped0 + injected.bad, (name, seed, reasons, reasons0, injected)
        assert set(reasons - reasons0) <= MALFORMED, reasons
        _check_accounted(case, report, work / "out")
        texts = _texts(work / "out")
        assert len([t for t in texts if "ODD" in t]) == injected.odd
        assert sum(t.count(MARK) for t in texts) == injected.special  # special tokens came through as text
        images = work / "out" / "images"
        assert all(p.resolve().is_relative_to(images.resolve()) for p in images.rglob("*"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_mutated_bytes_give_a_clean_run_or_one_error_line(name, clean, tmp_path, capsys):
    case = CASES[name]
    root0, src0, base = clean[name]
    outcomes = Counter()
    for mutation, op in MUTATIONS.items():
        for seed in range(ROUNDS):
            rng = random.Random(f"{name}-{mutation}-{seed}")
            work = tmp_path / f"{mutation}-{seed}"
            copy_case(root0, work / name)
            files = case.data_files(work / name)
            target = rng.choice(files)
            target.write_bytes(op(target.read_bytes(), rng))
            src = work / name / src0.relative_to(root0)
            out = work / "out"
            rc, report, err = _convert(case, src, out, work, capsys)
            lines = err.strip().splitlines()
            _tally(test="bytes", format=name, mutation=mutation, seed=seed, rc=rc,
                   skipped=dict(_totals(report)[3]) if report else None, error=err.strip() if rc else None)
            assert "Traceback" not in err and "internal error" not in err, (mutation, err)
            assert rc in (0, 2), (mutation, rc, err)
            if rc == 2:
                assert len(lines) == 1 and lines[0].startswith("error: "), (mutation, err)
                assert target.name in lines[0] or target.parent.name in lines[0], (mutation, lines[0])
                assert not list(out.glob("*.jsonl")), "a failed run leaves no half-written split file"
            else:
                _check_accounted(case, report, out)
            outcomes[rc] += 1
    assert outcomes[0] or outcomes[2]


def test_output_that_is_a_file_is_one_error_line(clean, tmp_path, capsys):
    case = CASES["llava-jsonl"]
    _, src, _ = clean["llava-jsonl"]
    target = tmp_path / "out.txt"
    target.write_text("keep me")
    assert main(["data", "convert", "-f", case.format, "-i", str(src), "-o", str(target), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a file" in err[0] and target.read_text() == "keep me"


@pytest.mark.parametrize("checksums", [False, True])
def test_a_corrupt_parquet_row_group_costs_only_its_rows(tmp_path, capsys, checksums):
    """Rows before and after a corrupt row group are kept; its rows are counted as unreadable_row_group."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from _fixtures_data import image_bytes

    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    n = 12
    table = pa.table({"image": pa.array([{"bytes": image_bytes(i), "path": None} for i in range(n)], type=struct),
                      "question": [f"question {i}?" for i in range(n)], "answer": ["yes"] * n})
    f = tmp_path / "data" / "train-00000-of-00001.parquet"
    f.parent.mkdir()
    pq.write_table(table, f, row_group_size=4, write_page_checksum=checksums)
    col = pq.ParquetFile(f).metadata.row_group(1).column(0)
    data = bytearray(f.read_bytes())
    # with checksums: flip bytes inside the page data (the CRC catches it); without: in the page header
    chunk = col.dictionary_page_offset or col.data_page_offset
    start = chunk + col.total_compressed_size // 2 if checksums else col.data_page_offset + 20
    for k in range(start, start + 64):
        data[k] ^= 0x5A
    f.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main(["data", "convert", "-f", "hf-parquet", "-i", str(tmp_path / "data"), "-o", str(out), "-q",
                 "--validation-fraction", "0"]) == 0
    printed = capsys.readouterr().out
    train = json.loads((out / "report.json").read_text())["splits"]["train"]
    assert (train["rows_read"], train["rows_kept"], train["skipped"]) == (12, 8, {"unreadable_row_group": 4})
    assert train["skipped_examples"]["unreadable_row_group"][0].startswith(f"{f}, row group 1 (rows 4-7): ")
    assert "unreadable_row_group: first at" in printed
    kept = {t["question"] for line in (out / "train.jsonl").read_text().splitlines() for t in json.loads(line)["turns"]}
    assert kept == {f"question {i}?" for i in (0, 1, 2, 3, 8, 9, 10, 11)}
    for g in range(3):  # every row group corrupt: not one row readable is an input error naming the file
        col = pq.ParquetFile(f).metadata.row_group(g).column(0)
        for k in range(col.data_page_offset + 20, col.data_page_offset + 84):
            data[k] ^= 0xA5
    f.write_bytes(bytes(data))
    assert main(["data", "convert", "-f", "hf-parquet", "-i", str(f), "-o", str(tmp_path / "o2"), "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(f) in err[0] and "not one row" in err[0]
