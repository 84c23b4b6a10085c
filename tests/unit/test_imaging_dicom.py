"""vmed.imaging on DICOM: pydicom's bundled CT_small.dcm / MR_small.dcm (real data) and files built here.

The windowed grey levels are checked against values computed by hand in this file from the stored
values, RescaleSlope/Intercept and the DICOM PS3.3 C.11.2.1.2 linear formula.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import convert_color_space, get_decoder
from pydicom.uid import MPEG2MPML, ExplicitVRLittleEndian, JPEGLSLossless, SecondaryCaptureImageStorage, generate_uid

from vmed.imaging import (
    WINDOW_PRESETS,
    CorruptImage,
    ImageError,
    ImageTooLarge,
    MissingDecoder,
    UnsupportedImageFormat,
    load_dicom_hu,
    load_image,
    sniff_format,
)
from vmed.imaging import dicom as dicom_module

CT = get_testdata_file("CT_small.dcm")
MR = get_testdata_file("MR_small.dcm")


def by_hand(hu: float, center: float, width: float) -> int:
    """DICOM PS3.3 C.11.2.1.2.1 linear window to 0..255, written out per pixel, rounded half up."""
    if hu <= center - 0.5 - (width - 1) / 2:
        y = 0.0
    elif hu > center - 0.5 + (width - 1) / 2:
        y = 255.0
    else:
        y = ((hu - (center - 0.5)) / (width - 1) + 0.5) * 255.0
    return math.floor(y + 0.5)


def sample_pixels(hu: np.ndarray, center: float, width: float) -> list[tuple[int, int]]:
    """A few pixel positions in each branch of the window (below, inside, above)."""
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    picks = []
    for mask in (hu <= low, (hu > low) & (hu <= high), hu > high):
        picks += [tuple(int(v) for v in p) for p in np.argwhere(mask)[:3]]
    return picks


def make_dicom(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 16, **tags) -> bytes:
    """An uncompressed Part 10 DICOM file from a numpy array ((frames,) rows, columns (, 3))."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.set_pixel_data(pixels, photometric, bits)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def test_ct_window_matches_hand_computed_hu():
    ds = pydicom.dcmread(CT)
    raw = ds.pixel_array
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    assert (slope, intercept) == (1.0, -1024.0)
    hu = raw.astype(np.float64) * slope + intercept
    for window in [(40.0, 400.0), WINDOW_PRESETS["lung"], WINDOW_PRESETS["bone"]]:
        out = np.asarray(load_image(CT, window=window))
        picks = sample_pixels(hu, *window)
        assert len(picks) >= 6, "the sample must cover more than one branch of the window"
        for r, c in picks:
            expected = by_hand(int(raw[r, c]) * slope + intercept, *window)
            assert tuple(out[r, c]) == (expected, expected, expected), (window, r, c, raw[r, c])
        # and every pixel, one by one
        expected_all = [[by_hand(int(v) * slope + intercept, *window) for v in row] for row in raw.tolist()]
        np.testing.assert_array_equal(out[..., 0], np.array(expected_all))
    np.testing.assert_array_equal(np.asarray(load_image(CT, preset="soft-tissue")), np.asarray(load_image(CT, window=(40, 400))))


def test_mr_uses_the_file_window_by_hand():
    ds = pydicom.dcmread(MR)
    raw = ds.pixel_array
    center, width = float(ds.WindowCenter), float(ds.WindowWidth)
    out = np.asarray(load_image(MR))
    picks = sample_pixels(raw.astype(np.float64), center, width)
    assert len(picks) >= 6
    for r, c in picks:
        assert out[r, c, 0] == by_hand(float(raw[r, c]), center, width)
    # an explicit window overrides the file's
    assert not np.array_equal(np.asarray(load_image(MR, window=(100, 50))), out)


def test_no_window_stretches_min_max():
    ds = pydicom.dcmread(CT)
    raw = ds.pixel_array
    out = np.asarray(load_image(CT))[..., 0]
    assert out[np.unravel_index(raw.argmin(), raw.shape)] == 0
    assert out[np.unravel_index(raw.argmax(), raw.shape)] == 255
    r, c = 64, 64
    lo, hi = float(raw.min()), float(raw.max())
    assert out[r, c] == math.floor((float(raw[r, c]) - lo) * 255 / (hi - lo) + 0.5)


def test_load_dicom_hu_gives_modality_values_and_safe_meta():
    ds = pydicom.dcmread(CT)
    values, meta = load_dicom_hu(CT)
    assert values.dtype == np.float32 and values.shape == (128, 128)
    np.testing.assert_array_equal(values, ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    assert meta["modality"] == "CT" and meta["units"] == "HU" and meta["frames"] == 1 and meta["window"] is None
    assert str(ds.PatientName) and str(ds.PatientName) not in repr(meta)
    assert load_dicom_hu(MR)[1]["window"] == (600.0, 1600.0)
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="PNG")
    with pytest.raises(ImageError, match="x.png: is PNG, not DICOM"):
        load_dicom_hu(png.getvalue(), name="x.png")


def test_multiframe_takes_the_middle_frame_unless_told():
    frames = np.stack([np.full((8, 8), v, dtype=np.uint16) for v in (0, 1000, 2000)])
    data = make_dicom(frames, WindowCenter=1000, WindowWidth=2000)
    # by hand, window (1000, 2000): 0 -> 0, 1000 -> floor(((1000 - 999.5) / 1999 + 0.5) * 255 + 0.5) = 128, 2000 -> 255
    assert by_hand(1000, 1000, 2000) == 128
    assert load_image(data).getpixel((3, 3)) == (128, 128, 128)
    assert load_image(data, frame=0).getpixel((3, 3)) == (0, 0, 0)
    assert load_image(data, frame=2).getpixel((3, 3)) == (255, 255, 255)
    with pytest.raises(ImageError, match=r"frame 3 is out of range.*3 frame\(s\)"):
        load_image(data, frame=3, name="cine.dcm")
    assert load_dicom_hu(data)[1]["frame"] == 1


def test_monochrome1_is_inverted():
    ramp = np.arange(64, dtype=np.uint16).reshape(8, 8) * 50
    mono2 = np.asarray(load_image(make_dicom(ramp, "MONOCHROME2")))
    mono1 = np.asarray(load_image(make_dicom(ramp, "MONOCHROME1")))
    assert mono2[0, 0, 0] == 0 and mono2[7, 7, 0] == 255
    np.testing.assert_array_equal(mono1.astype(int), 255 - mono2.astype(int))


def test_rescale_slope_and_intercept_are_applied_before_the_window():
    raw = np.array([[0, 100, 200, 300]], dtype=np.uint16)
    data = make_dicom(raw, RescaleSlope=2, RescaleIntercept=-300)  # HU: -300, -100, 100, 300
    out = np.asarray(load_image(data, window=(0, 401)))[0, :, 0]
    assert list(out) == [by_hand(h, 0, 401) for h in (-300, -100, 100, 300)]
    assert list(out) == [0, 64, 192, 255]


def test_rgb_and_ybr_dicom():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, size=(6, 10, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(make_dicom(rgb, "RGB", 8))), rgb)

    smooth = np.zeros((6, 10, 3), dtype=np.uint8)
    smooth[..., 0], smooth[..., 1], smooth[..., 2] = 200, 80, 30
    ybr = convert_color_space(smooth, "RGB", "YBR_FULL")
    out = np.asarray(load_image(make_dicom(ybr, "YBR_FULL", 8))).astype(int)
    assert np.abs(out - smooth).max() <= 2
    # a VOI window is defined for grayscale only: colour ignores it
    np.testing.assert_array_equal(np.asarray(load_image(make_dicom(rgb, "RGB", 8), preset="lung")), rgb)


def test_budget_is_checked_from_the_header_before_decoding(monkeypatch):
    def must_not_decode(*args, **kwargs):
        raise AssertionError("pixel data was decoded")

    monkeypatch.setattr(dicom_module, "pixel_array", must_not_decode)
    with pytest.raises(ImageTooLarge, match=r"128x128 x 1 frame\(s\) = 16,384 pixels.*limit of 16,383") as info:
        load_image(CT, max_pixels=16_383)
    assert (info.value.pixels, info.value.limit) == (16_384, 16_383)

    ds = pydicom.dcmread(io.BytesIO(make_dicom(np.zeros((4, 4), dtype=np.uint16))))
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 4  # a header that lies; 32 bytes of pixel data
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(ImageTooLarge, match="14,400,000,000 pixels"):
        load_image(buf.getvalue(), name="liar.dcm")


def test_undecodable_compression_names_the_package():
    path = get_testdata_file("MR_small_jpeg_ls_lossless.dcm")
    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS decoder is installed here")
    with pytest.raises(MissingDecoder, match=r"JPEG-LS.*pip install pyjpegls") as info:
        load_image(path)
    assert info.value.packages == ("pyjpegls",)


def test_transfer_syntax_without_any_pydicom_decoder():
    ds = pydicom.dcmread(CT)
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00" * 64])
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(MissingDecoder, match=r"mpeg.dcm: pixel data is compressed as MPEG2"):
        load_image(buf.getvalue(), name="mpeg.dcm")


def test_truncated_and_pixelless_dicom():
    data = open(CT, "rb").read()
    with pytest.raises(CorruptImage, match="cut.dcm"):
        load_image(data[: len(data) - 5000], name="cut.dcm")
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    buf = io.BytesIO()
    ds.save_as(buf)
    with pytest.raises(UnsupportedImageFormat, match="no .* Pixel Data"):
        load_image(buf.getvalue(), name="nopix.dcm")
    assert sniff_format(data) == "dicom"  # CT_small's preamble is also a TIFF header


def test_nothing_identifying_is_printed_or_logged(capsys, caplog, recwarn):
    patient = str(pydicom.dcmread(CT).PatientName)
    caplog.set_level(logging.DEBUG)
    load_image(CT, preset="lung")
    load_dicom_hu(MR)
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    assert patient not in caplog.text
    assert not [w for w in recwarn if patient in str(w.message)]
    with open(CT, "rb") as f:
        frame = dicom_module.decode_frame(f, "ct", frame=None, max_pixels=10**6)
    assert patient not in repr(frame) and "PatientName" not in repr(frame)


def test_palette_color_uses_the_lookup_tables_by_hand():
    path = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    raw = ds.pixel_array
    _, first, bits = (int(v) for v in ds.RedPaletteColorLookupTableDescriptor)
    assert bits == 16
    tables = [np.frombuffer(ds[f"{c}PaletteColorLookupTableData"].value, dtype="<u2") for c in ("Red", "Green", "Blue")]
    out = np.asarray(load_image(path))
    assert out.shape == (ds.Rows, ds.Columns, 3)
    picks = [(0, 0), (100, 200), (175, 400), (349, 799)] + [tuple(int(v) for v in np.argwhere(raw == raw.max())[0])]
    for r, c in picks:
        index = min(max(int(raw[r, c]) - first, 0), len(tables[0]) - 1)
        expected = tuple(math.floor(int(t[index]) * 255 / 65535 + 0.5) for t in tables)
        assert tuple(out[r, c]) == expected
