"""LaSER embeddings inside Qdrant (embedded mode): the official LangChain and LlamaIndex stores, persistence,
deterministic ids, and the provenance check that keeps other vectors out of a collection."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_qdrant import QdrantVectorStore as LangChainQdrant
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.vector_stores.qdrant import QdrantVectorStore as LlamaQdrant
from qdrant_client import AsyncQdrantClient, QdrantClient, models

from laser_integrations.embedder import EmbeddingProvenance, EncodeOptions, LocalEncoder
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.llama_index import LaSEREmbedding
from laser_integrations.provenance import model_provenance
from laser_integrations.qdrant import (
    PROVENANCE_KEY,
    ProvenanceMismatchError,
    aensure_collection,
    connect,
    content_id,
    ensure_collection,
    langchain_vector_store,
    llama_index_vector_store,
    node_id_from_content,
    stored_provenance,
)
from laser_integrations.serving.client import RemoteEncoder

TEXTS = [
    "Rayleigh scattering makes the daytime sky blue.",
    "Python evaluates default arguments once, when the function is defined.",
    "Photosynthesis stores light energy as glucose.",
    "A mutable default list keeps growing across calls.",
    "Sunsets look red because blue light scatters away.",
    "Mitochondria turn glucose into ATP.",
    "Tuples are immutable sequences in Python.",
    "The ocean looks blue partly because water absorbs red light.",
]
QUERY = "why is the sky blue"


@pytest.fixture
def embeddings(tiny_model) -> LaSEREmbeddings:
    return LaSEREmbeddings(tiny_model)


@pytest.fixture
def embed_model(tiny_model) -> LaSEREmbedding:
    return LaSEREmbedding(tiny_model)


def ranking(embeddings: LaSEREmbeddings, query: str, texts: list[str]) -> list[str]:
    """The texts by cosine to the query, computed without Qdrant: what a correct store must return."""
    scores = np.asarray(embeddings.embed_documents(texts)) @ np.asarray(embeddings.embed_query(query))
    return [texts[i] for i in np.argsort(-scores)]


def count(client: QdrantClient, name: str = "docs") -> int:
    return client.count(name, exact=True).count


# -- LangChain -------------------------------------------------------------------------------------------------


def test_the_issue_snippet_runs_in_memory(embeddings):
    store = LangChainQdrant.from_texts(TEXTS, embeddings, location=":memory:", collection_name="docs")

    found = store.as_retriever().invoke(QUERY)

    assert [document.page_content for document in found] == ranking(embeddings, QUERY, TEXTS)[:4]


@pytest.mark.parametrize("where", ["memory", "disk"])
async def test_langchain_store_adds_searches_retrieves_and_deletes(embeddings, tmp_path, where):
    place = {"location": ":memory:"} if where == "memory" else {"path": tmp_path / "qdrant"}
    store = langchain_vector_store(embeddings, "docs", **place)
    ids = store.add_texts(TEXTS, metadatas=[{"n": i} for i in range(len(TEXTS))], ids=[content_id(t) for t in TEXTS])
    expected = ranking(embeddings, QUERY, TEXTS)

    assert [d.page_content for d in store.similarity_search(QUERY, k=3)] == expected[:3]
    retriever = store.as_retriever(search_kwargs={"k": 3})
    assert [d.page_content for d in retriever.invoke(QUERY)] == expected[:3]
    assert [d.page_content for d in await retriever.ainvoke(QUERY)] == expected[:3]

    store.delete([ids[TEXTS.index(expected[0])]])
    assert count(store.client) == len(TEXTS) - 1
    assert [d.page_content for d in store.similarity_search(QUERY, k=3)] == expected[1:4]
    store.client.close()


def test_langchain_collection_persists_and_reindexing_does_not_duplicate(embeddings, tmp_path):
    path = tmp_path / "qdrant"
    store = langchain_vector_store(embeddings, "docs", path=path)
    store.add_texts(TEXTS, ids=[content_id(t) for t in TEXTS])
    before = [(d.page_content, d.metadata["_id"]) for d in store.similarity_search(QUERY, k=4)]
    store.client.close()

    reopened = langchain_vector_store(embeddings, "docs", path=path)
    assert count(reopened.client) == len(TEXTS)
    assert [(d.page_content, d.metadata["_id"]) for d in reopened.similarity_search(QUERY, k=4)] == before

    reopened.add_texts(TEXTS, ids=[content_id(t) for t in TEXTS])
    assert count(reopened.client) == len(TEXTS)
    reopened.client.close()


def test_langchain_store_refuses_other_settings_before_writing(tiny_model, embeddings, tmp_path):
    path = tmp_path / "qdrant"
    store = langchain_vector_store(embeddings, "docs", path=path)
    store.add_texts(TEXTS[:3])
    store.client.close()

    for other in (LaSEREmbeddings(tiny_model, num_thinking_steps=6), LaSEREmbeddings(tiny_model, instruction="")):
        with pytest.raises(ProvenanceMismatchError, match="holds vectors made with"):
            langchain_vector_store(other, "docs", path=path)
    client = connect(path)
    assert count(client) == 3
    assert stored_provenance(client, "docs") == embeddings.provenance
    client.close()


# -- LlamaIndex ------------------------------------------------------------------------------------------------


def _documents() -> list[Document]:
    return [Document(text=text, metadata={"n": i}) for i, text in enumerate(TEXTS)]


def _splitter() -> SentenceSplitter:
    return SentenceSplitter(chunk_size=64, chunk_overlap=0, id_func=node_id_from_content)


def _hits(nodes) -> list[tuple[str, float]]:
    return [(hit.node.node_id, round(hit.score, 5)) for hit in nodes]


async def test_llama_index_builds_persists_reopens_and_retrieves_async(embed_model, tmp_path):
    path = tmp_path / "qdrant"
    store = llama_index_vector_store(embed_model, "docs", path=path)
    index = VectorStoreIndex.from_documents(
        _documents(),
        storage_context=StorageContext.from_defaults(vector_store=store),
        embed_model=embed_model,
        transformations=[_splitter()],
    )
    before = _hits(index.as_retriever(similarity_top_k=3).retrieve(QUERY))
    assert len(before) == 3
    store.client.close()

    reopened = llama_index_vector_store(embed_model, "docs", path=path)
    assert count(reopened.client) == len(TEXTS)
    again = VectorStoreIndex.from_vector_store(reopened, embed_model=embed_model)
    assert _hits(again.as_retriever(similarity_top_k=3).retrieve(QUERY)) == before

    VectorStoreIndex.from_documents(
        _documents(),
        storage_context=StorageContext.from_defaults(vector_store=reopened),
        embed_model=embed_model,
        transformations=[_splitter()],
    )
    assert count(reopened.client) == len(TEXTS)
    reopened.client.close()

    aclient = AsyncQdrantClient(path=str(path))
    await aensure_collection(aclient, "docs", embed_model)
    async_index = VectorStoreIndex.from_vector_store(LlamaQdrant("docs", aclient=aclient), embed_model=embed_model)
    assert _hits(await async_index.as_retriever(similarity_top_k=3).aretrieve(QUERY)) == before
    await aclient.close()


def test_llama_index_store_refuses_other_settings_before_writing(tiny_model, embed_model):
    client = QdrantClient(":memory:")
    store = llama_index_vector_store(embed_model, "docs", client=client)
    context = StorageContext.from_defaults(vector_store=store)
    VectorStoreIndex.from_documents(_documents()[:2], storage_context=context, embed_model=embed_model)

    with pytest.raises(
        ProvenanceMismatchError, match="num_thinking_steps=3; these embeddings use num_thinking_steps=1"
    ):
        llama_index_vector_store(LaSEREmbedding(tiny_model, num_thinking_steps=1), "docs", client=client)
    assert count(client) == 2


# -- provenance on plain qdrant-client ------------------------------------------------------------------------


PROVENANCE = EmbeddingProvenance("tiny", 3, "Instruct: t\nQuery: ", 64, "chat-template+think", 512)


def test_a_new_collection_records_the_provenance():
    client = connect()

    assert ensure_collection(client, "docs", PROVENANCE) == PROVENANCE
    info = client.get_collection("docs")
    assert info.config.params.vectors.size == 64
    assert info.config.params.vectors.distance == models.Distance.COSINE
    assert info.config.metadata[PROVENANCE_KEY]["num_thinking_steps"] == 3
    assert stored_provenance(client, "docs") == PROVENANCE
    assert ensure_collection(client, "docs", PROVENANCE) == PROVENANCE  # reopening the same way is fine


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model", "other/model", "model='tiny'"),
        ("num_thinking_steps", 6, "num_thinking_steps=3"),
        ("query_prompt", "", "query_prompt="),
        ("text_format", "plain", "text_format="),
    ],
)
def test_other_settings_are_refused(field, value, message):
    client = connect()
    ensure_collection(client, "docs", PROVENANCE)

    with pytest.raises(ProvenanceMismatchError, match=message):
        ensure_collection(client, "docs", EmbeddingProvenance(**{**PROVENANCE.to_dict(), field: value}))


def test_another_dimension_or_distance_is_refused():
    client = connect()
    ensure_collection(client, "docs", PROVENANCE)

    with pytest.raises(ProvenanceMismatchError, match="64-dimensional"):
        ensure_collection(client, "docs", EmbeddingProvenance(**{**PROVENANCE.to_dict(), "dimension": 32}))
    with pytest.raises(ProvenanceMismatchError, match="distance"):
        ensure_collection(client, "docs", PROVENANCE, distance=models.Distance.DOT)


def test_another_max_seq_length_is_refused_but_an_unrecorded_one_matches():
    client = connect()
    recorded = EmbeddingProvenance(**{**PROVENANCE.to_dict(), "max_seq_length": 128})
    ensure_collection(client, "docs", recorded)

    with pytest.raises(ProvenanceMismatchError, match="max_seq_length=128; these embeddings use max_seq_length=256"):
        ensure_collection(client, "docs", EmbeddingProvenance(**{**recorded.to_dict(), "max_seq_length": 256}))
    # A record written before 0.3 knows no limit: it matches any, as before.
    ensure_collection(client, "old", EmbeddingProvenance(**{**recorded.to_dict(), "max_seq_length": None}))
    assert ensure_collection(client, "old", recorded) == recorded


def test_a_collection_without_provenance_is_adopted_only_when_empty_or_asked():
    client = connect()
    client.create_collection("docs", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE))
    ensure_collection(client, "docs", PROVENANCE)
    assert stored_provenance(client, "docs") == PROVENANCE

    client.create_collection("filled", vectors_config=models.VectorParams(size=64, distance=models.Distance.COSINE))
    client.upsert("filled", [models.PointStruct(id=1, vector=[0.1] * 64)])
    with pytest.raises(ProvenanceMismatchError, match="records no embedding provenance"):
        ensure_collection(client, "filled", PROVENANCE)
    assert stored_provenance(client, "filled") is None
    ensure_collection(client, "filled", PROVENANCE, adopt=True)
    assert stored_provenance(client, "filled") == PROVENANCE


def test_named_vectors_are_supported():
    client = connect()
    ensure_collection(client, "docs", PROVENANCE, vector_name="dense")

    assert client.get_collection("docs").config.params.vectors["dense"].size == 64
    with pytest.raises(ProvenanceMismatchError, match="no dense vector named ''"):
        ensure_collection(client, "docs", PROVENANCE)


def test_only_laser_embeddings_have_a_provenance():
    with pytest.raises(TypeError, match="only LaSER embeddings know their provenance"):
        ensure_collection(connect(), "docs", object())


def test_an_encoder_local_or_remote_records_its_default_provenance(tiny_model, monkeypatch):
    local = LocalEncoder(tiny_model)
    remote = RemoteEncoder("http://127.0.0.1:9")  # never reached: its /info is answered below
    info = {"laser": {**model_provenance(tiny_model).to_dict(), "served_model_name": "tiny"}}
    monkeypatch.setattr(remote, "_request", lambda method, path, body=None: info)
    client = connect()

    assert ensure_collection(client, "docs", local) == model_provenance(tiny_model)
    assert ensure_collection(client, "docs", remote) == model_provenance(tiny_model)
    with pytest.raises(ProvenanceMismatchError, match="num_thinking_steps"):
        ensure_collection(client, "docs", remote.provenance(EncodeOptions(num_thinking_steps=7)))


def test_connect_takes_one_place():
    with pytest.raises(ValueError, match="one of"):
        connect("somewhere", url="http://localhost:6333")


def test_local_mode_locks_its_folder_to_one_client(tmp_path):
    first = connect(tmp_path / "qdrant")
    with pytest.raises(RuntimeError, match="already accessed"):
        connect(tmp_path / "qdrant")
    first.close()
    connect(tmp_path / "qdrant").close()


def test_content_ids_are_stable_uuids_that_depend_on_text_and_metadata():
    assert content_id("a") == content_id("a") != content_id("b")
    assert content_id("a", {"source": 1}) != content_id("a")
    assert len(content_id("a").split("-")) == 5
