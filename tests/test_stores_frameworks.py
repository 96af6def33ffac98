"""LangChain and LlamaIndex over a Qdrant Edge folder: the frameworks' own tests, and the same answers as Qdrant."""

from __future__ import annotations

import warnings

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_tests.integration_tests import VectorStoreIntegrationTests
from qdrant_client import QdrantClient

from laser_integrations.provenance import EmbeddingProvenance, ProvenanceMismatchError
from laser_integrations.qdrant import ensure_collection
from laser_integrations.stores import EdgeStore
from laser_integrations.stores.langchain_edge import EdgeVectorStore as LangChainEdgeStore

DIMENSION = 16
TEXTS = [f"document {i} about {topic}" for i, topic in enumerate(["sky", "sea", "rain", "sun", "moon"] * 6)]
METADATAS = [{"source": f"file-{i % 4}.txt", "page": i, "tags": ["a", "b"], "nested": {"x": i / 2}} for i in range(30)]


class FakeLaSEREmbeddings(DeterministicFakeEmbedding):
    """Deterministic vectors with a provenance, like ``LaSEREmbeddings``."""

    steps: int = 3

    @property
    def provenance(self) -> EmbeddingProvenance:
        return EmbeddingProvenance("fake", self.steps, "", self.size, "plain")


class TestLangChainStandardSuite(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path):
        store = LangChainEdgeStore(EdgeStore(tmp_path / "edge", dimension=6), self.get_embeddings())
        try:
            yield store
        finally:
            store.close()


def test_langchain_over_edge_returns_what_langchain_qdrant_returns_over_local_mode(tmp_path):
    from langchain_qdrant import QdrantVectorStore

    embeddings = FakeLaSEREmbeddings(size=DIMENSION)
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(len(TEXTS))]
    edge = LangChainEdgeStore.from_texts(TEXTS, embeddings, METADATAS, ids=ids, path=tmp_path / "edge")
    client = QdrantClient(":memory:")
    ensure_collection(client, "docs", embeddings.provenance)
    qdrant = QdrantVectorStore(client=client, collection_name="docs", embedding=embeddings)
    qdrant.add_texts(TEXTS, METADATAS, ids=ids)

    for query in ["sky", "document 7 about sea", "moon rain"]:
        got = edge.similarity_search_with_score(query, k=8)
        expected = qdrant.similarity_search_with_score(query, k=8)
        assert [document.id for document, _ in got] == [document.metadata.pop("_id") for document, _ in expected]
        for (document, score), (wanted, wanted_score) in zip(got, expected, strict=True):
            wanted.metadata.pop("_collection_name")
            assert (document.page_content, document.metadata) == (wanted.page_content, wanted.metadata)
            assert score == pytest.approx(wanted_score, abs=1e-5)
    assert edge.store.payloads(ids[:1])[ids[0]] == client.retrieve("docs", ids[:1])[0].payload  # one layout
    edge.close()


def test_langchain_over_edge_records_and_checks_the_embedding_provenance(tmp_path):
    LangChainEdgeStore.from_texts(TEXTS[:3], FakeLaSEREmbeddings(size=DIMENSION), path=tmp_path / "edge").close()
    with pytest.raises(ProvenanceMismatchError, match="num_thinking_steps=3; these embeddings use num_thin"):
        LangChainEdgeStore.open(tmp_path / "edge", FakeLaSEREmbeddings(size=DIMENSION, steps=6))
    store = LangChainEdgeStore.open(tmp_path / "edge", FakeLaSEREmbeddings(size=DIMENSION))
    assert store.store.count() == 3
    retriever = store.as_retriever(search_kwargs={"k": 1})
    assert retriever.invoke(TEXTS[1]) == [Document(id=retriever.invoke(TEXTS[1])[0].id, page_content=TEXTS[1])]
    store.close()


def llama_nodes():
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    embeddings = FakeLaSEREmbeddings(size=DIMENSION)
    vectors = embeddings.embed_documents(TEXTS)
    nodes = []
    for i, (text, vector) in enumerate(zip(TEXTS, vectors, strict=True)):
        node = TextNode(id_=f"00000000-0000-0000-0000-{i:012d}", text=text, metadata=METADATAS[i], embedding=vector)
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc-{i % 3}")
        nodes.append(node)
    return nodes, embeddings


def test_llama_index_over_edge_returns_what_its_qdrant_store_returns_over_local_mode(tmp_path):
    from llama_index.core.vector_stores.types import VectorStoreQuery
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    from laser_integrations.stores.llama_index_edge import EdgeVectorStore

    nodes, embeddings = llama_nodes()
    edge = EdgeVectorStore.open(tmp_path / "edge", embed_model=embeddings)
    qdrant = QdrantVectorStore(collection_name="docs", client=QdrantClient(":memory:"))
    edge.add(nodes)
    with warnings.catch_warnings():  # qdrant-client's local mode says, once a process, that it ignores indexes
        warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)
        qdrant.add(nodes)
    for text in ["sky", "document 7 about sea"]:
        query = VectorStoreQuery(query_embedding=embeddings.embed_query(text), similarity_top_k=8)
        got, expected = edge.query(query), qdrant.query(query)
        assert got.ids == expected.ids
        assert [(n.text, n.metadata, n.ref_doc_id) for n in got.nodes] == [
            (n.text, n.metadata, n.ref_doc_id) for n in expected.nodes
        ]
        assert got.similarities == pytest.approx(expected.similarities, abs=1e-5)

    assert [n.node_id for n in edge.get_nodes(node_ids=[nodes[4].node_id, nodes[2].node_id])] == [
        nodes[4].node_id,
        nodes[2].node_id,
    ]
    edge.delete("doc-1")
    qdrant.delete("doc-1")
    assert edge.client.count() == qdrant.client.count("docs").count == 20
    edge.close()


def test_llama_index_over_edge_embeds_a_query_string_with_the_attached_model(tmp_path):
    from llama_index.core.vector_stores.types import VectorStoreQuery

    from laser_integrations.stores.llama_index_edge import EdgeVectorStore

    nodes, _ = llama_nodes()

    class QueryEmbedder:
        provenance = FakeLaSEREmbeddings(size=DIMENSION).provenance

        def get_query_embedding(self, text):
            return FakeLaSEREmbeddings(size=DIMENSION).embed_query(text)

    store = EdgeVectorStore.open(tmp_path / "edge", embed_model=QueryEmbedder())
    store.add(nodes)
    result = store.query(VectorStoreQuery(query_str=TEXTS[3], similarity_top_k=1))
    assert result.nodes[0].text == TEXTS[3] and result.similarities[0] == pytest.approx(1.0, abs=1e-5)
    store.close()
