"""DICOM through pydicom: header-first pixel budget, one frame, modality LUT, VOI window, RGB.

The pipeline for a grayscale frame (DICOM PS3.3 C.11, "the grayscale pipeline"):

1. read the header only (``stop_before_pixels``) and refuse ``Rows * Columns * NumberOfFrames``
   above the pixel budget before any pixel data is read or decoded;
2. check that a decoder for a compressed transfer syntax is installed (else ``MissingDecoder``
   naming the pip packages);
3. decode one frame: ``frame`` if given (0-based), otherwise the middle one (``frames // 2``);
4. modality LUT: ``pydicom.pixels.apply_modality_lut`` (RescaleSlope/Intercept or a Modality LUT
   Sequence; for enhanced multi-frame files the frame's Pixel Value Transformation); for CT the
   result is in Hounsfield units;
5. VOI window (see ``vmed.imaging.window``): the caller's (center, width) or preset, else the
   file's first WindowCenter/WindowWidth (with its VOILUTFunction), else min-max of the frame;
6. MONOCHROME1 (where low values are white) is inverted: ``255 - y``.

Colour files (RGB, YBR_*) are converted to RGB by pydicom and scaled from BitsStored to 8 bit;
PALETTE COLOR goes through its lookup tables (``pydicom.pixels.apply_color_lut``), scaled from the
tables' bit depth to 8 bit.

Privacy: this module never prints, logs or formats a dataset or a tag value other than the
technical ones it needs (sizes, bit depths, transfer syntax, photometric interpretation, window,
rescale). pydicom's warnings and log records raised while reading are suppressed, because they
can quote tag values. No path is ever built from a tag value.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder, pixel_array
from pydicom.uid import UID

from vmed.imaging.errors import CorruptImage, ImageError, ImageTooLarge, MissingDecoder, UnsupportedImageFormat
from vmed.imaging.window import apply_window, minmax_to_uint8

__all__ = ["DicomFrame", "decode_frame", "file_window", "frame_to_rgb", "install_hint", "modality_values", "safe_meta"]

_GREY = ("MONOCHROME1", "MONOCHROME2")
_COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "YBR_PARTIAL_420")

_JPEG = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG_LS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_JPEG_2000 = {
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.202",
    "1.2.840.10008.1.2.4.203",
}
_RLE = {"1.2.840.10008.1.2.5"}


def install_hint(transfer_syntax: str) -> tuple[str, ...]:
    """The pip packages that give pydicom a decoder for ``transfer_syntax`` (python-gdcm covers most too)."""
    if transfer_syntax in _JPEG:
        return ("pylibjpeg", "pylibjpeg-libjpeg")
    if transfer_syntax in _JPEG_LS:
        return ("pyjpegls",)
    if transfer_syntax in _JPEG_2000:
        return ("pylibjpeg", "pylibjpeg-openjpeg")
    if transfer_syntax in _RLE:
        return ("pylibjpeg", "pylibjpeg-rle")
    return ("python-gdcm",)


class _ThisThreadOnly(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Drop pydicom's warnings and log records (they may quote tag values) for this thread."""
    logger = logging.getLogger("pydicom")
    mute = _ThisThreadOnly()
    logger.addFilter(mute)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.removeFilter(mute)


@dataclass(frozen=True)
class DicomFrame:
    """One decoded frame and the dataset it came from (the dataset stays internal: never print it)."""

    ds: Dataset = field(repr=False)
    pixels: np.ndarray = field(repr=False)
    """Stored values, (rows, columns) for grayscale or (rows, columns, 3) RGB for colour."""
    index: int
    n_frames: int
    photometric: str


def _read(fp: BinaryIO, label: str, *, header_only: bool) -> Dataset:
    fp.seek(0)
    try:
        with _quiet_pydicom():
            return pydicom.dcmread(fp, force=True, stop_before_pixels=header_only)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        raise CorruptImage(f"{label}: the DICOM file cannot be parsed ({type(e).__name__}); it is truncated or damaged") from None


def _int_field(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _first_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _functional_item(ds: Dataset, index: int, sequence: str) -> Dataset | None:
    """The first item of ``sequence`` in the frame's per-frame group, else in the shared group (enhanced files)."""
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > position:
            inner = seq[position].get(sequence)
            if inner is not None and len(inner) > 0:
                return inner[0]
    return None


def decode_frame(fp: BinaryIO, label: str, *, frame: int | None, max_pixels: int) -> DicomFrame:
    """Check the budget and decoder from the header, then decode one frame of a DICOM file object.

    Raises ImageTooLarge, MissingDecoder, CorruptImage, UnsupportedImageFormat or ImageError
    (frame out of range), each naming ``label``.
    """
    header = _read(fp, label, header_only=True)
    rows, columns = _int_field(header, "Rows"), _int_field(header, "Columns")
    if not rows or not columns:
        raise UnsupportedImageFormat(
            f"{label}: this DICOM file holds no image (no Rows/Columns); it may be a report or other non-image object"
        )
    n_frames = max(_int_field(header, "NumberOfFrames", 1) or 1, 1)
    pixels = rows * columns * n_frames
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"{label}: DICOM image is {columns}x{rows} x {n_frames} frame(s) = {pixels:,} pixels, "
            f"above the limit of {max_pixels:,} pixels; raise max_pixels if you trust the file",
            pixels=pixels,
            limit=max_pixels,
        )
    index = n_frames // 2 if frame is None else frame
    if not 0 <= index < n_frames:
        raise ImageError(f"{label}: frame {frame} is out of range; the file has {n_frames} frame(s), numbered 0 to {n_frames - 1}")
    meta = getattr(header, "file_meta", None)
    ts_value = meta.get("TransferSyntaxUID") if meta is not None else None
    if not ts_value:
        raise CorruptImage(f"{label}: the DICOM file has no Transfer Syntax UID in its file meta information")
    syntax = UID(str(ts_value))
    _check_decoder(syntax, label)
    ds = _read(fp, label, header_only=False)
    if "PixelData" not in ds:
        raise UnsupportedImageFormat(
            f"{label}: this DICOM file has no (7FE0,0010) Pixel Data (float pixel data is not supported)"
        )
    try:
        with _quiet_pydicom():
            arr = pixel_array(ds, index=index)
    except RuntimeError as e:
        if "plugins" in str(e):
            raise _missing_decoder(label, syntax, tried=True) from None
        raise CorruptImage(f"{label}: the DICOM pixel data cannot be decoded ({type(e).__name__}); it is truncated or damaged") from None
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, EOFError, OSError, NotImplementedError) as e:
        raise CorruptImage(f"{label}: the DICOM pixel data cannot be decoded ({type(e).__name__}: {_technical(e)})") from None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if arr.ndim == 3 and photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom's as_rgb conversion
    return DicomFrame(ds=ds, pixels=arr, index=index, n_frames=n_frames, photometric=photometric)


def _technical(exc: Exception) -> str:
    """A short exception message; pixel-decoding errors only quote sizes and syntaxes."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:200]


def _check_decoder(syntax: UID, label: str) -> None:
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise MissingDecoder(
            f"{label}: pixel data is compressed as {syntax.name} ({syntax}), which pydicom {pydicom.__version__} cannot decode "
            "with any plugin; convert the file to an uncompressed transfer syntax (e.g. `gdcmconv --raw`)",
            packages=(),
        ) from None
    if not decoder.is_available:
        raise _missing_decoder(label, syntax, tried=False)


def _missing_decoder(label: str, syntax: UID, *, tried: bool) -> MissingDecoder:
    packages = install_hint(str(syntax))
    try:
        options = "; ".join(get_decoder(syntax).missing_dependencies)
    except NotImplementedError:
        options = ""
    reason = "the installed decoders failed on it" if tried else "no installed package can decode it"
    alternative = "" if packages == ("python-gdcm",) else " (or `pip install python-gdcm`)"
    hint = f"; pydicom's plugins and their needs: {options}" if options else ""
    return MissingDecoder(
        f"{label}: pixel data is compressed as {syntax.name} ({syntax}) and {reason}; "
        f"install a decoder with `pip install {' '.join(packages)}`{alternative}{hint}",
        packages=packages,
    )


def file_window(ds: Dataset, index: int) -> tuple[float, float, str] | None:
    """The file's first (center, width, VOI LUT function), from the top level or the frame's VOI group; None if absent or invalid."""
    source: Dataset | None = ds if "WindowCenter" in ds else _functional_item(ds, index, "FrameVOILUTSequence")
    if source is None:
        return None
    center, width = _first_float(source.get("WindowCenter")), _first_float(source.get("WindowWidth"))
    if center is None or width is None or not np.isfinite(center) or not np.isfinite(width) or width < 1:
        return None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return center, width, function


def modality_values(frame: DicomFrame) -> np.ndarray:
    """Apply the modality LUT to a grayscale frame. Returns (rows, columns) float32 (HU for CT)."""
    ds = frame.ds
    if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(frame.pixels, ds), dtype=np.float32)
    item = _functional_item(ds, frame.index, "PixelValueTransformationSequence")
    if item is not None:
        slope = _first_float(item.get("RescaleSlope"))
        intercept = _first_float(item.get("RescaleIntercept"))
        slope = 1.0 if slope is None else slope
        intercept = 0.0 if intercept is None else intercept
        return (frame.pixels.astype(np.float64) * slope + intercept).astype(np.float32)
    return frame.pixels.astype(np.float32)


def frame_to_rgb(frame: DicomFrame, label: str, *, window: tuple[float, float] | None) -> np.ndarray:
    """The frame as the model sees it: (rows, columns, 3) uint8.

    ``window`` (center, width) overrides the file's window (LINEAR function); colour frames
    ignore it (a VOI window is defined for grayscale only).
    """
    if frame.photometric in _GREY and frame.pixels.ndim == 2:
        values = modality_values(frame)
        if window is not None:
            grey = apply_window(values, window[0], window[1], "LINEAR")
        elif (found := file_window(frame.ds, frame.index)) is not None:
            grey = apply_window(values, *found)
        else:
            grey = minmax_to_uint8(values)
        if frame.photometric == "MONOCHROME1":
            grey = 255 - grey
        return np.repeat(grey[:, :, None], 3, axis=2)
    if frame.photometric in _COLOUR and frame.pixels.ndim == 3 and frame.pixels.shape[2] == 3:
        bits = _int_field(frame.ds, "BitsStored", 8) or 8
        rgb = frame.pixels
        if rgb.dtype != np.uint8 or bits != 8:
            rgb = np.floor(rgb.astype(np.float64) * (255.0 / (2**bits - 1)) + 0.5).clip(0, 255)
        return rgb.astype(np.uint8)
    if frame.photometric == "PALETTE COLOR" and frame.pixels.ndim == 2:
        try:
            with _quiet_pydicom():
                rgb = apply_color_lut(frame.pixels, frame.ds)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise CorruptImage(f"{label}: the DICOM palette lookup tables cannot be applied ({type(e).__name__})") from None
        descriptor = frame.ds.get("RedPaletteColorLookupTableDescriptor")
        bits = int(descriptor[2]) if descriptor is not None and len(descriptor) == 3 else 8 * rgb.dtype.itemsize
        return np.floor(rgb.astype(np.float64) * (255.0 / (2**bits - 1)) + 0.5).clip(0, 255).astype(np.uint8)
    raise UnsupportedImageFormat(
        f"{label}: DICOM photometric interpretation {frame.photometric or '(missing)'} with array shape {frame.pixels.shape} "
        f"is not supported; supported: {', '.join(_GREY + _COLOUR)}, PALETTE COLOR"
    )


def safe_meta(frame: DicomFrame) -> dict[str, Any]:
    """Technical, non-identifying fields of the file (no patient, study or institution tags)."""
    ds = frame.ds
    found = file_window(ds, frame.index)
    modality = str(ds.get("Modality", "") or "").strip().upper() or None
    return {
        "modality": modality,
        "photometric_interpretation": frame.photometric,
        "rows": int(frame.pixels.shape[0]),
        "columns": int(frame.pixels.shape[1]),
        "frames": frame.n_frames,
        "frame": frame.index,
        "window": (found[0], found[1]) if found else None,
        "voi_lut_function": found[2] if found else None,
        "rescale_slope": _first_float(ds.get("RescaleSlope")),
        "rescale_intercept": _first_float(ds.get("RescaleIntercept")),
        "units": "HU" if modality == "CT" else "modality values",
    }
