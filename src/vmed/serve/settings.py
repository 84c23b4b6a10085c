"""``ServeLimits``: every limit of ``vmed serve`` and its default, in one place.

Standard library only, so that ``vmed serve --help`` can show these defaults without importing the
server. ``cli/serve.py`` builds its flags from ``DEFAULT_LIMITS``; ``vmed.serve.limits`` and
``vmed.serve.server`` read the values.
"""

from __future__ import annotations

from dataclasses import dataclass

from vmed.constants import DEFAULT_MAX_IMAGE_PIXELS

__all__ = ["ServeLimits", "DEFAULT_LIMITS", "MIB"]

MIB = 1024 * 1024


@dataclass(frozen=True)
class ServeLimits:
    """Every limit of ``vmed serve``; each one is a command-line flag (see ``vmed serve --help``)."""

    max_body_bytes: int = 16 * MIB
    """Largest request body; larger bodies get 413 before they are read (``--max-body-mb``)."""
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    """Pixel budget per image, checked from the header before decoding (``--max-image-pixels``)."""
    max_images: int = 4
    """Most images in one request (``--max-images``); the model sees the last one."""
    max_concurrent: int = 4
    """Requests processed at once; more get 429 immediately (``--max-concurrent``). A slot is taken only
    once the whole body has been received."""
    allowed_image_hosts: tuple[str, ...] = ()
    """Hosts that ``http(s)://`` image URLs may name (``--allow-image-host``); empty: no URL fetching."""
    fetch_timeout_s: float = 10.0
    """Total time for fetching one image URL, redirects included (``--image-fetch-timeout``)."""
    fetch_max_bytes: int = 16 * MIB
    """Largest fetched image (``--image-fetch-max-mb``)."""
    max_redirects: int = 3
    """Redirects followed per image URL; each target is checked like the first URL."""
    default_max_tokens: int = 256
    """``max_tokens`` when the request gives none (clamped to the room left in the context)."""
    header_timeout_s: float = 10.0
    """Time a connection has to send a complete request line and headers; then it is closed (``--header-timeout``)."""
    body_timeout_s: float = 30.0
    """Time a request has to send its whole body once its headers are in; then 408 (``--body-timeout``)."""
    keep_alive_s: float = 5.0
    """An idle keep-alive connection is closed after this many seconds (``--keep-alive``)."""
    max_header_bytes: int = 16 * 1024
    """Largest request line plus headers (h11's incomplete-event limit); larger: 400 and the connection closed."""


DEFAULT_LIMITS = ServeLimits()
"""The defaults, for flags and helpers that need one value without building a server."""
