"""A LlamaIndex vector store over a Qdrant Edge folder, laid out like ``llama_index.vector_stores.qdrant``.

Each point's payload is ``node_to_metadata_dict(node, remove_text=False)``, what LlamaIndex's
``QdrantVectorStore`` writes (the node as ``_node_content``, its metadata keys, ``doc_id``/``ref_doc_id``),
and nodes come back through ``metadata_dict_to_node``, so an Edge folder and a Qdrant collection return the
same nodes. Attach the LaSER embedding (``embed_model=``) to have its provenance checked against the folder
and to answer queries that carry only a query string.

Example:
    ```python
    from llama_index.core import StorageContext, VectorStoreIndex
    from laser_integrations.llama_index import LaSEREmbedding
    from laser_integrations.stores.llama_index_edge import EdgeVectorStore

    embed_model = LaSEREmbedding("smollm2")
    store = EdgeVectorStore.open("./edge-data", embed_model=embed_model)
    index = VectorStoreIndex.from_documents(
        documents, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=embed_model
    )
    ```
"""

from __future__ import annotations

import os
from typing import Any

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode
    from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery, VectorStoreQueryResult
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("the LlamaIndex Edge store needs: pip install 'laser-integrations[llamaindex,edge]'") from error

from laser_integrations.stores.edge import EdgeStore, ensure_embedding_provenance
from laser_integrations.stores.points import uuid_for

__all__ = ["EdgeVectorStore"]

_DOCUMENT_ID_KEY = "doc_id"  # what LlamaIndex's QdrantVectorStore deletes a document's nodes by


class EdgeVectorStore(BasePydanticVectorStore):
    """LlamaIndex's ``BasePydanticVectorStore`` over an :class:`~laser_integrations.stores.edge.EdgeStore`."""

    stores_text: bool = True
    flat_metadata: bool = False

    _store: EdgeStore = PrivateAttr()
    _embed_model: Any = PrivateAttr(default=None)

    def __init__(self, store: EdgeStore, *, embed_model: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._store = store
        self._embed_model = embed_model
        ensure_embedding_provenance(store, embed_model)

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, embed_model: Any = None, **kwargs: Any) -> EdgeVectorStore:
        """The store over the Edge folder ``path`` (created if missing; released again if refused)."""
        store = EdgeStore(path)
        try:
            return cls(store, embed_model=embed_model, **kwargs)
        except BaseException:
            store.close()
            raise

    @classmethod
    def class_name(cls) -> str:
        return "EdgeVectorStore"

    @property
    def client(self) -> EdgeStore:
        """The :class:`~laser_integrations.stores.edge.EdgeStore`."""
        return self._store

    def add(self, nodes: list[BaseNode], **add_kwargs: Any) -> list[str]:
        """Write the nodes (with their embeddings); returns their ids."""
        if not nodes:
            return []
        payloads = [node_to_metadata_dict(n, remove_text=False, flat_metadata=self.flat_metadata) for n in nodes]
        vectors = [node.get_embedding() for node in nodes]
        self._store.upsert([uuid_for(node.node_id) for node in nodes], vectors, payloads)
        return [node.node_id for node in nodes]

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        self._store.delete_where(_DOCUMENT_ID_KEY, ref_doc_id)

    def delete_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **delete_kwargs: Any) -> None:
        """Delete the nodes ``node_ids`` (metadata filters are not supported on Edge yet)."""
        if filters is not None or node_ids is None:
            raise NotImplementedError("EdgeVectorStore deletes nodes by id only")
        self._store.delete([uuid_for(node_id) for node_id in node_ids])

    def get_nodes(self, node_ids: list[str] | None = None, filters: Any = None, **kwargs: Any) -> list[BaseNode]:
        """The stored nodes among ``node_ids``, in the order given."""
        if filters is not None or node_ids is None:
            raise NotImplementedError("EdgeVectorStore gets nodes by id only")
        found = self._store.payloads([uuid_for(node_id) for node_id in node_ids])
        return [metadata_dict_to_node(found[uuid_for(i)]) for i in node_ids if uuid_for(i) in found]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The ``similarity_top_k`` nearest nodes with their cosine similarities."""
        if query.filters is not None or query.doc_ids or query.node_ids:
            raise NotImplementedError("EdgeVectorStore has no metadata, doc_id or node_id filters yet")
        embedding = query.query_embedding
        if embedding is None:
            if self._embed_model is None or query.query_str is None:
                raise ValueError("the query carries no embedding; pass embed_model= to the store to embed it")
            embedding = self._embed_model.get_query_embedding(query.query_str)
        hits = self._store.search(embedding, limit=query.similarity_top_k)
        nodes = [metadata_dict_to_node(hit.payload) for hit in hits]
        return VectorStoreQueryResult(
            nodes=nodes, similarities=[hit.score for hit in hits], ids=[node.node_id for node in nodes]
        )

    def close(self) -> None:
        """Flush and close the Edge folder."""
        self._store.close()
