"""Every error ``laser serve`` answers, as OpenAI's JSON body: ``{"error": {"message", "type", "param", "code"}}``.

:class:`APIError` is what the app's own code raises; :func:`add_error_handlers` maps FastAPI's validation
errors (400, never 422), Starlette's HTTP errors (404, 405) and anything unexpected (500, with the
exception's type only) onto the same body.

>>> error = APIError(413, "too many texts", param="input", code="too_many_inputs")
>>> error.response().status_code, error.response().body[:10]
(413, b'{"error":{')
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from laser_integrations.serving.schemas import ErrorBody, error_body

try:  # an optional speed-up: both encoders write every float so that it parses back to the same value
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "bad input",
        401: "missing or wrong API key",
        404: "unknown model",
        408: "the body did not arrive in time",
        413: "too many inputs, an input too long, or a body too large",
        415: "the body is not JSON",
        503: "the server is shutting down or at its connection limit",
    }.items()
}
"""The error statuses the embedding routes document in the OpenAPI schema."""

ROUTE_LIST = "POST /v1/embeddings, POST /embed, GET /v1/models, GET /info, GET /health"


class APIError(Exception):
    """An error answered with ``status`` and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type
        self.headers = headers

    def response(self) -> Response:
        return json_response(error_body(self.message, self.type, self.param, self.code), self.status, self.headers)


def unavailable(message: str, code: str) -> APIError:
    """A 503 the client should retry: the connection is closed after it, and ``Retry-After`` says 1 s."""
    return APIError(503, message, type="server_error", code=code, headers={"Connection": "close", "Retry-After": "1"})


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON without response-model validation (vectors are large; orjson is used when installed).

    A string that is not valid Unicode (a lone surrogate a client sent, echoed in a ``param``) is written
    as a ``\\ud800`` escape instead of failing the response.
    """
    body = None
    if orjson is not None:
        try:
            body = orjson.dumps(content)
        except TypeError:  # orjson refuses lone surrogates; the standard encoder escapes them
            body = None
    if body is None:
        body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


def add_error_handlers(app: FastAPI) -> None:
    """Answer every exception a route or FastAPI raises with the OpenAI error body."""
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _server_error)


async def _api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, APIError)
    return error.response()


async def _validation_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    message, param = describe_validation(error.errors())
    return APIError(400, message, param=param).response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    message = str(error.detail)
    if error.status_code == 404:
        message = f"{request.method} {request.url.path}: no such route (this server has {ROUTE_LIST})"
    elif error.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    elif error.status_code == 400 and error.__cause__ is not None:
        message = "the request body could not be read as JSON text (UTF-8)"
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
    headers = dict(error.headers) if error.headers else None
    return APIError(error.status_code, message, code=code, headers=headers).response()


async def _server_error(_: Request, error: Exception) -> Response:
    return APIError(500, f"internal error: {type(error).__name__}", type="server_error").response()


def describe_validation(errors: Any) -> tuple[str, str | None]:
    """One message and the ``param`` from FastAPI's validation errors (the first one; the count if more).

    >>> describe_validation([{"loc": ("body", "input"), "msg": "Field required", "type": "missing"}])
    ('input is required', 'input')
    """
    errors = list(errors)
    if not errors:
        return "invalid request", None
    first = errors[0]
    location = [part for part in first.get("loc", ()) if part != "body"]
    param = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".") or None
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = first.get("type", "")
    if kind == "json_invalid":
        message, param = "the request body is not valid JSON", None
    elif kind == "extra_forbidden":
        extensions = "input_type, num_thinking_steps, instruction, truncate"
        message = f"unknown field {param!r} (LaSER's extension fields: {extensions})"
    elif kind == "missing":
        message = f"{param} is required" if param else "the request body is missing: send a JSON object"
    elif param and not message.startswith(param):
        message = f"{param}: {message}"
    if len(errors) > 1:
        message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return message, param
