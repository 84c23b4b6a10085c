"""The typed-error and privacy boundary around the image decoders (Pillow and pydicom).

Every decode in ``vmed.imaging`` runs inside :func:`decoding`, which

- turns the exceptions that Pillow, pydicom and numpy raise on damaged or hostile bytes into
  :class:`CorruptImage` naming the file, *without* the library's message: pydicom's messages quote
  tag values ("invalid literal for int(): '<a name>'"), which may be patient data;
- drops, for the calling thread only, every log record of the ``pydicom`` and ``PIL`` loggers and their
  children (pydicom logs "Invalid value for VR IS: '<value>'" and decoder tracebacks; Pillow logs TIFF
  tag values at DEBUG), and the warnings raised meanwhile.

Typed :class:`ImageError` subclasses raised inside pass through unchanged. Only the exception types
listed in ``DECODER_ERRORS`` are converted: anything else is a bug in vmed and propagates.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
import warnings
import zlib
from collections.abc import Iterator

from pydicom.errors import BytesLengthException, InvalidDicomError

from vmed.imaging.errors import CorruptImage, ImageError

__all__ = ["DECODER_ERRORS", "decoding", "quiet_decoders"]

DECODER_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # Pillow's "image file is truncated", "cannot identify", decoder errors
    SyntaxError,  # Pillow's "not a PNG file" and friends
    ValueError,  # pydicom value conversion, numpy reshapes, Pillow mode errors (UnicodeDecodeError too)
    EOFError,
    IndexError,
    KeyError,
    TypeError,
    AttributeError,  # pydicom datasets missing an element a decoder expects
    NotImplementedError,  # pydicom: an unsupported bit depth / LUT variant
    RuntimeError,  # pydicom's decoder plugins (RecursionError too, from deeply nested sequences)
    ArithmeticError,  # overflow in sizes or rescale values
    struct.error,
    zlib.error,
    InvalidDicomError,
    BytesLengthException,  # pydicom: a binary tag whose length does not fit its VR
)
"""What a decoder raises on bad bytes; converted to ``CorruptImage`` by :func:`decoding`."""

_LOGGER_ROOTS = ("pydicom", "PIL")
_muted = threading.local()


class _MuteThisThread(logging.Filter):
    """Drops records from threads that are inside ``quiet_decoders``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_muted, "depth", 0)


_FILTER = _MuteThisThread()


def _install_filter() -> None:
    # A logger's filters only see records logged on that logger, not those propagated from its
    # children ("pydicom.pixels.decoders.base"), so the filter goes on every logger of the tree.
    names = [n for n in logging.Logger.manager.loggerDict if n.split(".")[0] in _LOGGER_ROOTS]
    for name in set(names) | set(_LOGGER_ROOTS):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


@contextlib.contextmanager
def quiet_decoders() -> Iterator[None]:
    """Silence pydicom's and Pillow's log records (this thread only) and all warnings meanwhile."""
    _install_filter()
    _muted.depth = getattr(_muted, "depth", 0) + 1
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _muted.depth -= 1
        _install_filter()  # loggers created lazily during the decode get the filter for next time


@contextlib.contextmanager
def decoding(label: str, what: str) -> Iterator[None]:
    """Run a decode of ``what`` (e.g. "DICOM file", "PNG image") for the file called ``label``.

    Raises ``CorruptImage`` for the library errors in ``DECODER_ERRORS``; ``ImageError`` passes through.
    """
    with quiet_decoders():
        try:
            yield
        except ImageError:
            raise
        except DECODER_ERRORS as e:
            raise CorruptImage(
                f"{label}: the {what} cannot be decoded ({type(e).__name__}); it is truncated, damaged or a variant "
                "vmed does not read; re-export it from its source (e.g. as PNG, or as uncompressed DICOM)"
            ) from None
