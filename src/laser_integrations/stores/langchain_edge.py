"""A LangChain ``VectorStore`` over a Qdrant Edge folder, laid out like ``langchain_qdrant.QdrantVectorStore``.

Each point's payload is ``{"page_content": text, "metadata": {...}}``, the keys ``QdrantVectorStore`` writes,
so the same documents come back from an Edge folder as from a Qdrant collection. Two differences, both so
that documents round-trip exactly (LangChain's standard vector-store tests ask for it): the id comes back
as ``Document.id`` rather than as ``metadata["_id"]``/``metadata["_collection_name"]``, and ids that are
not UUIDs (``"doc-1"``) are kept: the point gets a UUID derived from the id, the payload the id itself.

Example:
    ```python
    from laser_integrations.langchain import LaSEREmbeddings
    from laser_integrations.stores.langchain_edge import EdgeVectorStore

    store = EdgeVectorStore.open("./edge-data", LaSEREmbeddings("smollm2"))  # provenance checked
    store.add_texts(["Rayleigh scattering makes the sky blue."])
    store.as_retriever().invoke("why is the sky blue")
    ```
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("the LangChain Edge store needs: pip install 'laser-integrations[langchain,edge]'") from error

from laser_integrations.stores.edge import EdgeStore, ensure_embedding_provenance
from laser_integrations.stores.points import uuid_for

__all__ = ["CONTENT_KEY", "ID_KEY", "METADATA_KEY", "EdgeVectorStore"]

CONTENT_KEY = "page_content"
METADATA_KEY = "metadata"
ID_KEY = "langchain_id"
"""The payload key of an id that is not a UUID (the point's id is derived from it)."""


class EdgeVectorStore(VectorStore):
    """LangChain's ``VectorStore`` over an :class:`~laser_integrations.stores.edge.EdgeStore`.

    Args:
        store: The open Edge store (this vector store closes it in :meth:`close`).
        embedding: The embeddings; a LaSER one's provenance is checked against (or recorded in) the folder.
        content_payload_key, metadata_payload_key: The payload keys, as in ``QdrantVectorStore``.
    """

    def __init__(
        self,
        store: EdgeStore,
        embedding: Embeddings,
        *,
        content_payload_key: str = CONTENT_KEY,
        metadata_payload_key: str = METADATA_KEY,
    ) -> None:
        self.store = store
        self._embedding = embedding
        self.content_payload_key = content_payload_key
        self.metadata_payload_key = metadata_payload_key
        ensure_embedding_provenance(store, embedding)

    @classmethod
    def open(cls, path: str | os.PathLike[str], embedding: Embeddings, **kwargs: Any) -> EdgeVectorStore:
        """The store over the Edge folder ``path`` (created if missing; released again if refused)."""
        store = EdgeStore(path)
        try:
            return cls(store, embedding, **kwargs)
        except BaseException:
            store.close()
            raise

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        path: str | os.PathLike[str] | None = None,
        **kwargs: Any,
    ) -> EdgeVectorStore:
        """A store over the Edge folder ``path`` holding ``texts``."""
        if path is None:
            raise ValueError("EdgeVectorStore.from_texts needs path=, the Edge folder to write to")
        store = cls.open(path, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and write ``texts``; returns their ids (random UUIDs where none are given)."""
        texts = list(texts)
        ids = [str(uuid.uuid4()) for _ in texts] if ids is None else [str(i) for i in ids]
        metadatas = metadatas or [{} for _ in texts]
        if not len(ids) == len(metadatas) == len(texts):
            raise ValueError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids")
        for start in range(0, len(texts), batch_size):
            batch = slice(start, start + batch_size)
            vectors = self._embedding.embed_documents(texts[batch])
            payloads = [self._payload(*row) for row in zip(texts[batch], metadatas[batch], ids[batch], strict=True)]
            self.store.upsert([uuid_for(i) for i in ids[batch]], vectors, payloads)
        return ids

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [document for document, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` nearest documents with their cosine similarity."""
        return self.similarity_search_with_score_by_vector(self._embedding.embed_query(query), k, **kwargs)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, **kwargs: Any) -> list[Document]:
        return [document for document, _ in self.similarity_search_with_score_by_vector(embedding, k, **kwargs)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        _refuse_filters(kwargs)
        return [(self._document(hit.id, hit.payload), hit.score) for hit in self.store.search(embedding, limit=k)]

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents among ``ids``, in the order given."""
        found = self.store.payloads([uuid_for(str(i)) for i in ids])
        return [self._document(uuid_for(str(i)), found[uuid_for(str(i))]) for i in ids if uuid_for(str(i)) in found]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the documents ``ids`` (missing ones are ignored)."""
        if ids is None:
            raise ValueError("EdgeVectorStore.delete needs the ids to delete")
        self.store.delete([uuid_for(str(i)) for i in ids])
        return True

    def close(self) -> None:
        """Flush and close the Edge folder."""
        self.store.close()

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return lambda similarity: (similarity + 1.0) / 2.0  # QdrantVectorStore's cosine mapping to [0, 1]

    def _payload(self, text: str, metadata: dict, document_id: str) -> dict[str, Any]:
        payload = {self.content_payload_key: text, self.metadata_payload_key: metadata}
        if uuid_for(document_id) != document_id:
            payload[ID_KEY] = document_id
        return payload

    def _document(self, point_id: str, payload: dict[str, Any]) -> Document:
        return Document(
            id=payload.get(ID_KEY, point_id),
            page_content=payload.get(self.content_payload_key, ""),
            metadata=payload.get(self.metadata_payload_key) or {},
        )


def _refuse_filters(kwargs: dict[str, Any]) -> None:
    if kwargs:
        names = ", ".join(sorted(kwargs))
        raise TypeError(f"EdgeVectorStore searches take no {names} (no payload filters on Edge yet)")
