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

Step 5 without a window: a VOI LUT Sequence (a lookup table, PS3.3 C.11.2.1.1) is applied with
pydicom's ``apply_voi`` and scaled from the table's bit depth to 8 bit; min-max only when the file has
neither a window nor a table.

Privacy: this module never prints, logs or formats a dataset or a tag value other than the
technical ones it needs (sizes, bit depths, transfer syntax, photometric interpretation, window,
rescale), and those only after checking that they have the form the standard gives them (a UID of
digits and dots, a photometric interpretation from the standard's list), so a tag holding a name never
reaches a message. pydicom's warnings and log records raised while reading are dropped
(``vmed.imaging.guard``), because they quote tag values. No path is ever built from a tag value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import UID

from vmed.imaging.errors import CorruptImage, ImageError, ImageTooLarge, MissingDecoder, UnsupportedImageFormat
from vmed.imaging.guard import quiet_decoders as _quiet_pydicom
from vmed.imaging.window import apply_window, minmax_to_uint8

__all__ = ["DicomFrame", "decode_frame", "file_window", "frame_to_rgb", "install_hint", "modality_values", "safe_meta", "voi_table_to_uint8"]

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


_UID_FORM = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_KNOWN_PHOTOMETRIC = _GREY + _COLOUR + ("PALETTE COLOR", "YBR_FULL_422")
# DICOM PS3.3 C.7.3.1.1.1 defined terms for Modality (current and retired): only these are ever reported.
_MODALITIES = frozenset(
    "AR ASMT AU BDUS BI BMD CR CT CTPROTOCOL DG DOC DX ECG EPS ES FID GM HC HD IO IOL IVOCT IVUS KER KO LEN LS MG MR "
    "M3D NM OAM OCT OP OPM OPT OPTBSV OPTENF OPV OSS OT PLAN PR PT PX REG RESP RF RG RTDOSE RTIMAGE RTINTENT RTPLAN "
    "RTRAD RTRECORD RTSEGANN RTSTRUCT RWV SEG SM SMR SR SRF STAIN TEXTUREMAP TG US VA XA XAPROTOCOL XC "
    "CD CF DD DF DM DS EC FA FS LP MA MS OPR ST VF".split()
)


def _shown_photometric(value: str) -> str:
    """The photometric interpretation for a message: a value from the standard's list, else a neutral phrase."""
    return value if value in _KNOWN_PHOTOMETRIC else "(a non-standard value)" if value else "(missing)"


def _shown_syntax(syntax: str) -> str:
    """A transfer syntax for a message: its name and UID when it has a UID's form, else a neutral phrase."""
    if not (_UID_FORM.match(syntax) and len(syntax) <= 64):
        return "a Transfer Syntax UID that is not a valid UID"
    name = UID(syntax).name
    return f"{name} ({syntax})" if name != syntax else f"an unknown transfer syntax ({syntax})"


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
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError, AttributeError, RuntimeError) as e:
        raise CorruptImage(f"{label}: the DICOM file cannot be parsed ({type(e).__name__}); it is truncated or damaged") from None


def _int_field(ds: Dataset, keyword: str, default: int | None = None) -> int | None:
    value = ds.get(keyword, default)
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        return default


def _count_field(ds: Dataset, keyword: str, label: str) -> int | None:
    """A size tag (Rows, Columns, NumberOfFrames) as a whole number >= 0, None when absent; CorruptImage when malformed."""
    if keyword not in ds:
        return None
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        number = -1
    if number < 0:
        raise CorruptImage(f"{label}: the DICOM {keyword} tag is not a whole number; the file is damaged or was written wrongly")
    return number


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
    rows, columns = _count_field(header, "Rows", label), _count_field(header, "Columns", label)
    if not rows or not columns:
        raise UnsupportedImageFormat(
            f"{label}: this DICOM file holds no image (no Rows/Columns); it may be a report or other non-image object"
        )
    n_frames = max(_count_field(header, "NumberOfFrames", label) or 1, 1)
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
    syntax = UID(str(ts_value).strip())
    if not (_UID_FORM.match(syntax) and len(syntax) <= 64) or not syntax.is_transfer_syntax:
        raise UnsupportedImageFormat(
            f"{label}: the file declares {_shown_syntax(syntax)} as its transfer syntax, which is not a DICOM transfer "
            "syntax pydicom knows; re-export the file with a standard transfer syntax (e.g. `gdcmconv --raw`)"
        )
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
    except (ValueError, KeyError, IndexError, TypeError, AttributeError, EOFError, OSError, NotImplementedError, ArithmeticError) as e:
        # pydicom's message is not shown: it may quote a tag value (e.g. a name where a number belongs).
        raise CorruptImage(
            f"{label}: the DICOM pixel data cannot be decoded ({type(e).__name__}); a pixel-module tag (BitsStored, "
            "PhotometricInterpretation, NumberOfFrames, …) is invalid or the data is truncated"
        ) from None
    photometric = str(ds.get("PhotometricInterpretation", "")).strip().upper()
    if arr.ndim == 3 and photometric.startswith("YBR"):
        photometric = "RGB"  # pydicom's as_rgb conversion
    return DicomFrame(ds=ds, pixels=arr, index=index, n_frames=n_frames, photometric=photometric)


def _check_decoder(syntax: UID, label: str) -> None:
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise MissingDecoder(
            f"{label}: pixel data is compressed as {_shown_syntax(syntax)}, which pydicom {pydicom.__version__} cannot decode "
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
        f"{label}: pixel data is compressed as {_shown_syntax(syntax)} and {reason}; "
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


_MODALITY_LUT_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError, ArithmeticError)


def modality_values(frame: DicomFrame, label: str = "<dicom>") -> np.ndarray:
    """Apply the modality LUT to a grayscale frame. Returns (rows, columns) float32 (HU for CT).

    Raises ``CorruptImage`` when RescaleSlope/RescaleIntercept are not numbers or the Modality LUT
    Sequence is malformed (wrong descriptor, too short a table), or the result is not finite.
    """
    ds = frame.ds
    try:
        if "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds:
            values = np.asarray(apply_modality_lut(frame.pixels, ds), dtype=np.float64)
        elif (item := _functional_item(ds, frame.index, "PixelValueTransformationSequence")) is not None:
            slope = _first_float(item.get("RescaleSlope"))
            intercept = _first_float(item.get("RescaleIntercept"))
            slope = 1.0 if slope is None else slope
            intercept = 0.0 if intercept is None else intercept
            values = frame.pixels.astype(np.float64) * slope + intercept
        else:
            return frame.pixels.astype(np.float32)
    except _MODALITY_LUT_ERRORS as e:
        raise CorruptImage(
            f"{label}: the DICOM modality LUT cannot be applied ({type(e).__name__}): RescaleSlope/RescaleIntercept are "
            "not numbers or the Modality LUT Sequence is malformed; fix or remove those tags"
        ) from None
    if values.shape != frame.pixels.shape or not np.isfinite(values).all() or np.abs(values).max(initial=0) > 3.0e38:
        raise CorruptImage(
            f"{label}: the DICOM modality LUT gives non-finite or out-of-range values; RescaleSlope/RescaleIntercept or "
            "the Modality LUT Sequence are wrong"
        )
    return values.astype(np.float32)


def _voi_table(ds: Dataset) -> Dataset | None:
    """The first VOI LUT Sequence item with a usable descriptor and data, else None."""
    seq = ds.get("VOILUTSequence")
    if not seq:
        return None
    item = seq[0]
    descriptor = item.get("LUTDescriptor")
    if descriptor is None or "LUTData" not in item or len(descriptor) != 3:
        return None
    return item


def voi_table_to_uint8(values: np.ndarray, ds: Dataset, label: str) -> np.ndarray:
    """Map modality values through the file's VOI LUT table (pydicom's ``apply_voi``), then to 0..255.

    The table's output range is 0 .. 2**bits - 1 with bits the descriptor's third value (PS3.3
    C.11.2.1.1); it is scaled linearly to 0..255 and rounded half up. Input values are rounded to the
    nearest integer (the table is indexed by integers) and clipped to the table's input range first.
    """
    item = _voi_table(ds)
    assert item is not None
    try:
        entries, first, bits = (int(v) for v in item.LUTDescriptor)
        entries = entries or 2**16  # PS3.3 C.11.2.1.1: 0 means 65536 entries
        index = np.clip(np.rint(values), first, first + entries - 1).astype(np.int64)
        out = apply_voi(index, ds)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError, OverflowError) as e:
        raise CorruptImage(
            f"{label}: the DICOM VOI LUT Sequence cannot be applied ({type(e).__name__}); its LUT Descriptor or LUT Data "
            "is malformed; remove the sequence or give a window with --window/--preset"
        ) from None
    return np.floor(out.astype(np.float64) * (255.0 / (2**bits - 1)) + 0.5).clip(0, 255).astype(np.uint8)


def frame_to_rgb(frame: DicomFrame, label: str, *, window: tuple[float, float] | None) -> np.ndarray:
    """The frame as the model sees it: (rows, columns, 3) uint8.

    ``window`` (center, width) overrides the file's window (LINEAR function); colour frames
    ignore it (a VOI window is defined for grayscale only).
    """
    if frame.photometric in _GREY and frame.pixels.ndim == 2:
        values = modality_values(frame, label)
        if window is not None:
            grey = apply_window(values, window[0], window[1], "LINEAR")
        elif (found := file_window(frame.ds, frame.index)) is not None:
            grey = apply_window(values, *found)
        elif _voi_table(frame.ds) is not None:
            grey = voi_table_to_uint8(values, frame.ds, label)
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
        f"{label}: DICOM photometric interpretation {_shown_photometric(frame.photometric)} with array shape {frame.pixels.shape} "
        f"is not supported; supported: {', '.join(_GREY + _COLOUR)}, PALETTE COLOR"
    )


def safe_meta(frame: DicomFrame) -> dict[str, Any]:
    """Technical, non-identifying fields of the file (no patient, study or institution tags)."""
    ds = frame.ds
    found = file_window(ds, frame.index)
    modality = str(ds.get("Modality", "") or "").strip().upper()
    modality = modality if modality in _MODALITIES else None  # a defined term (CT, MR, DX, …), never free text
    return {
        "modality": modality,
        "photometric_interpretation": _shown_photometric(frame.photometric),
        "rows": int(frame.pixels.shape[0]),
        "columns": int(frame.pixels.shape[1]),
        "frames": frame.n_frames,
        "frame": frame.index,
        "window": (found[0], found[1]) if found else None,
        "voi_lut_function": (found[2] if found[2] in ("LINEAR", "LINEAR_EXACT", "SIGMOID") else "LINEAR") if found else None,
        "voi_lut_table": found is None and _voi_table(ds) is not None,
        "rescale_slope": _first_float(ds.get("RescaleSlope")),
        "rescale_intercept": _first_float(ds.get("RescaleIntercept")),
        "units": "HU" if modality == "CT" else "modality values",
    }
