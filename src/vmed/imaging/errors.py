"""Typed errors of the image loader.

All of them subclass :class:`vmed.errors.UserInputError`, so the CLI prints the message on one
line and exits with code 2. Every message names the file (or the ``name`` given for bytes input),
says what was expected and how to fix it. Messages never contain DICOM tag values other than
technical ones (sizes, transfer syntax, photometric interpretation).
"""

from __future__ import annotations

from vmed.errors import UserInputError

__all__ = ["ImageError", "ImageTooLarge", "UnsupportedImageFormat", "CorruptImage", "MissingDecoder"]


class ImageError(UserInputError):
    """Base class: an image that cannot be turned into the RGB picture the model sees."""


class ImageTooLarge(ImageError):
    """The image has more pixels than the budget; refused before its pixels are decoded.

    ``pixels`` is the image's pixel count (all frames for DICOM; ``None`` when unknown) and
    ``limit`` the budget that it exceeds.
    """

    def __init__(self, message: str, *, pixels: int | None, limit: int) -> None:
        super().__init__(message)
        self.pixels = pixels
        self.limit = limit


class UnsupportedImageFormat(ImageError):
    """The bytes are not PNG, JPEG, BMP, TIFF or DICOM (or a DICOM variant the loader does not handle)."""


class CorruptImage(ImageError):
    """The file claims a supported format but is truncated or damaged."""


class MissingDecoder(ImageError):
    """A compressed DICOM transfer syntax whose decoder package is not installed.

    ``packages`` lists the pip package names that would add a decoder.
    """

    def __init__(self, message: str, *, packages: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.packages = packages
