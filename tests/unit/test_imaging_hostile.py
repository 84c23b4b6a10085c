"""vmed.imaging against hostile files: malformed DICOM tags, a canary name in every tag the loader reads,
VOI LUT tables, and seeded byte mutations of PNG/JPEG/BMP/TIFF/DICOM through the loader and the CLI.

Every outcome must be an image or a typed ``ImageError`` naming the file; no tag value may reach an
exception message, a log record, a warning, stdout or stderr.
"""

from __future__ import annotations

import io
import logging
import math
import random
import struct
import subprocess
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from vmed.imaging import CorruptImage, ImageError, UnsupportedImageFormat, load_dicom_hu, load_image
from vmed.imaging import dicom as dicom_module

CANARY = "Zyxcanary^Qwv"


class _AllRecords(logging.Handler):
    """Collects every record that reaches the root logger, at any level."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() + (str(r.exc_info) if r.exc_info else "") for r in self.records)


@pytest.fixture
def all_logs():
    """A root handler at DEBUG with pydicom/PIL loggers at DEBUG too, so that nothing is hidden by levels."""
    handler = _AllRecords()
    root = logging.getLogger()
    old = root.level, logging.getLogger("pydicom").level, logging.getLogger("PIL").level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    logging.getLogger("pydicom").setLevel(logging.DEBUG)
    logging.getLogger("PIL").setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old[0])
        logging.getLogger("pydicom").setLevel(old[1])
        logging.getLogger("PIL").setLevel(old[2])


def build_dicom(pixels: np.ndarray | None = None, *, raw: dict | None = None, **tags) -> bytes:
    """A Part 10 file; ``raw`` sets elements to arbitrary (possibly invalid) text, written without validation."""
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) if pixels is None else pixels
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "CT", CANARY, CANARY[:16]
    ds.set_pixel_data(pixels, "MONOCHROME2", 16)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    for keyword, (vr, value) in (raw or {}).items():
        if isinstance(value, int):
            value = struct.pack("<H", value)
        else:
            value = value.encode("latin-1")
            value += b" " if len(value) % 2 else b""
        tag = Tag(tag_for_keyword(keyword))
        target = ds.file_meta if keyword == "TransferSyntaxUID" else ds
        target[tag] = RawDataElement(tag, vr, len(value), value, 0, False, True)  # written as is, never validated
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pydicom.dcmwrite(buf, ds, implicit_vr=False, little_endian=True, enforce_file_format=True)
    return buf.getvalue()


# Each tag vmed.imaging reads (or pydicom reads for it), set to the canary name.
CANARY_TAGS = {
    "NumberOfFrames": ("IS", CANARY),
    "RescaleSlope": ("DS", CANARY),
    "RescaleIntercept": ("DS", CANARY),
    "WindowCenter": ("DS", CANARY),
    "WindowWidth": ("DS", CANARY),
    "VOILUTFunction": ("CS", CANARY),
    "PhotometricInterpretation": ("CS", CANARY),
    "Modality": ("CS", CANARY),
    "RescaleType": ("LO", CANARY),
    "TransferSyntaxUID": ("UI", CANARY),
    "PixelRepresentation": ("US", 7),
    "PlanarConfiguration": ("US", 9),
}


def _outcome(fn, data: bytes, name: str) -> str:
    try:
        fn(data, name=name)
        return "ok"
    except ImageError as e:
        return f"{type(e).__name__}: {e}"


@pytest.mark.parametrize("keyword", sorted(CANARY_TAGS))
def test_a_canary_name_in_any_tag_never_reaches_messages_logs_or_warnings(keyword, all_logs, capsys):
    data = build_dicom(raw={keyword: CANARY_TAGS[keyword]})
    assert CANARY.encode() in data
    all_logs.records.clear()  # building the file logs pydicom's own validation warnings
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        outcomes = [_outcome(load_image, data, "case.dcm"), _outcome(load_dicom_hu, data, "case.dcm")]
        for preset in ("lung", None):
            outcomes.append(_outcome(lambda d, name: load_image(d, name=name, preset=preset), data, "case.dcm"))
    out = capsys.readouterr()
    everything = "\n".join(outcomes + [all_logs.text(), out.out, out.err] + [str(w.message) for w in caught])
    assert CANARY not in everything and CANARY.upper() not in everything and "Zyxcanary" not in everything
    for text in outcomes:
        assert text == "ok" or "case.dcm" in text  # every error names the file


def test_safe_meta_reports_only_standard_codes():
    data = build_dicom(raw={"Modality": ("CS", "ZEDCANARY")}, WindowCenter=30, WindowWidth=60)
    _, meta = load_dicom_hu(data)
    assert meta["modality"] is None  # free text in Modality is never reported
    _, meta = load_dicom_hu(build_dicom(WindowCenter=30, WindowWidth=60))
    assert meta["modality"] == "CT" and meta["window"] == (30.0, 60.0)


@pytest.mark.parametrize(
    "case, expected",
    [
        ({"raw": {"RescaleSlope": ("DS", "1e999")}, "RescaleIntercept": 0}, CorruptImage),
        ({"raw": {"RescaleSlope": ("DS", "abc")}, "RescaleIntercept": 0}, CorruptImage),
        ({"raw": {"NumberOfFrames": ("IS", "-3")}}, CorruptImage),
        ({"raw": {"TransferSyntaxUID": ("UI", "1.2.3.4.5")}}, UnsupportedImageFormat),
        ({"raw": {"BitsStored": ("US", 0)}}, CorruptImage),
    ],
    ids=["slope-inf", "slope-text", "frames-negative", "unknown-transfer-syntax", "bits-stored-0"],
)
def test_malformed_tags_give_typed_errors_naming_the_file(case, expected):
    case = dict(case)
    data = build_dicom(**case)
    for fn in (load_image, load_dicom_hu):
        with pytest.raises(expected, match="bad.dcm"):
            fn(data, name="bad.dcm")


def _modality_lut_file(descriptor: list[int], table: list[int]) -> bytes:
    item = Dataset()
    item.LUTDescriptor, item.ModalityLUTType = descriptor, "HU"
    item.add_new("LUTData", "US", table)
    return build_dicom(ModalityLUTSequence=[item])


@pytest.mark.parametrize("descriptor, table", [([100, 0, 16], [1, 2, 3]), ([4, 0, 16], [1, 2, 3, 4, 5, 6]), ([0, 0, 3], [1, 2])])
def test_short_or_bad_modality_lut_is_a_typed_error(descriptor, table):
    data = _modality_lut_file(descriptor, table)
    for fn in (load_image, load_dicom_hu):
        try:
            fn(data, name="lut.dcm")
        except ImageError as e:
            assert "lut.dcm" in str(e)


def _voi_lut_file(values: np.ndarray, first: int, table: np.ndarray, bits: int, **tags) -> bytes:
    item = Dataset()
    item.LUTDescriptor = [len(table), first, bits]
    item.add_new("LUTData", "US", [int(v) for v in table])
    return build_dicom(values.astype(np.uint16), VOILUTSequence=[item], **tags)


def test_voi_lut_table_is_applied_not_min_max():
    """A file with a VOI LUT Sequence and no window: the grey level is the table entry, scaled from its bit depth."""
    rng = np.random.default_rng(0)
    values = rng.integers(0, 1200, size=(16, 16))
    values[0, 0], values[0, 1] = 0, 1199
    first, bits = 100, 12
    table = np.clip((np.arange(800) ** 1.3), 0, 4095).astype(np.int64)  # a non-linear curve over inputs 100..899
    data = _voi_lut_file(values, first, table, bits)
    out = np.asarray(load_image(data))[:, :, 0]
    for r in range(16):
        for c in range(16):
            index = min(max(int(values[r, c]) - first, 0), len(table) - 1)
            assert out[r, c] == math.floor(int(table[index]) * 255 / (2**bits - 1) + 0.5)
    minmax = np.floor((values - values.min()) * 255.0 / (values.max() - values.min()) + 0.5)
    assert (out != minmax).mean() > 0.5  # the old fallback would have stretched min-max


def test_voi_lut_table_after_rescale_and_file_window_takes_precedence():
    values = np.arange(256, dtype=np.int64).reshape(16, 16)
    table = np.arange(256)[::-1] * 16  # an inverting table over 0..255, 12-bit output
    data = _voi_lut_file(values + 10, 0, table, 12, RescaleSlope=1, RescaleIntercept=-10)
    out = np.asarray(load_image(data))[:, :, 0]
    expected = np.floor(table[values] * 255 / 4095 + 0.5).astype(np.uint8)
    assert np.array_equal(out, expected)
    windowed = _voi_lut_file(values, 0, table, 12, WindowCenter=128, WindowWidth=256)
    assert np.asarray(load_image(windowed))[0, 0, 0] == 0  # the window is used, not the (inverting) table
    _, meta = load_dicom_hu(data)
    assert meta["voi_lut_table"] is True and meta["window"] is None


def _mutants(seed: int, base: bytes, count: int):
    rng = random.Random(seed)
    for _ in range(count):
        b = bytearray(base)
        kind = rng.choice(("flip", "truncate", "insert", "zero-run"))
        if kind == "flip":
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        elif kind == "truncate":
            del b[rng.randrange(1, len(b)) :]
        elif kind == "insert":
            at = rng.randrange(len(b))
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        else:
            at = rng.randrange(len(b))
            b[at : at + rng.randint(1, 64)] = b"\x00" * 8
        yield bytes(b)


def _seed_files() -> dict[str, bytes]:
    grey = (np.add.outer(np.arange(24), np.arange(32)) * 5 % 256).astype(np.uint8)
    files = {}
    for fmt, mode in (("PNG", "L"), ("JPEG", "RGB"), ("BMP", "RGB"), ("TIFF", "L")):
        buf = io.BytesIO()
        Image.fromarray(grey).convert(mode).save(buf, fmt)
        files[fmt.lower()] = buf.getvalue()
    pages = io.BytesIO()
    Image.fromarray(grey).save(pages, "TIFF", save_all=True, append_images=[Image.fromarray(255 - grey)])
    files["tiff-2page"] = pages.getvalue()
    files["dicom-ct"] = Path(get_testdata_file("CT_small.dcm")).read_bytes()
    files["dicom-built"] = build_dicom(np.arange(256, dtype=np.uint16).reshape(16, 16), WindowCenter=100, WindowWidth=200)
    return files


FUZZ_SECONDS_PER_FORMAT = 2.0
FUZZ_MAX_PER_FORMAT = 400


def test_fuzz_mutated_images_give_an_image_or_a_typed_error(all_logs):
    """Seeded mutations of each format through load_image: never an untyped exception, never a log record or warning."""
    outcomes: Counter[str] = Counter()
    tried = 0
    seeds = _seed_files()
    all_logs.records.clear()  # writing the seed files logs Pillow's own debug records
    for index, (name, base) in enumerate(sorted(seeds.items())):
        deadline = time.monotonic() + FUZZ_SECONDS_PER_FORMAT
        for mutant in _mutants(index, base, FUZZ_MAX_PER_FORMAT):
            if time.monotonic() > deadline:
                break
            tried += 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    load_image(mutant, name=f"{name}.bin", max_pixels=4_000_000)
                    outcomes["ok"] += 1
                except ImageError as e:
                    assert f"{name}.bin" in str(e)
                    outcomes[type(e).__name__] += 1
            assert not caught, [str(w.message) for w in caught]
    assert tried >= 7 * 50
    assert outcomes["CorruptImage"] > 0 and outcomes["ok"] > 0
    decoder_records = [r for r in all_logs.records if r.name.split(".")[0] in ("pydicom", "PIL")]
    assert decoder_records == []
    print(f"fuzz: {tried} mutants, outcomes {dict(outcomes)}")


def test_image_preview_cli_on_hostile_dicom_is_one_error_line(tmp_path):
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(build_dicom(raw={"NumberOfFrames": ("IS", CANARY), "RescaleSlope": ("DS", CANARY)}, RescaleIntercept=0))
    proc = subprocess.run(
        [sys.executable, "-m", "vmed", "image", "preview", str(bad), "--output", str(tmp_path / "out.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and CANARY not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "bad.dcm" in lines[0]


def test_decode_frame_repr_hides_the_dataset():
    data = build_dicom()
    frame = dicom_module.decode_frame(io.BytesIO(data), "x", frame=None, max_pixels=10**6)
    assert CANARY not in repr(frame)
