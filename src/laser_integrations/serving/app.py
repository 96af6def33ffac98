"""The ``laser serve`` ASGI app: one LaSER model behind OpenAI's and TEI's embedding APIs.

Routes (:mod:`.routes`):

- ``POST /v1/embeddings``: OpenAI's create-embeddings (``input``, ``model``, ``encoding_format`` float|base64,
  ``dimensions``, ``usage``), plus the extension fields ``input_type``, ``num_thinking_steps``, ``instruction``
  and ``truncate``. ``GET /v1/models`` and ``GET /v1/models/{name}`` list the served names.
- ``POST /embed`` (and ``POST /``, where TEI clients given a bare URL post): TEI's ``inputs``, ``normalize``,
  ``truncate``, ``prompt_name``; ``GET /info``: TEI's model info plus a ``laser`` block with the provenance.
- ``GET /health``: ``{"status": "ok"}``, never behind the API key. ``GET /metrics``: Prometheus text.

Sides (:mod:`.policy`): ``input_type`` (or TEI's ``prompt_name``), else a ``:query``/``:document`` suffix on
the model name, else :attr:`ServeSettings.default_side` (``document``: the text as given, no instruction, what
any other embedding server does for a client that cannot say more). Every request goes through one
:class:`~laser_integrations.serving.engine.ServingEncoder`, whose micro-batcher lets concurrent requests
share forward passes (never across sides, K or instructions) in a worker thread, off the event loop.

Errors (:mod:`.errors`) are OpenAI's body on every route (``{"error": {"message", "type", "param", "code"}}``):
400 for bad input (FastAPI's 422s and text that is not valid Unicode included), 401 for a missing or wrong
key, 404 for an unknown model or route, 408 for a body slower than ``body_timeout``, 413 for too many inputs,
an input over ``max_seq_length`` tokens (unless ``truncate``) or a body over the byte limit, 415 for a body
that is not labelled JSON, 503 for a request cut off by shutdown (:mod:`.middleware`).

>>> from laser_integrations import load_model
>>> app = create_app(load_model("smollm2"), ServeSettings(served_model_name="smollm2"))   # doctest: +SKIP
>>> import uvicorn; uvicorn.run(app, host="127.0.0.1", port=8080)                          # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from laser_integrations import __version__
from laser_integrations.embedder import resolve_model
from laser_integrations.serving.engine import ServingEncoder
from laser_integrations.serving.errors import APIError, add_error_handlers
from laser_integrations.serving.metrics import ServerMetrics
from laser_integrations.serving.middleware import add_middleware
from laser_integrations.serving.routes import embedding_router, router
from laser_integrations.serving.settings import MAX_ADAPTIVE_WAIT_MS, ServeSettings
from laser_integrations.serving.state import ServerState

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["MAX_ADAPTIVE_WAIT_MS", "APIError", "ServeSettings", "ServerState", "create_app", "default_served_name"]


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
        A FastAPI app; run it with uvicorn (``laser serve`` does, with
        :func:`~laser_integrations.serving.connections.uvicorn_config`'s connection limits), or behind Ray Serve
        (:mod:`laser_integrations.serving.ray_serve`). Its lifespan shutdown drains the micro-batcher.

    Example:
        >>> app = create_app("smollm2", ServeSettings(api_key="secret"))                 # doctest: +SKIP
    """
    settings = settings or ServeSettings()
    metrics = ServerMetrics()
    state = ServerState(ServingEncoder(resolve_model(model, **load_options), metrics), settings, metrics)

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
    add_error_handlers(app)
    app.include_router(embedding_router)
    app.include_router(router)
    add_middleware(app, state)
    return app
