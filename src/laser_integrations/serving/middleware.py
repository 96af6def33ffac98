"""The layers every request passes before a route: metrics and draining, the API key, and the body's limits.

From the outside in (:func:`add_middleware` installs them in this order):

- :class:`RequestMetrics` counts requests by route and status, times them, tracks those in flight (the
  collection window reads how many embedding requests are), and answers a JSON 503 for a request still
  running when ``--graceful-timeout`` runs out (uvicorn cancels it; its own answer would be a plain 500).
- Starlette's ``AuthenticationMiddleware`` with :class:`BearerKey`: 401 for a missing or wrong key on every
  route but ``/health``, compared in constant time.
- :class:`BodyGuard` reads the body before the app does: 413 over ``max_request_bytes`` (at once when the
  ``Content-Length`` says so), 408 when it has not all arrived within ``body_timeout`` seconds.

These are pure ASGI classes, not ``BaseHTTPMiddleware``, so that a route still sees the client leave.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import TYPE_CHECKING

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, SimpleUser
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from laser_integrations.serving.errors import APIError, unavailable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from laser_integrations.serving.state import ServerState

ROUTES = ("/v1/embeddings", "/v1/models", "/embed", "/", "/info", "/health", "/metrics")
EMBEDDING_ROUTES = ("/v1/embeddings", "/embed", "/")
OPEN_ROUTES = ("/health",)
"""Routes answered without the API key (load balancers and orchestrators probe them)."""


def add_middleware(app: FastAPI, state: ServerState) -> None:
    """Install the layers above on ``app`` (the last added runs first)."""
    app.add_middleware(BodyGuard, state=state)
    if state.settings.api_key is not None:
        app.add_middleware(AuthenticationMiddleware, backend=BearerKey(state.settings.api_key), on_error=_refused)
    app.add_middleware(RequestMetrics, state=state)


class RequestMetrics:
    """Per-route request counts and latency, requests in flight, and a JSON 503 for one cut off by shutdown."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.state.metrics
        route = route_label(scope.get("path", ""))
        status, responded = 500, False
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
            await send(message)

        embedding = route in EMBEDDING_ROUTES
        metrics.in_flight.inc()
        self.state.embeddings_in_flight += embedding
        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            # Only uvicorn cancels a request's task: --graceful-timeout ran out while it was still running.
            if responded:
                raise
            error = unavailable(
                "the server is shutting down and could not finish this request in time: send it again", "shutting_down"
            )
            await error.response()(scope, receive, send_and_note)
        finally:
            self.state.embeddings_in_flight -= embedding
            metrics.in_flight.dec()
            metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)


class BearerKey(AuthenticationBackend):
    """``Authorization: Bearer <key>`` on every route but :data:`OPEN_ROUTES`, compared in constant time."""

    def __init__(self, key: str) -> None:
        self._key = key.encode()

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        if conn.scope.get("path") in OPEN_ROUTES:
            return None
        header = conn.headers.get("authorization")
        if header is None:
            raise AuthenticationError("missing API key: send the header 'Authorization: Bearer <key>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            raise AuthenticationError("invalid API key")
        return AuthCredentials(["embed"]), SimpleUser("api-key")


def _refused(_: HTTPConnection, error: AuthenticationError) -> Response:
    return APIError(401, str(error), code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"}).response()


class BodyGuard:
    """Reads a request's body, bounded in size and time, and replays it to the app."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.limit = state.settings.max_request_bytes
        self.timeout = state.settings.body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = next((value for name, value in scope.get("headers", ()) if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large().response()(scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        try:
            bounded = await asyncio.wait_for(self._read(receive), self.timeout)
        except TimeoutError:
            bounded = APIError(
                408,
                f"the request body did not arrive within {self.timeout:g} s",
                code="body_timeout",
                headers={"Connection": "close"},
            )
        if isinstance(bounded, APIError):
            await bounded.response()(scope, receive, send)
            return
        await self.app(scope, bounded, send)

    async def _read(self, receive: Receive) -> Receive | APIError:
        """The body read up to the limit and replayed, or the 413 to answer."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return self._too_large()
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)

    def _too_large(self) -> APIError:
        return APIError(
            413,
            f"the request body is over {self.limit} bytes; send fewer texts per request",
            code="request_too_large",
            headers={"Connection": "close"},
        )


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


def route_label(path: str) -> str:
    """The route a path belongs to (unknown paths share one label, so metrics stay bounded).

    >>> route_label("/v1/models/tiny:query"), route_label("/wp-admin")
    ('/v1/models/{name}', 'other')
    """
    if path in ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{name}"
    return "other"
