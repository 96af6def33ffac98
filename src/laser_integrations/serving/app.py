"""The ``laser serve`` ASGI app: one LaSER model behind OpenAI's and TEI's embedding APIs.

Routes:

- ``POST /v1/embeddings``: OpenAI's create-embeddings (``input``, ``model``, ``encoding_format`` float|base64,
  ``dimensions``, ``usage``), plus the extension fields ``input_type``, ``num_thinking_steps``, ``instruction``
  and ``truncate``. ``GET /v1/models`` and ``GET /v1/models/{name}`` list the served names.
- ``POST /embed`` (and ``POST /``, where TEI clients given a bare URL post): TEI's ``inputs``, ``normalize``,
  ``truncate``, ``prompt_name``; ``GET /info``: TEI's model info plus a ``laser`` block with the provenance.
- ``GET /health``: ``{"status": "ok"}``, never behind the API key. ``GET /metrics``: Prometheus text.

Sides: ``input_type`` (or TEI's ``prompt_name``), else a ``:query``/``:document`` suffix on the model name,
else :attr:`ServeSettings.default_side` (``document``: the text as given, no instruction, what any other
embedding server does for a client that cannot say more). Every request goes through one
:class:`~laser_integrations.serving.engine.ServingEncoder`, whose micro-batcher lets concurrent requests
share forward passes (never across sides, K or instructions) in a worker thread, off the event loop.

Errors are OpenAI's body on every route (``{"error": {"message", "type", "param", "code"}}``): 400 for bad
input (FastAPI's 422s included), 401 for a missing or wrong key, 404 for an unknown model or route, 413 for
too many inputs, an input over ``max_seq_length`` tokens (unless ``truncate``) or a body over the byte limit.

>>> from laser_integrations import load_model
>>> app = create_app(load_model("smollm2"), ServeSettings(served_model_name="smollm2"))   # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8080)                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from laser_integrations import __version__
from laser_integrations.embedder import EncodeOptions, resolve_model
from laser_integrations.serving.engine import ServingEncoder, TokenCounter
from laser_integrations.serving.metrics import CONTENT_TYPE, ServerMetrics
from laser_integrations.serving.schemas import (
    SIDES,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    ErrorBody,
    LaserMetadata,
    ModelCard,
    ModelList,
    Side,
    error_body,
)

try:  # an optional speed-up: both encoders write every float so that it parses back to the same value
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ROUTES = ("/v1/embeddings", "/v1/models", "/embed", "/", "/info", "/health", "/metrics")
EMBEDDING_ROUTES = ("/v1/embeddings", "/embed", "/")
OPEN_ROUTES = ("/health",)
"""Routes answered without the API key (load balancers and orchestrators probe them)."""

MAX_ADAPTIVE_WAIT_MS = 500.0
"""The longest collection window :attr:`ServeSettings.wait_fraction` may choose."""

INLINE_TOKENIZE_CHARS = 4096
"""Requests with at most this many characters are tokenized on the event loop (tens of microseconds),
larger ones in the tokenizer thread so that the loop keeps serving."""

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in {
        400: "bad input",
        401: "missing or wrong API key",
        404: "unknown model",
        413: "too many inputs, an input too long, or a body too large",
    }.items()
}


@dataclass(frozen=True)
class ServeSettings:
    """How the server treats requests (the ``laser serve`` options).

    Example:
        >>> ServeSettings(api_key="secret", max_batch_size=16).default_side
        'document'
    """

    served_model_name: str | None = None
    """The name clients send as ``model`` (default: the model's provenance name). The provenance name is
    accepted too, and either with a ``:query`` or ``:document`` suffix."""
    api_key: str | None = field(default=None, repr=False)
    """Require ``Authorization: Bearer <api_key>`` on every route but ``/health`` (``None``: open)."""
    max_batch_size: int = 32
    """Texts per forward pass; concurrent requests are coalesced up to this many (1: no coalescing)."""
    max_wait_ms: float = 2.0
    """How long the micro-batcher collects concurrent requests before a forward pass (at least)."""
    wait_fraction: float = 0.05
    """While other embedding requests are in flight, collect for up to this fraction of the last forward pass's
    time, when that is longer than ``max_wait_ms`` (capped at :data:`MAX_ADAPTIVE_WAIT_MS`). The clients a pass
    answers send their next requests a few milliseconds after it ends; without this they miss the next pass and
    requests settle into two cohorts that alternate in half-full passes. A lone client never waits for it.
    ``0`` turns it off."""
    max_inputs: int = 2048
    """Most texts one request may carry (413 above; 2048 is OpenAI's own limit)."""
    max_thinking_steps: int = 32
    """Largest ``num_thinking_steps`` a request may ask for (400 above): K is compute the client chooses."""
    default_side: Side = "document"
    """The side of a request that names none (``input_type``, ``prompt_name`` or a model-name suffix)."""
    auto_truncate: bool = False
    """Cut over-long inputs at ``max_seq_length`` tokens instead of answering 413 (a request's ``truncate``
    overrides it)."""
    max_request_bytes: int = 16 * 2**20
    """Largest request body (413 above)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_inputs", "max_thinking_steps", "max_request_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms!r}")
        if not 0 <= self.wait_fraction <= 1:
            raise ValueError(f"wait_fraction must be between 0 and 1, got {self.wait_fraction!r}")
        if self.default_side not in SIDES:
            raise ValueError(f"default_side must be 'query' or 'document', got {self.default_side!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key is empty; pass None for an open server")


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


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """JSON without response-model validation (vectors are large; orjson is used when installed)."""
    if orjson is not None:
        body = orjson.dumps(content)
    else:
        body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class ServerState:
    """Everything the routes share: the embedder, its settings, names, metrics and the token counter."""

    def __init__(self, embedder: ServingEncoder, settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.embedder = embedder
        self.settings = settings
        self.metrics = metrics
        self.counter = TokenCounter(embedder.module)
        self.served_name = settings.served_model_name or embedder.model_id
        self.names = {self.served_name, embedder.model_id}
        self.created = int(time.time())
        self.document_prompt = embedder.model.prompts.get("document") or ""
        self.embeddings_in_flight = 0
        """Embedding requests being handled now (counted by :class:`Gate`, on the event loop)."""
        self._pool: ThreadPoolExecutor | None = None

    # -- what a request asks for -----------------------------------------------------------------------

    def side(self, model: str | None, *explicit: tuple[str, str | None]) -> Side:
        """The side a request asks for: explicit fields, then the model-name suffix, then the default."""
        chosen: dict[str, str] = {}
        if model is not None:
            name, sep, suffix = model.rpartition(":")
            if sep and suffix in SIDES:
                chosen["model"] = suffix
            else:
                name = model
            if name not in self.names:
                raise APIError(
                    404,
                    f"the model {model!r} is not served here; this server serves {self.served_name!r} "
                    f"(add ':query' or ':document' to pick a side)",
                    param="model",
                    code="model_not_found",
                )
        for param, value in explicit:
            if value is None:
                continue
            if value not in SIDES:
                raise APIError(400, f"{param} must be 'query' or 'document', got {value!r}", param=param)
            chosen[param] = value
        if len(set(chosen.values())) > 1:
            described = ", ".join(f"{param} says {value}" for param, value in chosen.items())
            param = next(name for name in chosen if name != "model")  # two or more: one is a field
            raise APIError(400, f"conflicting sides: {described}", param=param)
        return next(iter(chosen.values()), self.settings.default_side)  # type: ignore[return-value]

    def options(self, side: Side, steps: int | None, instruction: str | None) -> EncodeOptions:
        limit = self.settings.max_thinking_steps
        if steps is not None and steps > limit:
            raise APIError(
                400, f"num_thinking_steps is {steps}; this server allows at most {limit}", param="num_thinking_steps"
            )
        if instruction is not None and side != "query":
            raise APIError(400, "instruction applies to queries only (input_type 'query')", param="instruction")
        return EncodeOptions(
            num_thinking_steps=steps,
            instruction=instruction,
            batch_size=self.settings.max_batch_size,
            max_wait_ms=self.collection_window_ms(),
        )

    def collection_window_ms(self) -> float:
        """``max_wait_ms``, or, with other requests in flight, a fraction of the last pass's time if longer."""
        settings = self.settings
        if self.embeddings_in_flight < 2:  # nobody else to wait for
            return settings.max_wait_ms
        adaptive = settings.wait_fraction * self.embedder.batcher.last_pass_seconds * 1000
        return max(settings.max_wait_ms, min(adaptive, MAX_ADAPTIVE_WAIT_MS))

    def check_dimensions(self, dimensions: int | None) -> None:
        dimension = self.embedder.dimension
        if dimensions is not None and dimensions != dimension:
            raise APIError(
                400,
                f"dimensions={dimensions}, but this model's vectors have {dimension} (LaSER vectors cannot be "
                "shortened); omit dimensions or send it equal",
                param="dimensions",
            )

    # -- embedding -------------------------------------------------------------------------------------

    async def embed(
        self, texts: list[str], side: Side, options: EncodeOptions, truncate: bool | None, param: str
    ) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` on ``side`` and their token count; ``APIError`` for what the client got wrong."""
        limit = self.settings.max_inputs
        if len(texts) > limit:
            raise APIError(
                413,
                f"{param} has {len(texts)} texts; this server takes at most {limit} per request: send them in "
                "smaller requests",
                param=param,
                code="too_many_inputs",
            )
        try:
            prompt = self.embedder.provenance(options).query_prompt if side == "query" else self.document_prompt
        except (ValueError, TypeError) as error:
            raise APIError(400, str(error), param="num_thinking_steps") from None
        if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:  # a thread hop would cost more than tokenizing
            counts = self.counter.count(texts, prompt)
        else:
            loop = asyncio.get_running_loop()
            counts = await loop.run_in_executor(self._tokenizer_pool(), self.counter.count, texts, prompt)
        max_length = self.embedder.module.max_seq_length
        truncate = self.settings.auto_truncate if truncate is None else truncate
        if not truncate:
            for index, count in enumerate(counts):
                if count > max_length:
                    raise APIError(
                        413,
                        f"{param}[{index}] is {count} tokens once formatted; this model reads at most {max_length}: "
                        "shorten it, or send truncate: true to cut it (or start the server with --auto-truncate)",
                        param=f"{param}[{index}]",
                        code="input_too_long",
                    )
        embed = self.embedder.aembed_queries if side == "query" else self.embedder.aembed_documents
        try:
            vectors = await embed(texts, options)
        except (ValueError, TypeError) as error:
            raise APIError(400, str(error), param=param) from None
        tokens = sum(min(count, max_length) for count in counts)
        self.metrics.inputs.labels(side).inc(len(texts))
        self.metrics.tokens.labels(side).inc(tokens)
        return vectors, tokens

    def _tokenizer_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laser-serve-tokenizer")
        return self._pool

    # -- metadata --------------------------------------------------------------------------------------

    def metadata(self) -> LaserMetadata:
        provenance = self.embedder.provenance(EncodeOptions())
        settings = self.settings
        return LaserMetadata(
            served_model_name=self.served_name,
            model=provenance.model,
            num_thinking_steps=provenance.num_thinking_steps,
            query_prompt=provenance.query_prompt,
            document_prompt=self.document_prompt,
            dimension=provenance.dimension,
            text_format=provenance.text_format,
            max_seq_length=provenance.max_seq_length,
            default_side=settings.default_side,
            max_inputs=settings.max_inputs,
            max_thinking_steps=settings.max_thinking_steps,
            max_batch_size=settings.max_batch_size,
            auto_truncate=settings.auto_truncate,
            version=__version__,
        )

    def close(self) -> None:
        """Finish queued work and stop the worker threads (a later request starts them again)."""
        self.embedder.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)


def default_served_name(spec: str | os.PathLike[str]) -> str:
    """The name clients send for a model spec: the spec itself, or a folder's or file's name for a path.

    >>> default_served_name("laser-qwen3")
    'laser-qwen3'
    >>> default_served_name("/")
    '/'
    """
    spec = os.fspath(spec)
    path = Path(spec)
    if os.path.exists(spec) and path.name:
        return path.stem if path.suffix == ".gguf" else path.name
    return spec


def create_app(
    model: str | os.PathLike[str] | SentenceTransformer,
    settings: ServeSettings | None = None,
    **load_options: Any,
) -> FastAPI:
    """Build the ASGI app serving ``model`` (a spec, loaded now with ``load_options``, or a LaSER model).

    Args:
        model: Anything :func:`~laser_integrations.load_model` takes, or a ``SentenceTransformer`` it built.
        settings: Names, limits, batching and the API key (default: :class:`ServeSettings` defaults).
        **load_options: :func:`~laser_integrations.load_model` options for a spec (``device``, ``dtype`` ...).

    Returns:
        A FastAPI app; run it with uvicorn (``laser serve`` does), or behind Ray Serve
        (:mod:`laser_integrations.serving.ray_serve`). Its lifespan shutdown drains the micro-batcher.

    Example:
        >>> app = create_app("smollm2", ServeSettings(api_key="secret"))                 # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    options = {key: value for key, value in load_options.items() if value is not None}
    embedder = ServingEncoder(resolve_model(model, **options), metrics)
    state = ServerState(embedder, settings, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # uvicorn gets here once in-flight requests have their answers
            await asyncio.get_running_loop().run_in_executor(None, state.close)

    app = FastAPI(
        title="laser serve",
        version=__version__,
        description="LaSER latent-thinking embeddings behind OpenAI- and TEI-compatible APIs.",
        lifespan=lifespan,
        redoc_url=None,
    )
    app.state.laser = state
    _add_error_handlers(app)
    _add_routes(app, state)
    app.add_middleware(Gate, state=state)
    return app


def _add_routes(app: FastAPI, state: ServerState) -> None:
    @app.post("/v1/embeddings", response_model=EmbeddingsResponse, responses=ERROR_RESPONSES)
    async def create_embeddings(body: EmbeddingsRequest) -> Response:
        """OpenAI-compatible embeddings (``encoding_format`` base64 is little-endian float32, as OpenAI's)."""
        side = state.side(body.model, ("input_type", body.input_type))
        state.check_dimensions(body.dimensions)
        options = state.options(side, body.num_thinking_steps, body.instruction)
        vectors, tokens = await state.embed(body.input, side, options, body.truncate, "input")
        if body.encoding_format == "base64":
            rows = np.asarray(vectors, dtype="<f4")
            encoded: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
        else:
            encoded = vectors
        data = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(encoded)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        model = body.model or state.served_name
        return json_response({"object": "list", "data": data, "model": model, "usage": usage})

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> Response:
        """The served name, and the same with ``:query`` and ``:document`` (for clients that pick from a list)."""
        return json_response({"object": "list", "data": [_card(state, name) for name in _listed_names(state)]})

    @app.get("/v1/models/{name:path}", response_model=ModelCard, responses=ERROR_RESPONSES)
    async def retrieve_model(name: str) -> Response:
        state.side(name)  # 404 for an unknown name
        return json_response(_card(state, name))

    async def embed_tei(body: EmbedRequest) -> Response:
        side = state.side(None, ("input_type", body.input_type), ("prompt_name", body.prompt_name))
        state.check_dimensions(body.dimensions)
        if body.truncation_direction.lower() != "right":
            raise APIError(400, "only truncation_direction 'right' is supported", param="truncation_direction")
        options = state.options(side, body.num_thinking_steps, body.instruction)
        vectors, _ = await state.embed(body.inputs, side, options, body.truncate, "inputs")
        return json_response(vectors)

    description = "TEI-compatible embeddings: a list of float vectors (``prompt_name`` 'query' picks the query side)."
    for path in ("/embed", "/"):
        app.add_api_route(
            path,
            embed_tei,
            methods=["POST"],
            response_model=list[list[float]],
            responses=ERROR_RESPONSES,
            description=description,
            include_in_schema=path == "/embed",
        )

    @app.get("/info")
    async def info() -> Response:
        """TEI's model info, plus a ``laser`` block: model, K, query prompt, dimension, text format."""
        metadata = state.metadata()
        settings = state.settings
        return json_response(
            {
                "model_id": state.served_name,
                "model_sha": None,
                "model_dtype": str(next(state.embedder.module.model.parameters()).dtype).removeprefix("torch."),
                "model_type": {"embedding": {"pooling": "laser-latent-thinking"}},
                "prompts": {"query": metadata.query_prompt, "document": metadata.document_prompt},
                "default_prompt_name": settings.default_side,
                "max_concurrent_requests": None,
                "max_input_length": metadata.max_seq_length,
                "max_batch_tokens": None,
                "max_batch_requests": settings.max_batch_size,
                "max_client_batch_size": settings.max_inputs,
                "auto_truncate": settings.auto_truncate,
                "tokenization_workers": 1,
                "version": __version__,
                "sha": None,
                "docker_label": None,
                "laser": metadata.model_dump(),
            }
        )

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)


def _listed_names(state: ServerState) -> list[str]:
    return [state.served_name] + [f"{state.served_name}:{side}" for side in SIDES]


def _card(state: ServerState, name: str) -> dict[str, Any]:
    return ModelCard(id=name, created=state.created, laser=state.metadata()).model_dump()


def _add_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, APIError)
        return error.response()

    async def validation_error(_: Request, error: Exception) -> Response:
        assert isinstance(error, RequestValidationError)
        message, param = _describe_validation(error.errors())
        return APIError(400, message, param=param).response()

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        message = str(error.detail)
        if error.status_code == 404:
            routes = "POST /v1/embeddings, POST /embed, GET /v1/models, GET /info, GET /health"
            message = f"{request.method} {request.url.path}: no such route (this server has {routes})"
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code)
        headers = dict(error.headers) if error.headers else None
        return APIError(error.status_code, message, code=code, headers=headers).response()

    async def server_error(_: Request, error: Exception) -> Response:
        return APIError(500, f"internal error: {type(error).__name__}", type="server_error").response()

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, server_error)


def _describe_validation(errors: Any) -> tuple[str, str | None]:
    """One message and the ``param`` from FastAPI's validation errors (the first one; the count if more)."""
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


class Gate:
    """Pure ASGI middleware: API key, body size limit, and per-route request metrics.

    It answers 401 and 413 itself, before the body is parsed, and bounds the body it reads.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], state: ServerState) -> None:
        self.app = app
        self.state = state
        key = state.settings.api_key
        self._key = key.encode() if key is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        metrics = self.state.metrics
        route = _route_label(scope.get("path", ""))
        status = 500
        started = time.perf_counter()

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        embedding = route in EMBEDDING_ROUTES
        metrics.in_flight.inc()
        self.state.embeddings_in_flight += embedding
        try:
            if route not in OPEN_ROUTES:
                problem = self._auth_problem(scope)
                if problem is not None:
                    headers = {"WWW-Authenticate": "Bearer"}
                    await _send(scope, send_and_note, APIError(401, problem, code="invalid_api_key", headers=headers))
                    return
            bounded = await self._bounded_body(scope, receive)
            if isinstance(bounded, APIError):
                await _send(scope, send_and_note, bounded)
                return
            await self.app(scope, bounded, send_and_note)
        finally:
            self.state.embeddings_in_flight -= embedding
            metrics.in_flight.dec()
            metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - started)

    def _auth_problem(self, scope: Scope) -> str | None:
        if self._key is None:
            return None
        header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), None)
        if header is None:
            return "missing API key: send the header 'Authorization: Bearer <key>'"
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self._key):
            return "invalid API key"
        return None

    async def _bounded_body(self, scope: Scope, receive: Receive) -> Receive | APIError:
        """Read the body up to the limit and replay it, or the 413 to answer."""
        limit = self.state.settings.max_request_bytes
        too_large = APIError(
            413, f"the request body is over {limit} bytes; send fewer texts per request", code="request_too_large"
        )
        declared = next((value for name, value in scope.get("headers", ()) if name == b"content-length"), None)
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return too_large
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            return receive
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left: let the app see it
                return _replay([message], receive)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return _replay([{"type": "http.request", "body": b"".join(chunks), "more_body": False}], receive)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        return pending.pop(0) if pending else await receive()

    return replayed


async def _send(scope: Scope, send: Send, error: APIError) -> None:
    await error.response()(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


def _route_label(path: str) -> str:
    """The route a path belongs to (unknown paths share one label, so metrics stay bounded)."""
    if path in ROUTES:
        return path
    if path.startswith("/v1/models/"):
        return "/v1/models/{name}"
    return "other"
