"""The adapters' remote mode: a ``laser serve`` endpoint, an :class:`~laser_integrations.encoder.Encoder` like
the in-process ``LocalEncoder``; and :func:`as_encoder`, which picks between the two for an adapter.

``LaSEREmbeddings(endpoint=...)`` (LangChain) and ``LaSEREmbedding(endpoint=...)`` (LlamaIndex) delegate to a
:class:`RemoteEncoder` instead of loading a model: queries go out with ``input_type: query`` (and the
adapter's instruction), documents with ``input_type: document``, both with the adapter's K, as base64
float32 (exact: the same bits the server computed). The provenance is the server's, from ``GET /info``,
so the Qdrant provenance checks work the same as with a local model.

>>> from laser_integrations.embedder import EncodeOptions
>>> encoder = RemoteEncoder("http://127.0.0.1:8080", model="smollm2")                 # doctest: +SKIP
>>> encoder.embed_query("why is the sky blue", EncodeOptions(num_thinking_steps=3))[:2]  # doctest: +SKIP
[0.0123, -0.0456]
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import ssl
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

try:
    import httpx
except ImportError as error:  # pragma: no cover - httpx comes with every adapter's framework
    raise ImportError("the remote mode needs httpx: pip install 'laser-integrations[serve]'") from error
import numpy as np

from laser_integrations.embedder import DEFAULT_MODEL, EncodeOptions, LocalEncoder, Side
from laser_integrations.encoder import Encoder, is_encoder
from laser_integrations.formatting import query_prompt
from laser_integrations.provenance import EmbeddingProvenance
from laser_integrations.validation import checked_string, checked_strings, positive_int

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["RemoteEncoder", "RemoteError", "as_encoder"]


def as_encoder(
    model: str | os.PathLike[str] | SentenceTransformer | Encoder | None = None,
    *,
    endpoint: str | None = None,
    api_key: str | None = None,
    device: str | None = None,
    load_options: Mapping[str, Any] | None = None,
) -> Encoder:
    """The :class:`~laser_integrations.encoder.Encoder` for what a user gave an adapter.

    Args:
        model: A model spec (loaded here; ``None``: :data:`~laser_integrations.embedder.DEFAULT_MODEL`), a
            ready LaSER ``SentenceTransformer``, or an ``Encoder`` (used as it is). With ``endpoint``: the
            served model name to ask for (``None``: the server's one model).
        endpoint: A ``laser serve`` URL: embed there instead of loading a model.
        api_key: The server's ``--api-key`` (with ``endpoint``).
        device: The device a spec is loaded on.
        load_options: Other :func:`~laser_integrations.load_model` options (``dtype``, ``max_seq_length`` ...).

    Raises:
        ValueError: Load options with an endpoint or with a model that is already loaded.
        TypeError: ``model`` is none of the above.

    Example:
        >>> as_encoder("tiny", endpoint="http://127.0.0.1:8080")
        RemoteEncoder('http://127.0.0.1:8080', model='tiny')
        >>> as_encoder(object(), endpoint="http://127.0.0.1:8080")
        Traceback (most recent call last):
        ...
        ValueError: with endpoint= the server holds the model: pass at most the served model's name, no model object, device or model_kwargs
    """  # noqa: E501
    load_options = {key: value for key, value in (load_options or {}).items() if value is not None}
    if device is not None:
        load_options["device"] = device
    if endpoint is not None:
        if load_options or not (model is None or isinstance(model, str)):
            raise ValueError(
                "with endpoint= the server holds the model: pass at most the served model's name, "
                "no model object, device or model_kwargs"
            )
        return RemoteEncoder(endpoint, model=model, api_key=api_key)
    if is_encoder(model):
        if load_options:
            raise ValueError(
                f"load options {sorted(load_options)} only apply when loading a model spec; "
                f"this {type(model).__name__} is already loaded"
            )
        return model
    return LocalEncoder.load(DEFAULT_MODEL if model is None else model, **load_options)


class RemoteError(RuntimeError):
    """The server failed (5xx) or answered something that is not a ``laser serve`` response."""


class RemoteEncoder:
    """A ``laser serve`` endpoint as an :class:`~laser_integrations.encoder.Encoder`, like ``LocalEncoder``.

    Args:
        endpoint: The server's URL, e.g. ``"http://127.0.0.1:8080"`` (a trailing ``/v1`` is accepted too).
        model: The served model name to ask for (``None``: the server's one model).
        api_key: Sent as ``Authorization: Bearer <api_key>`` (the server's ``--api-key``).
        timeout: Seconds per HTTP request.
        max_concurrency: Requests in flight at once for one async call of many texts (sent in chunks of
            ``options.batch_size``; the server coalesces them with everyone else's).

    Errors: bad input and a server that refuses it raise ``ValueError``/``TypeError`` (the server's message),
    a wrong key ``PermissionError``, an unreachable server ``ConnectionError``, a server error :class:`RemoteError`.

    Example:
        >>> encoder = RemoteEncoder("http://127.0.0.1:8080", api_key="secret")            # doctest: +SKIP
        >>> encoder.provenance(EncodeOptions()).num_thinking_steps                       # doctest: +SKIP
        3
    """

    def __init__(
        self,
        endpoint: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_concurrency: int = 4,
    ) -> None:
        endpoint = checked_string(endpoint, "endpoint").strip().rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"endpoint must be an http:// or https:// URL, got {endpoint!r}")
        self.endpoint = endpoint.removesuffix("/v1")
        self.model = model
        self.timeout = timeout
        self.max_concurrency = positive_int("max_concurrency", max_concurrency)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._ssl = ssl.create_default_context()  # built once: httpx would load the CA bundle per client
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._info: dict[str, Any] | None = None
        self._provenance: EmbeddingProvenance | None = None

    def __repr__(self) -> str:
        return f"RemoteEncoder({self.endpoint!r}, model={self.model!r})"

    # -- what the server serves ------------------------------------------------------------------------

    @property
    def info(self) -> dict[str, Any]:
        """The server's ``laser`` metadata from ``GET /info`` (fetched once): model, K, prompts, dimension ..."""
        if self._info is None:
            self._info = self._checked_info(self._request("GET", "/info"))
        return self._info

    @property
    def dimension(self) -> int:
        """Vector size, as the server reports it."""
        return self._server_provenance().dimension

    @property
    def model_id(self) -> str:
        """The provenance name of the server's weights (alias target, Hub id or path)."""
        return self._server_provenance().model

    def provenance(self, options: EncodeOptions) -> EmbeddingProvenance:
        """What a collection filled through this endpoint with ``options`` must record (as a local model's)."""
        served = self._server_provenance()
        changes: dict[str, Any] = {}
        if options.num_thinking_steps is not None:
            changes["num_thinking_steps"] = _checked_steps(options.num_thinking_steps)
        if options.instruction is not None:
            changes["query_prompt"] = query_prompt(options.instruction)
        return dataclasses.replace(served, **changes)

    # -- sync ------------------------------------------------------------------------------------------

    def embed_query(self, text: str, options: EncodeOptions) -> list[float]:
        """One query vector (the server's query side: instruction + K)."""
        return self.embed_queries([checked_string(text, "query")], options)[0]

    def embed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """Query vectors for ``texts``; ``[]`` for an empty list."""
        return self._embed("query", texts, options)

    def embed_document(self, text: str, options: EncodeOptions) -> list[float]:
        """One document vector (the server's document side: K, no instruction)."""
        return self.embed_documents([checked_string(text, "document")], options)[0]

    def embed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """Document vectors for ``texts``; ``[]`` for an empty list."""
        return self._embed("document", texts, options)

    # -- async -----------------------------------------------------------------------------------------

    async def aembed_query(self, text: str, options: EncodeOptions) -> list[float]:
        """:meth:`embed_query` without blocking the event loop."""
        return (await self.aembed_queries([checked_string(text, "query")], options))[0]

    async def aembed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """:meth:`embed_queries` without blocking the event loop."""
        return await self._aembed("query", texts, options)

    async def aembed_document(self, text: str, options: EncodeOptions) -> list[float]:
        """:meth:`embed_document` without blocking the event loop."""
        return (await self.aembed_documents([checked_string(text, "document")], options))[0]

    async def aembed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """:meth:`embed_documents` without blocking the event loop."""
        return await self._aembed("document", texts, options)

    def close(self) -> None:
        """Close the pooled connection of the sync calls (a later call opens a new one)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # -- internals -------------------------------------------------------------------------------------

    def _embed(self, side: Side, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        chunks = self._chunks(side, texts, options)
        vectors: list[list[float]] = []
        for body in chunks:
            vectors.extend(self._vectors(self._request("POST", "/v1/embeddings", body), len(body["input"])))
        return vectors

    async def _aembed(self, side: Side, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        chunks = self._chunks(side, texts, options)
        if not chunks:
            return []
        limit = asyncio.Semaphore(self.max_concurrency)
        async with httpx.AsyncClient(
            base_url=self.endpoint, headers=self._headers, timeout=self.timeout, verify=self._ssl
        ) as client:

            async def one(body: dict[str, Any]) -> list[list[float]]:
                async with limit:
                    try:
                        response = await client.post("/v1/embeddings", json=body)
                    except httpx.TransportError as error:
                        raise self._unreachable(error) from error
                return self._vectors(self._checked(response), len(body["input"]))

            parts = await asyncio.gather(*(one(body) for body in chunks))
        return [vector for part in parts for vector in part]

    def _chunks(self, side: Side, texts: Sequence[str], options: EncodeOptions) -> list[dict[str, Any]]:
        """Validate here (the same errors as a local model) and split into request bodies."""
        texts = checked_strings(texts, "text")
        size = positive_int("batch_size", options.batch_size)
        fields: dict[str, Any] = {"input_type": side, "encoding_format": "base64", "truncate": True}
        if self.model is not None:
            fields["model"] = self.model
        if options.num_thinking_steps is not None:
            fields["num_thinking_steps"] = _checked_steps(options.num_thinking_steps)
        if side == "query" and options.instruction is not None:
            fields["instruction"] = checked_string(options.instruction, "instruction")
        return [{"input": texts[start : start + size], **fields} for start in range(0, len(texts), size)]

    def _sync_client(self) -> httpx.Client:
        with self._client_lock:
            if self._client is None:
                client = httpx.Client(
                    base_url=self.endpoint, headers=self._headers, timeout=self.timeout, verify=self._ssl
                )
                weakref.finalize(self, client.close)
                self._client = client
            return self._client

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self._sync_client().request(method, path, json=body)
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        return self._checked(response)

    def _unreachable(self, error: Exception) -> ConnectionError:
        return ConnectionError(
            f"cannot reach laser serve at {self.endpoint} ({type(error).__name__}: {error}); "
            "is it running? (laser serve --model MODEL --port PORT)"
        )

    def _checked(self, response: httpx.Response) -> Any:
        """The JSON of a 2xx response, or the error the server's body describes."""
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success and payload is not None:
            return payload
        detail = payload.get("error") if isinstance(payload, dict) else None
        message = detail.get("message") if isinstance(detail, dict) else None
        message = message or response.text[:200] or response.reason_phrase
        where = f"laser serve at {self.endpoint} answered {response.status_code}: {message}"
        if response.status_code in (401, 403):
            raise PermissionError(f"{where} (pass api_key=...)")
        if 400 <= response.status_code < 500:
            raise ValueError(where)
        raise RemoteError(where)

    def _vectors(self, payload: Any, expected: int) -> list[list[float]]:
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, list) or len(data) != expected:
            raise RemoteError(f"{self.endpoint} sent no embeddings list of {expected} items: {str(payload):.200}")
        rows = sorted(data, key=lambda item: item["index"])
        return [_decoded(row["embedding"]) for row in rows]

    def _server_provenance(self) -> EmbeddingProvenance:
        """The provenance of the server's defaults, from its ``/info`` ``laser`` block (fetched once)."""
        if self._provenance is None:
            self._provenance = self._provenance_in(self.info)
        return self._provenance

    def _checked_info(self, payload: Any) -> dict[str, Any]:
        info = payload.get("laser") if isinstance(payload, dict) else None
        self._provenance_in(info)
        return info  # type: ignore[return-value]  # a dict, or _provenance_in raised

    def _provenance_in(self, info: Any) -> EmbeddingProvenance:
        try:
            return EmbeddingProvenance.from_dict(info)
        except (TypeError, ValueError) as error:
            raise RemoteError(
                f"{self.endpoint}/info has no LaSER metadata ({error}): is it a `laser serve` server?"
            ) from None


def _decoded(embedding: Any) -> list[float]:
    if isinstance(embedding, str):
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4").tolist()
    return [float(value) for value in embedding]


def _checked_steps(steps: Any) -> int:
    from laser_integrations.latent import check_num_thinking_steps

    return check_num_thinking_steps(steps)
