"""Running the app with uvicorn under ``ServeLimits``' connection timeouts.

uvicorn's h11 protocol closes idle keep-alive connections (``timeout_keep_alive``) and bounds the
header size (``h11_max_incomplete_event_size``), but it never times out a connection that has not
finished sending its request line and headers: a client that opens sockets and sends a byte now
and then keeps them forever. ``HeaderTimeoutProtocol`` adds that deadline; the body deadline is
``BodySizeLimit``'s (``vmed.serve.limits``).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any, Iterator

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from vmed.serve.settings import DEFAULT_LIMITS, ServeLimits

# lazy: uvicorn (the optional extra vmed[serve]) is imported inside the functions that start a server

__all__ = ["HeaderTimeoutProtocol", "uvicorn_config", "serve_in_thread"]


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, plus: a request's line and headers must be complete within ``header_timeout_s``.

    The clock starts when the connection opens, or when the first byte of a next request arrives on a
    kept-alive connection; it stops once h11 has parsed the headers. On expiry the connection is closed.
    """

    header_timeout_s: float = DEFAULT_LIMITS.header_timeout_s

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._update_header_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._update_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._cancel_header_timer()  # idle time until the next request is uvicorn's keep-alive timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _waiting_for_headers(self) -> bool:
        return self.conn.their_state is h11.IDLE and not self.transport.is_closing()

    def _update_header_timer(self) -> None:
        if not self._waiting_for_headers():
            self._cancel_header_timer()
        elif self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_timeout)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers():
            self.transport.close()


def uvicorn_config(app: Any, *, host: str = "127.0.0.1", port: int = 0, log_level: str = "info", **kwargs: Any) -> Any:
    """A ``uvicorn.Config`` for ``app`` with the connection limits of ``app.state.limits`` (a ``ServeLimits``)."""
    import uvicorn

    limits: ServeLimits = getattr(app.state, "limits", DEFAULT_LIMITS)
    protocol = type("VmedH11Protocol", (HeaderTimeoutProtocol,), {"header_timeout_s": limits.header_timeout_s})
    return uvicorn.Config(
        app, host=host, port=port, log_level=log_level, http=protocol, timeout_keep_alive=limits.keep_alive_s,
        h11_max_incomplete_event_size=limits.max_header_bytes, **kwargs,
    )


@contextlib.contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields the base URL (``http://host:port``).

    ``port=0`` picks a free port. Used by tests, the load benchmark and notebooks.
    """
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, host=host, port=port, log_level=log_level, lifespan="off"))
    thread = threading.Thread(target=server.run, name="vmed-serve", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start on {host}:{port}")
        time.sleep(0.02)
    bound_port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound_port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
