"""Hard input limits of the HTTP server: body size, concurrency, image decoding and URL fetching.

Everything a client sends passes through here before it reaches the model:

- ``BodySizeLimit``: a pure ASGI middleware that answers 413 before the body is read into memory
  (``Content-Length`` is checked up front; a chunked body is counted while it streams and cut off).
- ``ConcurrencyLimiter``: try-acquire slots; a request over the limit gets 429 at once instead of
  waiting in an unbounded queue.
- ``image_url_bytes`` / ``load_image_bytes``: ``data:`` URLs (strict base64, a media-type allowlist) and,
  only for hosts the operator allowed, ``http(s)://`` URLs; images go through ``vmed.imaging.load_image``
  with the pixel budget, which checks the header before decoding.
- ``ImageFetcher``: the URL policy. Off by default. When hosts are allowed, every redirect is followed by
  hand and re-checked against the allowlist, the host is resolved once and every address must be public
  (loopback, private, link-local, multicast and reserved addresses are always refused), the connection
  goes to the checked address (no second DNS lookup), and there is a timeout and a size cap.

Nothing here logs request content (prompts, images, DICOM tags).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urljoin, urlsplit

import httpx
from PIL import Image
from starlette.exceptions import HTTPException

from vmed.serve.settings import DEFAULT_LIMITS, ServeLimits

# lazy: vmed.imaging (numpy, PIL, pydicom: about 0.8 s) is imported by the image decoder only

__all__ = [
    "ApiError",
    "ServeLimits",
    "BodySizeLimit",
    "ConcurrencyLimiter",
    "ImageFetcher",
    "parse_data_url",
    "is_data_url",
    "image_url_bytes",
    "is_public_address",
    "load_image_bytes",
    "SUPPORTED_MEDIA_TYPES",
]

SUPPORTED_MEDIA_TYPES = (
    "image/png", "image/jpeg", "image/jpg", "image/bmp", "image/tiff", "application/dicom", "application/octet-stream",
)
"""Media types accepted in ``data:`` URLs (``application/octet-stream``: the format is sniffed from the bytes)."""


class ApiError(Exception):
    """A request the server refuses, rendered as an OpenAI-style error body.

    ``{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`` with HTTP ``status``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def _error_response(status: int, message: str, code: str) -> tuple[dict, bytes]:
    body = json.dumps(ApiError(status, message, code=code).body()).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    }
    return start, body


class _BodyRefused(HTTPException):
    """Raised from the wrapped ``receive`` when a streamed body passes the size limit (413) or its deadline (408).

    An ``HTTPException`` so that FastAPI's body parsing re-raises it (instead of turning it into a 400).
    """

    def __init__(self, status: int, message: str, code: str):
        super().__init__(status, message)
        self.code = code


class BodySizeLimit:
    """Pure ASGI middleware: 413 for request bodies over ``max_bytes``, 408 for bodies slower than ``timeout_s``.

    A declared ``Content-Length`` over the limit is refused before a single body byte is received. A
    body without one (chunked) is counted chunk by chunk as the app reads it; the chunk that passes the
    limit aborts the request with 413 (the connection is then closed, the rest is never read). The
    whole body must arrive within ``timeout_s`` of the app's first read, so a client that trickles
    bytes cannot hold a socket (routes read the body before they take a concurrency slot). Once the
    body is complete, ``receive`` is passed through untouched (it then only reports a disconnect).
    """

    def __init__(self, app, max_bytes: int, timeout_s: float = DEFAULT_LIMITS.body_timeout_s):
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def _too_large(self) -> _BodyRefused:
        return _BodyRefused(413, f"request body is larger than the server's limit of {self.max_bytes} bytes (--max-body-mb)", "body_too_large")

    def _too_slow(self) -> _BodyRefused:
        return _BodyRefused(
            408, f"the request body did not arrive within {self.timeout_s:g} s (--body-timeout); send it at once", "request_timeout",
        )

    @staticmethod
    async def _refuse(send, refusal: _BodyRefused) -> None:
        start, body = _error_response(refusal.status_code, str(refusal.detail), refusal.code)
        await send(start)
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(send, self._too_large())
                    return

        received = 0
        deadline: float | None = None
        body_done = False
        started = False
        refused = False

        async def limited_receive():
            nonlocal received, deadline, body_done, refused
            if body_done:
                return await receive()
            loop = asyncio.get_running_loop()
            deadline = deadline if deadline is not None else loop.time() + self.timeout_s
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                refused = True
                raise self._too_slow() from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    raise self._too_large()
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if refused:  # the rest of the body is never read: close the connection after the answer
                    message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyRefused as refusal:
            if not started:
                await self._refuse(send, refusal)


class ConcurrencyLimiter:
    """Counts requests in flight; ``try_acquire`` fails at once when all ``limit`` slots are taken.

    Used from the event loop only (one thread), so a plain counter is enough.
    """

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {limit}")
        self.limit = limit
        self.in_flight = 0

    def try_acquire(self) -> bool:
        if self.in_flight >= self.limit:
            return False
        self.in_flight += 1
        return True

    def release(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)


def is_data_url(url: str) -> bool:
    """True for a ``data:`` URL; URL schemes are case-insensitive (RFC 3986 §3.1), so ``DATA:`` counts too."""
    return url[:5].lower() == "data:"


_BASE64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_WHITESPACE = str.maketrans("", "", " \t\r\n\f\v")


def _decode_base64(payload: str, param: str) -> bytes:
    """Standard base64 (RFC 4648), ignoring line breaks and spaces as MIME encoders write them (RFC 2045 §6.8)."""
    compact = payload.translate(_WHITESPACE)
    bad = next((i for i, ch in enumerate(compact) if ch not in _BASE64_ALPHABET), None)
    if bad is not None:
        hint = " (URL-safe base64 uses '-' and '_'; encode with the standard alphabet)" if compact[bad] in "-_" else ""
        raise ApiError(
            400, f"invalid base64 in data URL: character {compact[bad]!r} at position {bad} of the data is not in the "
            f"base64 alphabet (A-Z a-z 0-9 + / =){hint}", param=param, code="invalid_base64",
        )
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(400, f"invalid base64 in data URL: {e} (the data has {len(compact)} base64 characters)", param=param, code="invalid_base64") from None


def parse_data_url(url: str, *, param: str = "image_url") -> tuple[str, bytes]:
    """``data:<media-type>[;...];base64,<payload>`` -> (media type, decoded bytes). Raises ``ApiError`` (400).

    As RFC 2397 allows: any case for the scheme, media type and ``base64``; parameters (``;name=x.png``);
    line breaks inside the base64 (MIME encoders add them every 76 characters).
    """
    head, sep, payload = url.partition(",")
    if not sep or not is_data_url(head):
        raise ApiError(400, "malformed data URL: expected 'data:<media-type>;base64,<data>'", param=param, code="invalid_image_url")
    meta = head[len("data:"):].split(";")
    media_type = (meta[0] or "text/plain").strip().lower()
    if "base64" not in [m.strip().lower() for m in meta[1:]]:
        raise ApiError(400, "data URL must be base64-encoded (';base64,')", param=param, code="invalid_image_url")
    if media_type not in SUPPORTED_MEDIA_TYPES:
        raise ApiError(
            400,
            f"unsupported media type {media_type[:60]!r} in data URL; supported: {', '.join(SUPPORTED_MEDIA_TYPES)}",
            param=param,
            code="unsupported_media_type",
        )
    data = _decode_base64(payload, param)
    if not data:
        raise ApiError(400, "empty image in data URL", param=param, code="invalid_image")
    return media_type, data


def load_image_bytes(
    data: bytes,
    *,
    max_pixels: int,
    preset: str | None = None,
    window: tuple[float, float] | None = None,
    param: str = "image_url",
) -> Image.Image:
    """Decode image bytes (PNG/JPEG/DICOM) with ``vmed.imaging.load_image``; image errors become 400.

    The pixel budget is checked from the header before decoding; the message names the limit.
    """
    from vmed.imaging import ImageError, ImageTooLarge, load_image

    try:
        return load_image(data, preset=preset, window=window, max_pixels=max_pixels, name="request image")
    except ImageTooLarge as e:
        raise ApiError(
            400, f"{e} (the server's pixel budget is {max_pixels} pixels, --max-image-pixels)", param=param, code="image_too_large"
        ) from None
    except ImageError as e:
        raise ApiError(400, f"unreadable image: {e}", param=param, code="invalid_image") from None


Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({info[4][0] for info in infos})


def is_public_address(address: str) -> bool:
    """False for loopback, private, link-local, multicast, reserved and unspecified addresses."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (
        ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
        or not ip.is_global
    )


@dataclass
class ImageFetcher:
    """Fetches ``http(s)://`` image URLs under the operator's policy (see the module docstring).

    ``resolver`` and ``transport`` exist so that tests can run without a network.
    """

    allowed_hosts: tuple[str, ...] = DEFAULT_LIMITS.allowed_image_hosts
    timeout_s: float = DEFAULT_LIMITS.fetch_timeout_s
    max_bytes: int = DEFAULT_LIMITS.fetch_max_bytes
    max_redirects: int = DEFAULT_LIMITS.max_redirects
    resolver: Resolver = field(default=_resolve)
    transport: httpx.BaseTransport | None = None

    @classmethod
    def from_limits(cls, limits: ServeLimits) -> "ImageFetcher":
        """The policy ``vmed serve`` runs with: the hosts, timeout and size cap of ``limits``."""
        return cls(
            allowed_hosts=tuple(h.lower().rstrip(".") for h in limits.allowed_image_hosts), timeout_s=limits.fetch_timeout_s,
            max_bytes=limits.fetch_max_bytes, max_redirects=limits.max_redirects,
        )

    def check_url(self, url: str, param: str = "image_url") -> tuple[str, str, int, str]:
        """The policy for one URL, without fetching: -> (scheme, host, port, a checked public address), or ApiError 400."""
        try:
            parts = urlsplit(url)
            explicit_port = parts.port  # raises ValueError for a port that is not a number in 0-65535
        except ValueError:
            raise ApiError(
                400, "malformed image URL (unbalanced brackets or a bad port); send the image as a data: URL",
                param=param, code="invalid_image_url",
            ) from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ApiError(400, f"image URL scheme {scheme[:20]!r} is not allowed; send the image as a data: URL", param=param, code="image_url_refused")
        host = (parts.hostname or "").lower().rstrip(".")
        if not self.allowed_hosts:
            raise ApiError(
                400,
                "image URLs are disabled on this server; send the image as a data: URL "
                "(the operator can allow hosts with --allow-image-host)",
                param=param,
                code="image_url_refused",
            )
        if host not in self.allowed_hosts:
            raise ApiError(400, f"image host {host[:100]!r} is not in the server's allowlist", param=param, code="image_url_refused")
        port = explicit_port or (443 if scheme == "https" else 80)
        try:
            addresses = self.resolver(host, port)
        except OSError:
            raise ApiError(400, f"image host {host!r} could not be resolved", param=param, code="image_url_refused") from None
        if not addresses:
            raise ApiError(400, f"image host {host!r} could not be resolved", param=param, code="image_url_refused")
        for address in addresses:
            if not is_public_address(address):
                raise ApiError(
                    400,
                    f"image host {host!r} resolves to a loopback, private or link-local address; refused",
                    param=param,
                    code="image_url_refused",
                )
        return scheme, host, port, addresses[0]

    def fetch(self, url: str, *, param: str = "image_url") -> bytes:
        """Download one image URL (blocking; call it from a worker thread). Raises ``ApiError`` (400)."""
        deadline = time.monotonic() + self.timeout_s
        with httpx.Client(transport=self.transport, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                scheme, host, port, address = self.check_url(url, param)
                parts = urlsplit(url)
                ip_host = f"[{address}]" if ":" in address else address
                target = f"{scheme}://{ip_host}:{port}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
                headers = {"Host": host if parts.port is None else f"{host}:{port}", "Accept": "image/*, application/dicom"}
                extensions = {"sni_hostname": host} if scheme == "https" else {}
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ApiError(400, f"fetching the image URL took longer than {self.timeout_s:g} s", param=param, code="image_fetch_failed")
                try:
                    with client.stream("GET", target, headers=headers, extensions=extensions, timeout=remaining) as response:
                        if response.is_redirect:
                            location = response.headers.get("location")
                            if not location:
                                raise ApiError(400, "image URL redirected without a Location", param=param, code="image_fetch_failed")
                            url = urljoin(url, location)
                            continue
                        if response.status_code != 200:
                            raise ApiError(400, f"image URL answered HTTP {response.status_code}", param=param, code="image_fetch_failed")
                        declared = response.headers.get("content-length")
                        if declared and declared.isdigit() and int(declared) > self.max_bytes:
                            raise ApiError(400, self._too_big(), param=param, code="image_fetch_failed")
                        chunks, size = [], 0
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                            if size > self.max_bytes:
                                raise ApiError(400, self._too_big(), param=param, code="image_fetch_failed")
                            if time.monotonic() > deadline:
                                raise httpx.ReadTimeout("deadline")
                            chunks.append(chunk)
                        return b"".join(chunks)
                except httpx.TimeoutException:
                    raise ApiError(400, f"fetching the image URL took longer than {self.timeout_s:g} s", param=param, code="image_fetch_failed") from None
                except httpx.HTTPError as e:
                    raise ApiError(400, f"fetching the image URL failed ({type(e).__name__})", param=param, code="image_fetch_failed") from None
        raise ApiError(400, f"image URL redirected more than {self.max_redirects} times", param=param, code="image_fetch_failed")

    def _too_big(self) -> str:
        return f"the fetched image is larger than the server's limit of {self.max_bytes} bytes (--image-fetch-max-mb)"


def image_url_bytes(url: str, fetcher: ImageFetcher, *, param: str = "image_url") -> bytes:
    """The raw bytes behind an ``image_url``: a ``data:`` URL or, under the fetch policy, an http(s) URL."""
    if is_data_url(url):
        return parse_data_url(url, param=param)[1]
    return fetcher.fetch(url, param=param)
