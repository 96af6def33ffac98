"""The explicit rewrite-then-retrieve chain: generator, LangChain LCEL chain, LlamaIndex query transform.

The chains run on the real SmolLM2 with a few new tokens (marked slow); input checks and the plumbing
for LLMs a user already has run on the tiny model.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.runnables import RunnableLambda
from langchain_qdrant import QdrantVectorStore
from llama_index.core import Document as LlamaDocument
from llama_index.core import VectorStoreIndex
from llama_index.core.llms import MockLLM
from llama_index.core.query_engine import TransformQueryEngine
from llama_index.core.retrievers import TransformRetriever
from llama_index.core.schema import QueryBundle

from laser_integrations import load_model
from laser_integrations.formatting import EMPTY_THINK_BLOCK, rationale_prompt
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.llama_index import LaSEREmbedding
from laser_integrations.rewrite import (
    RationaleGenerator,
    RationaleQueryTransform,
    explicit_query_embeddings,
    rationale_runnable,
    rewrite_then_retrieve_chain,
)

PASSAGES = [
    "Default parameter values are evaluated once, when the function definition is executed, so a mutable "
    "default such as a list is shared between calls.",
    "The global statement declares that the listed identifiers are to be interpreted as globals.",
    "A with statement wraps a block in the methods of a context manager: __enter__ and __exit__.",
    "Slicing a sequence with a[i:j] selects the items with index k such that i <= k < j.",
]
QUERIES = [
    "why does my default list argument keep growing between calls?",
    "how do I make a variable inside a function change the module-level one?",
    "what runs when a with block exits?",
]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path):
    return load_model(str(smollm2_dir), device="cpu")


@pytest.fixture(scope="module")
def generator(smollm2) -> RationaleGenerator:
    """SmolLM2 writing rationales with the backbone it embeds with (one model in memory)."""
    return RationaleGenerator.from_sentence_transformer(smollm2, max_new_tokens=NEW_TOKENS, batch_size=2)


@pytest.fixture(scope="module")
def langchain_store(smollm2) -> QdrantVectorStore:
    embeddings = LaSEREmbeddings(smollm2)
    return QdrantVectorStore.from_texts(PASSAGES, embeddings, location=":memory:", collection_name="rewrite")


def explicit_search(store: QdrantVectorStore, model, query: str, rationale: str, k: int) -> list[str]:
    """What the chain must return: the explicit-view vector of (query, rationale), searched by vector."""
    vector = explicit_query_embeddings(model, [query], [rationale])[0]
    return [doc.page_content for doc in store.similarity_search_by_vector(vector.tolist(), k=k)]


# -- the generator (SmolLM2) --------------------------------------------------------------------------------


@pytest.mark.slow
def test_rationales_are_greedy_bounded_and_independent_of_the_batch(generator):
    together = generator.generate(QUERIES)
    alone = [generator.generate([query])[0] for query in QUERIES]
    assert together == alone, "left padding leaked into greedy generation"
    assert all(together), "SmolLM2 wrote an empty rationale"
    lengths = [len(generator.tokenizer(text, add_special_tokens=False)["input_ids"]) for text in together]
    assert max(lengths) <= NEW_TOKENS + 1  # +1: re-tokenizing decoded text may split one token differently


@pytest.mark.slow
def test_the_generator_shares_the_embedders_backbone(smollm2, generator):
    assert generator.model is smollm2[0].model
    assert generator.prompt_for("q") == rationale_prompt("q")


# -- LangChain (SmolLM2) ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_langchain_chain_embeds_query_and_rationale_with_the_explicit_view(smollm2, generator, langchain_store):
    chain = rewrite_then_retrieve_chain(generator, langchain_store.as_retriever(search_kwargs={"k": 2}))
    query = QUERIES[0]
    documents = chain.invoke(query)
    assert all(isinstance(document, Document) for document in documents)
    rationale = generator.generate([query])[0]
    assert [doc.page_content for doc in documents] == explicit_search(langchain_store, smollm2, query, rationale, 2)


@pytest.mark.slow
async def test_langchain_chain_batches_and_awaits_like_a_retriever(smollm2, generator, langchain_store):
    chain = rewrite_then_retrieve_chain(generator, langchain_store.as_retriever(search_kwargs={"k": 1}))
    batched = chain.batch(QUERIES[:2])
    awaited = await asyncio.gather(*(chain.ainvoke(query) for query in QUERIES[:2]))
    assert [[doc.page_content for doc in docs] for docs in batched] == [
        [doc.page_content for doc in docs] for docs in awaited
    ]
    assert all(len(documents) == 1 for documents in batched)


# -- LlamaIndex (SmolLM2) -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_llama_index_transform_hands_the_explicit_vector_to_the_retriever(smollm2, generator):
    embed_model = LaSEREmbedding(smollm2)
    index = VectorStoreIndex.from_documents([LlamaDocument(text=text) for text in PASSAGES], embed_model=embed_model)
    transform = RationaleQueryTransform(generator, embed_model=embed_model)
    query = QUERIES[0]

    bundle = transform.run(query)
    assert isinstance(bundle, QueryBundle) and bundle.query_str == query
    [text] = bundle.custom_embedding_strs
    assert text.startswith(query + "\n\n") and len(text) > len(query) + 2
    rationale = text[len(query) + 2 :]
    expected_vector = explicit_query_embeddings(smollm2, [query], [rationale])[0]
    np.testing.assert_allclose(bundle.embedding, expected_vector, atol=1e-6)

    retriever = TransformRetriever(index.as_retriever(similarity_top_k=2), transform)
    nodes = retriever.retrieve(query)
    expected = index.as_retriever(similarity_top_k=2).retrieve(QueryBundle(query, embedding=bundle.embedding))
    assert [node.node.get_content() for node in nodes] == [node.node.get_content() for node in expected]

    engine = TransformQueryEngine(index.as_query_engine(llm=MockLLM(max_tokens=4), similarity_top_k=2), transform)
    assert len(engine.query(query).source_nodes) == 2


# -- LLMs a user already has (tiny model) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_store(tiny_model) -> QdrantVectorStore:
    embeddings = LaSEREmbeddings(tiny_model)
    return QdrantVectorStore.from_texts(PASSAGES, embeddings, location=":memory:", collection_name="tiny")


def test_a_langchain_chat_model_writes_the_rationale_with_the_papers_prompt(tiny_model, tiny_store):
    seen: list[str] = []

    def record(prompt_value) -> str:
        seen.append(prompt_value.to_string())
        return "Default values are evaluated once."

    chain = rewrite_then_retrieve_chain(RunnableLambda(record), tiny_store.as_retriever(search_kwargs={"k": 2}))
    documents = chain.invoke(QUERIES[0])
    assert seen == [rationale_prompt(QUERIES[0])]
    expected = explicit_search(tiny_store, tiny_model, QUERIES[0], "Default values are evaluated once.", 2)
    assert [doc.page_content for doc in documents] == expected


def test_text_form_sends_query_plus_rationale_to_any_retriever(tiny_store):
    chat = FakeListChatModel(responses=["  shared mutable default  "])
    retriever = tiny_store.as_retriever(search_kwargs={"k": 2})
    chain = rewrite_then_retrieve_chain(chat, retriever, explicit_view=False)
    expected = retriever.invoke(QUERIES[0] + "\n\n" + "shared mutable default")
    assert chain.invoke(QUERIES[0]) == expected


def test_a_llama_index_llm_can_write_rationales_for_langchain():
    rationale = rationale_runnable(MockLLM()).invoke(QUERIES[1])  # MockLLM echoes its prompt
    assert rationale == rationale_prompt(QUERIES[1]).strip()


def test_a_langchain_model_can_write_rationales_for_llama_index(tiny_model):
    transform = RationaleQueryTransform(FakeListChatModel(responses=["because"]), embed_model=tiny_model)
    bundle = transform.run("why?")
    assert bundle.custom_embedding_strs == ["why?\n\nbecause"]
    assert bundle.embedding is not None and len(bundle.embedding) == tiny_model.get_embedding_dimension()
    assert "rationale_prompt" in transform.get_prompts()


def test_qwen3_style_templates_are_asked_not_to_think(tiny_model):
    generator = RationaleGenerator.from_sentence_transformer(tiny_model, max_new_tokens=1)
    seen: list[str] = []
    original = generator.tokenizer.__class__.__call__

    def spy(self, text, *args, **kwargs):
        seen.extend(text if isinstance(text, list) else [text])
        return original(self, text, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generator.tokenizer.__class__, "__call__", spy)
        generator.generate(["q"])
    assert seen and seen[0].endswith("<|im_start|>assistant\n" + EMPTY_THINK_BLOCK)


# -- bad input ------------------------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_clear_error(tiny_model, tiny_store):
    generator = RationaleGenerator.from_sentence_transformer(tiny_model, max_new_tokens=1)
    with pytest.raises(TypeError, match="wrap it in a list"):
        generator.generate("one string")
    with pytest.raises(TypeError, match="query 1 is NoneType"):
        generator.generate(["ok", None])
    with pytest.raises(ValueError, match="max_new_tokens must be a positive integer"):
        RationaleGenerator(tiny_model[0].model, tiny_model[0].tokenizer, max_new_tokens=0)
    with pytest.raises(ValueError, match=r"\{query\}"):
        RationaleGenerator(tiny_model[0].model, tiny_model[0].tokenizer, prompt="no field")
    with pytest.raises(ValueError, match="2 queries but 1 rationales"):
        explicit_query_embeddings(tiny_model, ["a", "b"], ["r"])
    with pytest.raises(TypeError, match="RationaleGenerator, a LangChain"):
        rewrite_then_retrieve_chain(object(), tiny_store.as_retriever())
    plain = RunnableLambda(lambda query: [])
    with pytest.raises(ValueError, match="explicit_view=True needs a vector-store retriever"):
        rewrite_then_retrieve_chain(FakeListChatModel(responses=["r"]), plain, explicit_view=True)


def test_rewrite_imports_without_langchain_or_llama_index():
    blocked = ["langchain_core", "langchain_qdrant", "llama_index", "llama_index.core"]
    code = (
        "import sys\n"
        f"for name in {blocked!r}: sys.modules[name] = None\n"
        "import laser_integrations.rewrite as rewrite\n"
        "assert callable(rewrite.generate_rationales)\n"
        "try:\n"
        "    rewrite.RationaleQueryTransform\n"
        "except ImportError:\n"
        "    print('lazy')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "lazy"
