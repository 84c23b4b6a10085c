"""The one image loader: a path or bytes in, the RGB picture the model sees out.

``load_image`` sniffs the format from the first bytes (never from the file name), refuses images
above the pixel budget before decoding them, and hands over to ``vmed.imaging.raster`` (PNG, JPEG,
BMP, TIFF) or ``vmed.imaging.dicom``. Every failure is a typed ``ImageError`` naming the file.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from PIL import Image

from vmed.constants import DEFAULT_MAX_IMAGE_PIXELS
from vmed.imaging import dicom, raster
from vmed.imaging.errors import ImageError, UnsupportedImageFormat
from vmed.imaging.guard import decoding
from vmed.imaging.window import resolve_window

__all__ = ["SUPPORTED_FORMATS", "load_image", "load_dicom_hu", "sniff_format"]

SUPPORTED_FORMATS: tuple[str, ...] = ("png", "jpeg", "bmp", "tiff", "dicom")
"""Formats that ``load_image`` decodes (names as returned by ``sniff_format``)."""

_HEAD_BYTES = 132
_OTHER_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", 0, "jpeg2000"),
    (b"\xff\x4f\xff\x51", 0, "jpeg2000"),
    (b"%PDF", 0, "pdf"),
    (b"\x1f\x8b", 0, "gzip"),
    (b"PK\x03\x04", 0, "zip"),
    (b"\x93NUMPY", 0, "npy"),
    (b"ftypheic", 4, "heic"),
    (b"ftypavif", 4, "avif"),
)

_WHAT = {"png": "PNG image", "jpeg": "JPEG image", "bmp": "BMP image", "tiff": "TIFF image", "dicom": "DICOM file"}

Source = str | os.PathLike | bytes | bytearray | memoryview


def sniff_format(data: bytes) -> str | None:
    """Name the image format of ``data`` (at least its first 132 bytes) from its signature.

    Returns one of ``SUPPORTED_FORMATS`` ("png", "jpeg", "bmp", "tiff", "dicom"), the name of a
    recognised but unsupported format ("gif", "webp", "jpeg2000", "pdf", "gzip", "zip", "npy",
    "heic", "avif"), or None. DICOM is recognised by "DICM" at offset 128 (the Part 10 preamble)
    or, without a preamble, by a file meta group (0002,xxxx) in explicit VR at offset 0.
    """
    head = bytes(data[:_HEAD_BYTES])
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"  # first: a DICOM preamble may itself be a TIFF header (dual-personality files)
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"BM") and len(head) >= 14:
        return "bmp"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head[:2] == b"\x02\x00" and len(head) >= 6 and head[4:6].isalpha() and head[4:6].isupper():
        return "dicom"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    for signature, offset, name in _OTHER_SIGNATURES:
        if head[offset : offset + len(signature)] == signature:
            return name
    return None


def _label(source: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<image bytes>"
    return os.fspath(source) if not isinstance(source, str) else source


@contextlib.contextmanager
def _open(source: Source, label: str) -> Iterator[BinaryIO]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield io.BytesIO(bytes(source))
        return
    path = Path(os.fspath(source))
    try:
        fp = path.open("rb")
    except FileNotFoundError:
        raise ImageError(f"{label}: image file not found; check the path") from None
    except IsADirectoryError:
        raise ImageError(f"{label}: is a directory, expected an image file") from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied when opening the image") from None
    except OSError as e:
        raise ImageError(f"{label}: cannot open the image ({e.strerror or type(e).__name__})") from None
    with fp:
        yield fp


def _sniff(fp: BinaryIO, label: str) -> str:
    head = fp.read(_HEAD_BYTES)
    fp.seek(0)
    fmt = sniff_format(head)
    if fmt in SUPPORTED_FORMATS:
        return fmt
    if not head:
        raise UnsupportedImageFormat(f"{label}: the file is empty; expected PNG, JPEG, BMP, TIFF or DICOM")
    found = f"a {fmt.upper()} file" if fmt else "not a recognised image"
    raise UnsupportedImageFormat(
        f"{label}: {found}; supported formats are PNG, JPEG, BMP, TIFF and DICOM (recognised by content, not by extension)"
    )


def load_image(
    source: Source,
    *,
    window: tuple[float, float] | None = None,
    preset: str | None = None,
    frame: int | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Load a PNG, JPEG, BMP, TIFF or DICOM file (path or bytes) as the RGB image the model sees.

    window: (center, width) for grayscale DICOM, in modality units (HU for CT); overrides the file's.
    preset: a key of ``WINDOW_PRESETS`` instead of ``window``. Both are validated for every input
        but only change grayscale DICOM; other images ignore them, so that one setting (a chat
        session's, the web UI's) can serve a mix of PNG, JPEG and DICOM files.
    frame: 0-based frame of a multi-frame DICOM (default: the middle one) or page of a TIFF/APNG
        (default: the first).
    max_pixels: refuse images with more pixels (all frames for DICOM) before decoding them.
    name: how to call bytes input in error messages (default "<image bytes>").

    Returns a new RGB ``PIL.Image.Image`` at the decoded size (no resize). Raises
    ``ImageTooLarge``, ``UnsupportedImageFormat``, ``CorruptImage``, ``MissingDecoder`` or
    ``ImageError`` (all ``UserInputError``; a bad window or preset is an ``ImageError`` too), each
    naming the file.
    """
    label = _label(source, name)
    resolved = resolve_window(window, preset)
    if frame is not None and frame < 0:
        raise ImageError(f"{label}: frame must be 0 or more, got {frame}")
    with _open(source, label) as fp:
        fmt = _sniff(fp, label)
        with decoding(label, _WHAT[fmt]):
            if fmt == "dicom":
                decoded = dicom.decode_frame(fp, label, frame=frame, max_pixels=max_pixels)
                return Image.fromarray(dicom.frame_to_rgb(decoded, label, window=resolved))
            return raster.load_raster(fp, label, fmt, frame=frame, max_pixels=max_pixels)


def load_dicom_hu(
    source: Source,
    *,
    frame: int | None = None,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    name: str | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Modality values of one grayscale DICOM frame (Hounsfield units for CT) and safe metadata.

    Returns ``(values, meta)``: values is (rows, columns) float32 after the modality LUT, before
    any window; meta holds only technical fields: modality, photometric_interpretation, rows,
    columns, frames, frame, window (the file's (center, width) or None), voi_lut_function,
    rescale_slope, rescale_intercept, units. Raises ``ImageError`` for non-DICOM or colour input.
    """
    label = _label(source, name)
    if frame is not None and frame < 0:
        raise ImageError(f"{label}: frame must be 0 or more, got {frame}")
    with _open(source, label) as fp:
        fmt = _sniff(fp, label)
        if fmt != "dicom":
            raise ImageError(f"{label}: is {fmt.upper()}, not DICOM; modality values exist only for DICOM files")
        with decoding(label, _WHAT[fmt]):
            decoded = dicom.decode_frame(fp, label, frame=frame, max_pixels=max_pixels)
            if decoded.pixels.ndim != 2:
                raise ImageError(f"{label}: is a colour DICOM ({decoded.photometric}); modality values exist only for grayscale images")
            return dicom.modality_values(decoded, label), dicom.safe_meta(decoded)
