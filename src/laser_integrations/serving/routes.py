"""The routes of ``laser serve``: OpenAI's and TEI's embedding APIs, model info, health and metrics.

Each route reads the app's :class:`~laser_integrations.serving.state.ServerState` (``app.state.laser``)
through :func:`server_state`. An embedding request whose client leaves before its answer stops there: the
chunks of its texts not yet begun are cancelled (:func:`until_disconnected`) and it is counted as status 499.
"""

from __future__ import annotations

import asyncio
import base64
import email.message
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from laser_integrations import __version__
from laser_integrations.serving.errors import ERROR_RESPONSES, APIError, json_response
from laser_integrations.serving.metrics import CONTENT_TYPE
from laser_integrations.serving.schemas import (
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    ModelCard,
    ModelList,
)
from laser_integrations.serving.state import ServerState

T = TypeVar("T")


def server_state(request: Request) -> ServerState:
    """The state of the app serving ``request``."""
    return request.app.state.laser


def require_json_content_type(request: Request) -> None:
    """Refuse a body not labelled as JSON (415), instead of FastAPI's "Input should be a valid dictionary"."""
    declared = request.headers.get("content-type", "")
    message = email.message.Message()
    message["content-type"] = declared
    subtype = message.get_content_subtype()
    if (
        not declared
        or message.get_content_maintype() != "application"
        or not (subtype == "json" or subtype.endswith("+json"))
    ):
        got = f"got Content-Type: {declared!r}" if declared else "it had none"
        raise APIError(
            415,
            f"the request body must be JSON with the header Content-Type: application/json ({got})",
            code="unsupported_media_type",
        )


async def until_disconnected(request: Request, work: Coroutine[Any, Any, T]) -> T:
    """``await work``, unless the client leaves first: then ``work`` is cancelled and a 499 raised."""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        raise APIError(499, "the client closed the connection before its answer", code="client_closed_request")
    finally:
        task.cancel()
        gone.cancel()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


State = Annotated[ServerState, Depends(server_state)]
router = APIRouter()
embedding_router = APIRouter(dependencies=[Depends(require_json_content_type)], responses=ERROR_RESPONSES)


@embedding_router.post("/v1/embeddings", response_model=EmbeddingsResponse)
async def create_embeddings(body: EmbeddingsRequest, request: Request, state: State) -> Response:
    """OpenAI-compatible embeddings (``encoding_format`` base64 is little-endian float32, as OpenAI's)."""
    side = state.policy.side(body.model, ("input_type", body.input_type))
    state.policy.check_dimensions(body.dimensions)
    options = state.options(side, body.num_thinking_steps, body.instruction)
    vectors, tokens = await until_disconnected(request, state.embed(body.input, side, options, body.truncate, "input"))
    if body.encoding_format == "base64":
        rows = np.asarray(vectors, dtype="<f4")
        encoded: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    else:
        encoded = vectors
    data = [{"object": "embedding", "index": index, "embedding": vector} for index, vector in enumerate(encoded)]
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    model = body.model or state.served_name
    return json_response({"object": "list", "data": data, "model": model, "usage": usage})


async def embed_tei(body: EmbedRequest, request: Request, state: State) -> Response:
    """TEI-compatible embeddings: a list of float vectors (``prompt_name`` 'query' picks the query side)."""
    side = state.policy.side(None, ("input_type", body.input_type), ("prompt_name", body.prompt_name))
    state.policy.check_dimensions(body.dimensions)
    if body.truncation_direction.lower() != "right":
        raise APIError(400, "only truncation_direction 'right' is supported", param="truncation_direction")
    options = state.options(side, body.num_thinking_steps, body.instruction)
    vectors, _ = await until_disconnected(request, state.embed(body.inputs, side, options, body.truncate, "inputs"))
    return json_response(vectors)


for _path in ("/embed", "/"):  # TEI clients given a bare URL post to /
    embedding_router.add_api_route(
        _path, embed_tei, methods=["POST"], response_model=list[list[float]], include_in_schema=_path == "/embed"
    )


@router.get("/v1/models", response_model=ModelList)
async def list_models(state: State) -> Response:
    """The served name, and the same with ``:query`` and ``:document`` (for clients that pick from a list)."""
    return json_response({"object": "list", "data": [_card(state, name) for name in state.policy.listed_names()]})


@router.get("/v1/models/{name:path}", response_model=ModelCard, responses=ERROR_RESPONSES)
async def retrieve_model(name: str, state: State) -> Response:
    state.policy.side(name)  # 404 for an unknown name
    return json_response(_card(state, name))


@router.get("/info")
async def info(state: State) -> Response:
    """TEI's model info, plus a ``laser`` block: model, K, query prompt, dimension, text format."""
    metadata = state.metadata()
    settings = state.settings
    return json_response(
        {
            "model_id": state.served_name,
            "model_sha": None,
            "model_dtype": metadata.dtype,
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


@router.get("/health")
async def health() -> Response:
    return json_response({"status": "ok"})


@router.get("/metrics", include_in_schema=False)
async def metrics(state: State) -> Response:
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)


def _card(state: ServerState, name: str) -> dict[str, Any]:
    return ModelCard(id=name, created=state.created, laser=state.metadata()).model_dump()
