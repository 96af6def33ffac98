"""Qdrant collections that remember which embeddings filled them, for plain qdrant-client, LangChain and LlamaIndex.

A vector store cannot tell vectors of one model from another's: a collection filled with K=3
vectors and queried (or extended) with K=6, another instruction or another checkpoint returns
plausible but wrong neighbours. :func:`ensure_collection` creates a collection with the embedding
provenance (model, K, query instruction, dimension, text format) stored in the collection's
metadata, and refuses, before any point is written, to open one that records different settings.

Embedded local mode is the default (:func:`connect`: ``path=`` on disk, else in memory); pass
``url=`` for a Qdrant server or cluster. Local mode locks its folder to one client in one process.

Example:
    ```python
    from laser_integrations.langchain import LaSEREmbeddings
    from laser_integrations.qdrant import content_id, langchain_vector_store

    embeddings = LaSEREmbeddings("smollm2")
    store = langchain_vector_store(embeddings, "docs", path="./qdrant-data")
    texts = ["Rayleigh scattering makes the sky blue."]
    store.add_texts(texts, ids=[content_id(text) for text in texts])  # re-running overwrites, never duplicates
    ```
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

try:
    from qdrant_client import AsyncQdrantClient, QdrantClient, models
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.qdrant needs qdrant-client: pip install 'laser-integrations[qdrant]'"
    ) from error

from laser_integrations.embedder import EncodeOptions
from laser_integrations.encoder import is_encoder
from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError, check_provenance

if TYPE_CHECKING:
    import langchain_qdrant
    import llama_index.vector_stores.qdrant

__all__ = [
    "PROVENANCE_KEY",
    "ProvenanceMismatchError",
    "aensure_collection",
    "connect",
    "content_id",
    "ensure_collection",
    "langchain_vector_store",
    "llama_index_vector_store",
    "node_id_from_content",
    "stored_provenance",
]

PROVENANCE_KEY = "laser_embedding"
"""The key of the provenance record in a collection's metadata."""

_ID_NAMESPACE = uuid.UUID("6f1c7c52-3a8e-5e0b-9d1e-1a5e2c0f4b7d")


def connect(
    path: str | os.PathLike[str] | None = None, *, url: str | None = None, location: str | None = None, **kwargs: Any
) -> QdrantClient:
    """A ``QdrantClient``: embedded on disk at ``path``, a server at ``url``, else embedded in memory.

    Embedded (local) mode needs no server; it keeps one lock on its folder, so only one client in one
    process can open a ``path`` at a time (close it before reopening). Use ``url=`` for a Qdrant server
    or cluster when several processes must share a collection or one machine is not enough.

    Example:
        >>> client = connect()                      # in memory
        >>> client = connect("./qdrant-data")        # doctest: +SKIP
        >>> client = connect(url="http://localhost:6333")  # doctest: +SKIP
    """
    given = [name for name, value in (("path", path), ("url", url), ("location", location)) if value is not None]
    if len(given) > 1:
        raise ValueError(f"pass one of path=, url= or location=, not {' and '.join(given)}")
    if url is not None:
        return QdrantClient(url=url, **kwargs)
    if path is not None:
        return QdrantClient(path=os.fspath(path), **kwargs)
    return QdrantClient(location=location or ":memory:", **kwargs)


def stored_provenance(client: QdrantClient, collection_name: str) -> EmbeddingProvenance | None:
    """The provenance recorded on ``collection_name`` (``None`` if it records none)."""
    return _provenance_in(client.get_collection(collection_name))


def ensure_collection(
    client: QdrantClient,
    collection_name: str,
    embeddings: Any,
    *,
    distance: models.Distance = models.Distance.COSINE,
    vector_name: str = "",
    adopt: bool = False,
) -> EmbeddingProvenance:
    """Create ``collection_name`` for ``embeddings``, or open it after checking it was filled the same way.

    Args:
        client: A ``QdrantClient`` (local or server); see :func:`connect`.
        collection_name: The collection.
        embeddings: A ``LaSEREmbeddings`` (LangChain), ``LaSEREmbedding`` (LlamaIndex), an
            :class:`~laser_integrations.encoder.Encoder` (with its default options) or an
            :class:`~laser_integrations.provenance.EmbeddingProvenance`.
        distance: Vector distance (cosine, what both frameworks' Qdrant stores use by default).
        vector_name: ``""`` for the unnamed dense vector both frameworks use by default, else a named vector.
        adopt: Record the provenance on an existing non-empty collection that records none, trusting that
            its points were made the same way (without it, such a collection is refused).

    Returns:
        The provenance the collection records.

    Raises:
        ProvenanceMismatchError: The collection records other settings, has another vector size or
            distance, or holds points of unknown provenance (and ``adopt`` is off).

    Example:
        >>> from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError, check_provenance
        >>> wanted = EmbeddingProvenance("smollm2", 3, "", 4, "plain")
        >>> client = connect()
        >>> ensure_collection(client, "docs", wanted).num_thinking_steps
        3
        >>> ensure_collection(client, "docs", EmbeddingProvenance("smollm2", 6, "", 4, "plain"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        laser_integrations.provenance.ProvenanceMismatchError: collection 'docs' holds vectors made with num_thinking_steps=3; these embeddings use num_thinking_steps=6. ...
    """  # noqa: E501
    wanted = provenance_of(embeddings)
    if not client.collection_exists(collection_name):
        try:
            client.create_collection(collection_name, **_creation_options(wanted, distance, vector_name))
        except Exception:
            if not client.collection_exists(collection_name):  # not a concurrent creator: a real failure
                raise
        else:
            return _confirm_stored(client.get_collection(collection_name), collection_name, wanted)
    info = client.get_collection(collection_name)
    points = client.count(collection_name, exact=True).count
    if _check_existing(info, collection_name, wanted, points, distance, vector_name, adopt):
        client.update_collection(collection_name, metadata={PROVENANCE_KEY: wanted.to_dict()})
    return wanted


async def aensure_collection(
    client: AsyncQdrantClient,
    collection_name: str,
    embeddings: Any,
    *,
    distance: models.Distance = models.Distance.COSINE,
    vector_name: str = "",
    adopt: bool = False,
) -> EmbeddingProvenance:
    """:func:`ensure_collection` for an ``AsyncQdrantClient``."""
    wanted = provenance_of(embeddings)
    if not await client.collection_exists(collection_name):
        try:
            await client.create_collection(collection_name, **_creation_options(wanted, distance, vector_name))
        except Exception:
            if not await client.collection_exists(collection_name):
                raise
        else:
            return _confirm_stored(await client.get_collection(collection_name), collection_name, wanted)
    info = await client.get_collection(collection_name)
    points = (await client.count(collection_name, exact=True)).count
    if _check_existing(info, collection_name, wanted, points, distance, vector_name, adopt):
        await client.update_collection(collection_name, metadata={PROVENANCE_KEY: wanted.to_dict()})
    return wanted


def provenance_of(embeddings: Any) -> EmbeddingProvenance:
    """The provenance of an adapter (anything with a ``provenance`` property), of an
    :class:`~laser_integrations.encoder.Encoder` with its default options, or a provenance itself.

    For an encoder with other options, pass ``encoder.provenance(options)``.
    """
    if isinstance(embeddings, EmbeddingProvenance):
        return embeddings
    if is_encoder(embeddings):
        return embeddings.provenance(EncodeOptions())
    provenance = getattr(embeddings, "provenance", None)
    if isinstance(provenance, EmbeddingProvenance):
        return provenance
    raise TypeError(
        f"expected LaSEREmbeddings, LaSEREmbedding, an Encoder or an EmbeddingProvenance, got "
        f"{type(embeddings).__name__}: only LaSER embeddings know their provenance"
    )


# -- framework stores ------------------------------------------------------------------------------------


def langchain_vector_store(
    embeddings: Any,
    collection_name: str,
    *,
    client: QdrantClient | None = None,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    location: str | None = None,
    distance: models.Distance = models.Distance.COSINE,
    vector_name: str = "",
    adopt: bool = False,
    **store_kwargs: Any,
) -> langchain_qdrant.QdrantVectorStore:
    """A ``langchain_qdrant.QdrantVectorStore`` (dense) over a collection checked by :func:`ensure_collection`.

    Args:
        embeddings: A :class:`~laser_integrations.langchain.LaSEREmbeddings`.
        collection_name: Created if missing, with the provenance recorded.
        client: A ``QdrantClient`` to use; else one from :func:`connect` with ``path``/``url``/``location``.
        distance, vector_name, adopt: As in :func:`ensure_collection`.
        **store_kwargs: Passed to ``QdrantVectorStore`` (``content_payload_key`` ...).

    Example:
        ```python
        store = langchain_vector_store(LaSEREmbeddings("smollm2"), "docs", path="./qdrant-data")
        store.add_texts(texts, ids=[content_id(text) for text in texts])
        store.as_retriever().invoke("why is the sky blue")
        ```
    """
    try:
        from langchain_qdrant import QdrantVectorStore
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("the LangChain Qdrant store needs: pip install 'laser-integrations[langchain]'") from error
    client = _client_or_connect(client, path, url, location)
    ensure_collection(client, collection_name, embeddings, distance=distance, vector_name=vector_name, adopt=adopt)
    # Checked above from the provenance; LangChain's own check would embed a probe text to learn the size.
    store_kwargs.setdefault("validate_collection_config", False)
    return QdrantVectorStore(
        client=client,
        collection_name=collection_name,
        embedding=embeddings,
        distance=distance,
        vector_name=vector_name,
        **store_kwargs,
    )


def llama_index_vector_store(
    embed_model: Any,
    collection_name: str,
    *,
    client: QdrantClient | None = None,
    aclient: AsyncQdrantClient | None = None,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    location: str | None = None,
    adopt: bool = False,
    **store_kwargs: Any,
) -> llama_index.vector_stores.qdrant.QdrantVectorStore:
    """A ``llama_index.vector_stores.qdrant.QdrantVectorStore`` over a collection checked by :func:`ensure_collection`.

    The collection gets what LlamaIndex creates itself for dense retrieval: one unnamed cosine vector and
    a keyword index on ``doc_id``. For async use against a server pass ``client`` and ``aclient``; in local
    mode one folder takes one client, so open an ``AsyncQdrantClient`` alone, ``await``
    :func:`aensure_collection` and build ``QdrantVectorStore(collection_name, aclient=...)``.

    Args:
        embed_model: A :class:`~laser_integrations.llama_index.LaSEREmbedding`.
        collection_name: Created if missing, with the provenance recorded.
        client: A ``QdrantClient`` to use; else one from :func:`connect` with ``path``/``url``/``location``.
        aclient: An ``AsyncQdrantClient`` for the store's async methods (server mode).
        adopt: As in :func:`ensure_collection`.
        **store_kwargs: Passed to ``QdrantVectorStore`` (``batch_size``, ``index_doc_id`` ...).

    Example:
        ```python
        store = llama_index_vector_store(LaSEREmbedding("smollm2"), "docs", path="./qdrant-data")
        index = VectorStoreIndex.from_documents(documents, storage_context=StorageContext.from_defaults(vector_store=store))
        ```
    """  # noqa: E501
    try:
        from llama_index.vector_stores.qdrant import QdrantVectorStore
    except ImportError as error:  # pragma: no cover - exercised only without the extra
        raise ImportError("the LlamaIndex Qdrant store needs: pip install 'laser-integrations[llamaindex]'") from error
    if store_kwargs.get("enable_hybrid") or store_kwargs.get("fastembed_sparse_model"):
        raise ValueError("llama_index_vector_store makes dense collections; build hybrid ones with QdrantVectorStore")
    client = _client_or_connect(client, path, url, location)
    created = not client.collection_exists(collection_name)
    ensure_collection(client, collection_name, embed_model, adopt=adopt)
    if created and store_kwargs.get("index_doc_id", True):
        with warnings.catch_warnings():  # local mode ignores payload indexes and says so; LlamaIndex makes one too
            warnings.simplefilter("ignore", UserWarning)
            client.create_payload_index(collection_name, "doc_id", field_schema=models.PayloadSchemaType.KEYWORD)
    return QdrantVectorStore(collection_name=collection_name, client=client, aclient=aclient, **store_kwargs)


# -- deterministic ids -----------------------------------------------------------------------------------


def content_id(text: str, metadata: Mapping[str, Any] | None = None) -> str:
    """A point id derived from the content, so indexing the same text (and metadata) again overwrites its point.

    Pass it as LangChain's ``ids=`` (``add_texts``, ``add_documents``, ``from_texts``); Qdrant accepts UUIDs.

    Example:
        >>> content_id("why is the sky blue") == content_id("why is the sky blue")
        True
        >>> content_id("a", {"source": "x"}) == content_id("a", {"source": "y"})
        False
    """
    key = text if not metadata else text + "\x00" + json.dumps(metadata, sort_keys=True, default=str)
    return str(uuid.uuid5(_ID_NAMESPACE, key))


def node_id_from_content(index: int, document: Any) -> str:
    """A LlamaIndex ``id_func``: chunk ``index`` of ``document`` gets an id from the document's content hash.

    ``SentenceSplitter(id_func=node_id_from_content)`` makes re-indexing the same documents overwrite their
    points instead of adding copies (LlamaIndex's default ids are random).
    """
    return str(uuid.uuid5(_ID_NAMESPACE, f"{document.hash}:{index}"))


# -- checks (no I/O) -------------------------------------------------------------------------------------


def _client_or_connect(
    client: QdrantClient | None, path: str | os.PathLike[str] | None, url: str | None, location: str | None
) -> QdrantClient:
    if client is None:
        return connect(path, url=url, location=location)
    if path is not None or url is not None or location is not None:
        raise ValueError("pass either client= or path=/url=/location=, not both")
    return client


def _creation_options(wanted: EmbeddingProvenance, distance: models.Distance, vector_name: str) -> dict[str, Any]:
    params = models.VectorParams(size=wanted.dimension, distance=distance)
    return {
        "vectors_config": params if vector_name == "" else {vector_name: params},
        "metadata": {PROVENANCE_KEY: wanted.to_dict()},
    }


def _provenance_in(info: models.CollectionInfo) -> EmbeddingProvenance | None:
    record = (getattr(info.config, "metadata", None) or {}).get(PROVENANCE_KEY)
    return None if record is None else EmbeddingProvenance.from_dict(record)


def _confirm_stored(info: models.CollectionInfo, name: str, wanted: EmbeddingProvenance) -> EmbeddingProvenance:
    if _provenance_in(info) is None:
        warnings.warn(
            f"the Qdrant server did not keep the metadata of collection {name!r} (it predates collection "
            "metadata), so a later mismatch of model/K/instruction cannot be detected; upgrade the server",
            RuntimeWarning,
            stacklevel=3,
        )
    return wanted


def _vector_params(info: models.CollectionInfo, name: str, vector_name: str) -> models.VectorParams:
    vectors = info.config.params.vectors
    if isinstance(vectors, Mapping):
        if vector_name not in vectors:
            raise ProvenanceMismatchError(
                f"collection {name!r} has no dense vector named {vector_name!r} (it has {sorted(vectors)})"
            )
        return vectors[vector_name]
    if vectors is None or vector_name != "":
        raise ProvenanceMismatchError(f"collection {name!r} has no dense vector named {vector_name!r}")
    return vectors


def _check_existing(
    info: models.CollectionInfo,
    name: str,
    wanted: EmbeddingProvenance,
    points: int,
    distance: models.Distance,
    vector_name: str,
    adopt: bool,
) -> bool:
    """Raise if ``wanted`` may not write into this collection; return whether to record ``wanted`` on it."""
    params = _vector_params(info, name, vector_name)
    if params.size != wanted.dimension:
        raise ProvenanceMismatchError(
            f"collection {name!r} holds {params.size}-dimensional vectors; these embeddings are "
            f"{wanted.dimension}-dimensional ({wanted.model}). Use another collection or the model that filled it."
        )
    if params.distance != distance:
        raise ProvenanceMismatchError(
            f"collection {name!r} uses {params.distance.value} distance, not {distance.value}; pass distance= to match"
        )
    stored = _provenance_in(info)
    if stored is None:
        if points == 0 or adopt:
            return True
        raise ProvenanceMismatchError(
            f"collection {name!r} holds {points} points but records no embedding provenance, so they may come "
            f"from another model or K. Pass adopt=True if they were made with {_describe(wanted.to_dict())}, "
            "or index into a new collection."
        )
    check_provenance(stored, wanted, f"collection {name!r}")
    return False


def _describe(record: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={record[key]!r}" for key in EmbeddingProvenance.REQUIRED)
