"""The adapters' remote mode (``endpoint=``): the same vectors and provenance as the local adapters."""

from __future__ import annotations

import asyncio
import socket

import pytest

from laser_integrations.embedder import EncodeOptions
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.llama_index import LaSEREmbedding
from laser_integrations.serving.app import ServeSettings, create_app
from laser_integrations.serving.client import RemoteEncoder
from serving_support import API_KEY, ThreadedServer, assert_same_vectors

pytestmark = pytest.mark.usefixtures("one_torch_thread")

QUERIES = ["why is the sky blue", "what is python", "how do plants store energy"]
DOCUMENTS = [
    "Rayleigh scattering of sunlight by molecules in the atmosphere.",
    "Python is a programming language. Its default arguments are evaluated once.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]
SETTINGS = {"num_thinking_steps": 2, "instruction": "find the passage that answers the question"}


@pytest.fixture(scope="module")
def server(tiny_model):
    settings = ServeSettings(served_model_name="tiny", api_key=API_KEY, max_inputs=4)  # the adapters must chunk
    with ThreadedServer(create_app(tiny_model, settings)) as running:
        yield running


@pytest.fixture(params=["langchain", "llamaindex"])
def adapters(request, server, tiny_model):
    """(remote, local) adapters of one framework with the same K and instruction; small batches."""
    if request.param == "langchain":
        remote = LaSEREmbeddings(endpoint=server.url, model="tiny", api_key=API_KEY, batch_size=2, **SETTINGS)
        local = LaSEREmbeddings(tiny_model, batch_size=2, **SETTINGS)
    else:
        remote = LaSEREmbedding(
            endpoint=server.url, model_name="tiny", api_key=API_KEY, embed_batch_size=2, **SETTINGS
        )
        local = LaSEREmbedding(tiny_model, embed_batch_size=2, **SETTINGS)
    return remote, local


def _calls(embeddings):
    """The framework's query, document and async entry points, as (name, callable) pairs."""
    if isinstance(embeddings, LaSEREmbeddings):
        return {
            "query": lambda: [embeddings.embed_query(text) for text in QUERIES],
            "documents": lambda: embeddings.embed_documents(DOCUMENTS),
            "aquery": lambda: asyncio.run(_gather(embeddings.aembed_query, QUERIES)),
            "adocuments": lambda: asyncio.run(embeddings.aembed_documents(DOCUMENTS)),
        }
    return {
        "query": lambda: [embeddings.get_query_embedding(text) for text in QUERIES],
        "documents": lambda: embeddings.get_text_embedding_batch(DOCUMENTS),
        "aquery": lambda: asyncio.run(_gather(embeddings.aget_query_embedding, QUERIES)),
        "adocuments": lambda: asyncio.run(embeddings.aget_text_embedding_batch(DOCUMENTS)),
    }


async def _gather(call, texts):
    return await asyncio.gather(*(call(text) for text in texts))


def test_remote_adapters_give_the_local_vectors_for_both_sides(adapters):
    remote, local = adapters
    remote_calls, local_calls = _calls(remote), _calls(local)
    for name in remote_calls:
        assert_same_vectors(remote_calls[name](), local_calls[name]())
    assert remote.client is None


def test_remote_provenance_equals_the_local_one(adapters, tiny_model):
    remote, local = adapters
    assert remote.provenance == local.provenance
    assert remote.provenance.num_thinking_steps == 2
    assert remote.provenance.dimension == tiny_model.get_embedding_dimension()


def test_remote_adapters_keep_the_query_side_apart_from_the_document_side(server, tiny_model):
    remote = LaSEREmbeddings(endpoint=server.url + "/v1", api_key=API_KEY)  # the OpenAI base URL works too
    assert_same_vectors([remote.embed_query(QUERIES[0])], tiny_model.encode_query(QUERIES[:1]))
    assert_same_vectors(remote.embed_documents(QUERIES[:1]), tiny_model.encode_document(QUERIES[:1]))


def test_remote_errors_say_what_went_wrong(server):
    wrong_key = RemoteEncoder(server.url, api_key="nope")
    with pytest.raises(PermissionError, match="401"):
        wrong_key.embed_documents(["a"], EncodeOptions())
    encoder = RemoteEncoder(server.url, api_key=API_KEY)
    with pytest.raises(ValueError, match="num_thinking_steps"):
        encoder.embed_query("a", EncodeOptions(num_thinking_steps=0))
    with pytest.raises(TypeError, match="not a string"):
        encoder.embed_documents(["a", None], EncodeOptions())  # type: ignore[list-item]
    with pytest.raises(ValueError, match="404.*not served"):
        RemoteEncoder(server.url, model="gpt-4", api_key=API_KEY).embed_documents(["a"], EncodeOptions())
    assert encoder.embed_documents([], EncodeOptions()) == []
    encoder.close()
    wrong_key.close()

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionError, match="cannot reach laser serve"):
        RemoteEncoder(f"http://127.0.0.1:{port}").embed_documents(["a"], EncodeOptions())
    with pytest.raises(ValueError, match="http"):
        RemoteEncoder("127.0.0.1:8080")


def test_remote_mode_refuses_local_model_options(server, tiny_model):
    with pytest.raises(ValueError, match="endpoint"):
        LaSEREmbeddings(endpoint=server.url, device="cpu")
    with pytest.raises(ValueError, match="endpoint"):
        LaSEREmbedding(tiny_model, endpoint=server.url)
