"""Connection-level limits of ``laser serve`` under uvicorn: header and keep-alive timeouts, a connection cap.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive``, but has no deadline for a request's
headers, and its ``limit_concurrency`` answers a plain-text 503. :func:`limited_protocol` adds both to
uvicorn's own HTTP protocol class:

- a connection whose request line and headers have not all arrived ``header_timeout`` seconds after it
  opened (or ``keep_alive_timeout + header_timeout`` after its previous response) is closed;
- a connection opened while ``max_connections`` are already open gets a JSON 503 for its request, then is
  closed.

The body's own deadline is the app's (:class:`~laser_integrations.serving.middleware.BodyGuard`).

>>> limits = ConnectionLimits(header_timeout=5, max_connections=100)
>>> limits.keep_alive_timeout
5.0
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

from laser_integrations.serving.errors import unavailable
from laser_integrations.validation import positive_int


@dataclass(frozen=True)
class ConnectionLimits:
    """The ``laser serve`` flags uvicorn enforces per connection."""

    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's line and headers (``--header-timeout``)."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection stays open between requests (``--keep-alive-timeout``)."""
    max_connections: int = 1024
    """Open connections served at once; more get a JSON 503 and are closed (``--max-connections``)."""

    def __post_init__(self) -> None:
        for name in ("header_timeout", "keep_alive_timeout"):
            value = getattr(self, name)
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        positive_int("max_connections", self.max_connections)


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    error = unavailable(
        "this server is at its connection limit (--max-connections): retry shortly", "too_many_connections"
    )
    await error.response()(scope, receive, send)


def limited_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (httptools, else h11) with ``limits``' header timeout and connection cap."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class LimitedProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.app = _over_capacity
            self._arm_header_deadline(limits.header_timeout)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline(limits.keep_alive_timeout + limits.header_timeout)

        def _arm_header_deadline(self, seconds: float) -> None:
            self.loop.call_later(seconds, self._close_if_no_request_since, self.cycle)

        def _close_if_no_request_since(self, armed: Any) -> None:
            # A new request replaces the cycle once its headers are in; a running one is never cut here.
            idle = self.cycle is None or self.cycle.response_complete
            if self.cycle is armed and idle and not self.transport.is_closing():
                self.transport.close()

    return LimitedProtocol


def uvicorn_config(app: Any, limits: ConnectionLimits, **options: Any) -> Any:
    """A ``uvicorn.Config`` for ``app`` with ``limits`` (``options``: any other ``uvicorn.Config`` argument)."""
    import uvicorn

    return uvicorn.Config(app, http=limited_protocol(limits), timeout_keep_alive=limits.keep_alive_timeout, **options)
