"""PNG, JPEG, BMP and TIFF through Pillow: pixel budget, frame choice, EXIF orientation, mode to RGB.

Rules (see docs/imaging.md):
- the size is read from the header (Pillow opens lazily) and checked against the pixel budget before
  any pixel is decoded; Pillow's own decompression-bomb check (``PIL.Image.MAX_IMAGE_PIXELS``) is
  kept and its error and warning become ``ImageTooLarge`` too;
- the pixels are then fully decoded (``Image.load``), so a truncated file raises ``CorruptImage``
  (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never changed);
- the EXIF orientation is applied (``ImageOps.exif_transpose``); damaged EXIF is an error, because
  a wrong orientation swaps left and right;
- 16-bit and 32-bit grayscale (modes I;16*, I, F) is stretched min-max to 8 bit (not clipped);
- transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited on black, the
  background of most medical images; P, CMYK, YCbCr, 1 and L are converted to RGB.
"""

from __future__ import annotations

import re
import struct
import warnings
import zlib
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vmed.imaging.errors import CorruptImage, ImageError, ImageTooLarge
from vmed.imaging.window import minmax_to_uint8

__all__ = ["PIL_FORMATS", "load_raster", "to_rgb"]

PIL_FORMATS: dict[str, tuple[str, ...]] = {
    "png": ("PNG",),
    "jpeg": ("JPEG", "MPO"),
    "bmp": ("BMP",),
    "tiff": ("TIFF",),
}
"""Sniffed format -> the only Pillow plugins allowed to open it."""

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, struct.error, zlib.error)
# (anything else a damaged file makes Pillow raise is turned into CorruptImage by vmed.imaging.guard.decoding)
_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def _too_large(label: str, width: int, height: int, limit: int) -> ImageTooLarge:
    pixels = width * height
    return ImageTooLarge(
        f"{label}: image is {width}x{height} = {pixels:,} pixels, above the limit of {limit:,} pixels; "
        "downscale it first or raise max_pixels",
        pixels=pixels,
        limit=limit,
    )


def _bomb_error(label: str, exc: Exception, max_pixels: int) -> ImageTooLarge:
    """Pillow refused the size while opening (its warning is escalated to an error)."""
    match = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(match.group(1)) if match else None
    if pixels is not None and pixels > max_pixels:
        return ImageTooLarge(
            f"{label}: image has {pixels:,} pixels, above the limit of {max_pixels:,} pixels; downscale it first or raise max_pixels",
            pixels=pixels,
            limit=max_pixels,
        )
    limit = Image.MAX_IMAGE_PIXELS or 0
    shown = f"{pixels:,} pixels" if pixels is not None else "too many pixels"
    return ImageTooLarge(
        f"{label}: image has {shown}, above Pillow's decompression-bomb limit of {limit:,} pixels "
        "(PIL.Image.MAX_IMAGE_PIXELS, which also applies); downscale it first",
        pixels=pixels,
        limit=limit,
    )


def _check_budget(im: Image.Image, label: str, max_pixels: int) -> None:
    width, height = im.size
    if width * height > max_pixels:
        raise _too_large(label, width, height, max_pixels)


def load_raster(fp: BinaryIO, label: str, fmt: str, *, frame: int | None, max_pixels: int) -> Image.Image:
    """Decode one frame of a PNG/JPEG/BMP/TIFF file object into an RGB image.

    ``fmt`` is a key of ``PIL_FORMATS`` (from ``sniff_format``); ``frame`` picks a page of a
    multi-page TIFF or animated PNG (0-based, default the first). Returns a new RGB image of the
    decoded size (after EXIF orientation).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(fp, formats=list(PIL_FORMATS[fmt]))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise _bomb_error(label, e, max_pixels) from None
    except UnidentifiedImageError:
        raise CorruptImage(f"{label}: looks like {fmt.upper()} but its header cannot be read; the file is damaged") from None
    except _DECODE_ERRORS as e:
        raise CorruptImage(f"{label}: cannot read the {fmt.upper()} header ({type(e).__name__}: {e})") from None
    with im:
        _check_budget(im, label, max_pixels)
        try:
            n_frames = getattr(im, "n_frames", 1)  # TIFF reads every page's header here
        except _DECODE_ERRORS as e:
            raise CorruptImage(f"{label}: the {fmt.upper()} page directory cannot be read ({type(e).__name__}); the file is damaged") from None
        if frame is not None:
            if not 0 <= frame < n_frames:
                raise ImageError(f"{label}: frame {frame} is out of range; the file has {n_frames} frame(s), numbered 0 to {n_frames - 1}")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", Image.DecompressionBombWarning)
                    im.seek(frame)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
                raise _bomb_error(label, e, max_pixels) from None
            except _DECODE_ERRORS as e:
                raise CorruptImage(f"{label}: cannot read frame {frame} ({type(e).__name__}: {e})") from None
            _check_budget(im, label, max_pixels)
        try:
            im.load()
        except _DECODE_ERRORS as e:
            raise CorruptImage(
                f"{label}: the {fmt.upper()} pixel data cannot be decoded: truncated, damaged or an unsupported variant "
                f"({type(e).__name__}: {e})"
            ) from None
        try:
            oriented = ImageOps.exif_transpose(im)
        except _DECODE_ERRORS as e:
            raise CorruptImage(f"{label}: the EXIF orientation cannot be read ({type(e).__name__}: {e})") from None
        return to_rgb(oriented)


def to_rgb(im: Image.Image) -> Image.Image:
    """Return ``im`` as an 8-bit RGB image (a new image; ``im`` is not modified).

    High-depth grayscale is stretched min-max; transparency is composited on black.
    """
    if im.mode in _HIGH_DEPTH_MODES:
        grey = minmax_to_uint8(np.asarray(im))
        return Image.fromarray(grey).convert("RGB")
    has_alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")
