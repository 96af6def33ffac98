"""``LaSEREmbedding``: a LlamaIndex ``BaseEmbedding`` that delegates to the right side of a LaSER model."""

from __future__ import annotations

import asyncio
import importlib
import sys

import numpy as np
import pytest
from llama_index.core import Settings

from laser_integrations.formatting import query_prompt
from laser_integrations.llama_index import LaSEREmbedding


class ForwardCounter:
    def __init__(self, model) -> None:
        self.count = 0
        self._handle = model[0].register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


def test_llama_index_takes_it_as_an_embed_model_under_its_own_class_name(tiny_model):
    from llama_index.core.embeddings.utils import resolve_embed_model

    embedding = LaSEREmbedding(tiny_model)

    assert resolve_embed_model(embedding) is embedding  # LlamaIndex's own check, as Settings and indexes use it
    assert LaSEREmbedding.class_name() == "LaSEREmbedding"
    assert embedding.to_dict()["class_name"] == "LaSEREmbedding"


def test_serializes_its_settings_and_rebuilds_from_them(tiny_dirs):
    folder = str(tiny_dirs["qwen3"])
    embedding = LaSEREmbedding(folder, num_thinking_steps=2, instruction="Find code", embed_batch_size=4, device="cpu")
    data = embedding.to_dict()

    assert data["model_name"] == folder
    assert (data["num_thinking_steps"], data["instruction"], data["embed_batch_size"]) == (2, "Find code", 4)
    rebuilt = LaSEREmbedding.from_dict(data)
    assert rebuilt.get_query_embedding("sort") == embedding.get_query_embedding("sort")


def test_settings_embed_model_drives_an_index_built_and_queried_through_it(tiny_model):
    """Set as ``Settings.embed_model``, it embeds the nodes of a ``VectorStoreIndex`` on the document side and
    the retriever's query on the query side: the ranking is the model's own."""
    from llama_index.core import VectorStoreIndex
    from llama_index.core.schema import QueryBundle, TextNode

    texts = ["Rayleigh scattering turns the sky blue.", "Python sorts lists with timsort.", "Plants store sugar."]
    question = "why is the sky blue"
    previous = Settings._embed_model
    try:
        Settings.embed_model = LaSEREmbedding(tiny_model, num_thinking_steps=3)
        index = VectorStoreIndex([TextNode(text=text, id_=f"n{i}") for i, text in enumerate(texts)])
        bundle = QueryBundle(question)
        hits = index.as_retriever(similarity_top_k=len(texts)).retrieve(bundle)
    finally:
        Settings._embed_model = previous

    query = tiny_model.encode_query([question], num_thinking_steps=3)[0]
    documents = tiny_model.encode_document(texts, num_thinking_steps=3)
    scores = documents @ query
    assert _cosine(bundle.embedding, query) >= 0.99999
    assert [hit.node.get_content() for hit in hits] == [texts[i] for i in np.argsort(-scores)]
    assert [hit.score for hit in hits] == pytest.approx(sorted(scores, reverse=True), abs=1e-5)
    for i, text in enumerate(texts):
        assert _cosine(index.vector_store.get(f"n{i}"), documents[i]) >= 0.99999, text


def _cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_queries_use_the_query_side_and_texts_the_document_side(tiny_model):
    embedding = LaSEREmbedding(tiny_model, num_thinking_steps=4, instruction="Find code")
    prompt = query_prompt("Find code")

    query = embedding.get_query_embedding("sort a list")
    text = embedding.get_text_embedding("sort a list")

    expected_query = tiny_model.encode_query(["sort a list"], prompt=prompt, num_thinking_steps=4)
    expected_text = tiny_model.encode_document(["sort a list"], num_thinking_steps=4)
    assert query == expected_query[0].tolist()
    assert text == expected_text[0].tolist()
    assert type(query[0]) is float


def test_text_batches_go_through_one_pass_per_embed_batch(tiny_model):
    embedding = LaSEREmbedding(tiny_model, embed_batch_size=4)
    texts = [f"document number {i}" for i in range(10)]
    counter = ForwardCounter(tiny_model)
    try:
        vectors = embedding.get_text_embedding_batch(texts)
    finally:
        counter.remove()

    assert len(vectors) == 10
    assert counter.count == 3  # 4 + 4 + 2, not 10 single passes
    assert vectors[7] == pytest.approx(embedding.get_text_embedding(texts[7]), abs=1e-6)


async def test_concurrent_async_queries_share_forward_passes(tiny_model):
    embedding = LaSEREmbedding(tiny_model)
    queries = [f"question {i}" for i in range(16)]
    expected = [embedding.get_query_embedding(query) for query in queries]
    counter = ForwardCounter(tiny_model)
    try:
        vectors = await asyncio.gather(*(embedding.aget_query_embedding(query) for query in queries))
    finally:
        counter.remove()

    assert counter.count < 16
    assert all(v == pytest.approx(e, abs=1e-5) for v, e in zip(vectors, expected, strict=True))


async def test_async_text_batches_match_the_sync_ones(tiny_model):
    embedding = LaSEREmbedding(tiny_model, embed_batch_size=3)
    texts = [f"document {i}" for i in range(7)]

    vectors = await embedding.aget_text_embedding_batch(texts)
    single = await embedding.aget_text_embedding(texts[0])

    assert vectors == [pytest.approx(v, abs=1e-5) for v in embedding.get_text_embedding_batch(texts)]
    assert single == pytest.approx(vectors[0], abs=1e-5)


def test_bad_input_is_reported_clearly(tiny_model):
    embedding = LaSEREmbedding(tiny_model)

    with pytest.raises(TypeError, match="query must be a string, got NoneType"):
        embedding.get_query_embedding(None)
    with pytest.raises(TypeError, match="document must be a string, got int"):
        embedding.get_text_embedding(3)
    with pytest.raises(TypeError, match="text 1 is NoneType"):
        embedding.get_text_embedding_batch(["fine", None])
    assert embedding.get_text_embedding_batch([]) == []
    assert len(embedding.get_text_embedding("")) == tiny_model.get_embedding_dimension()


def test_rejects_a_model_given_twice_or_load_options_for_a_loaded_model(tiny_model):
    with pytest.raises(TypeError, match="once"):
        LaSEREmbedding("smollm2", model_name="smollm2")
    with pytest.raises(ValueError, match="only apply when loading"):
        LaSEREmbedding(tiny_model, device="cpu")


def test_rejects_what_is_not_a_laser_model():
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize

    with pytest.raises(TypeError, match="not a LaSER model"):
        LaSEREmbedding(SentenceTransformer(modules=[Normalize()], device="cpu"))
    with pytest.raises(TypeError, match="model spec"):
        LaSEREmbedding(42)


def test_missing_llama_index_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_index.core.base.embeddings.base", None)
    monkeypatch.delitem(sys.modules, "laser_integrations.llama_index")

    with pytest.raises(ImportError, match=r"pip install 'laser-integrations\[llamaindex\]'"):
        importlib.import_module("laser_integrations.llama_index")
