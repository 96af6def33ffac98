"""The adapters' remote mode (``endpoint=``): the same vectors and provenance as the local adapters."""

from __future__ import annotations

import asyncio
import socket

import pytest

from laser_integrations.embedder import EncodeOptions, LocalEncoder
from laser_integrations.encoder import Encoder, is_encoder
from laser_integrations.formatting import query_prompt
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.llama_index import LaSEREmbedding
from laser_integrations.provenance import model_name, model_provenance
from laser_integrations.serving.app import ServeSettings, create_app
from laser_integrations.serving.client import RemoteEncoder, RemoteError, as_encoder
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


# -- one Encoder protocol: the local model and the endpoint are used the same way -------------------------


@pytest.fixture(params=["local", "remote"])
def encoder(request, server, tiny_model):
    made = LocalEncoder(tiny_model) if request.param == "local" else RemoteEncoder(server.url, api_key=API_KEY)
    yield made
    made.close()


def test_both_encoders_implement_the_protocol_and_give_the_models_vectors(encoder, tiny_model):
    options = EncodeOptions(num_thinking_steps=2, instruction="find the answer", batch_size=2)
    prompt = query_prompt("find the answer")
    queries = tiny_model.encode_query(QUERIES, prompt=prompt, num_thinking_steps=2)
    documents = tiny_model.encode_document(DOCUMENTS, num_thinking_steps=2)

    assert isinstance(encoder, Encoder) and is_encoder(encoder)
    assert encoder.dimension == tiny_model.get_embedding_dimension()
    assert encoder.model_id == model_name(tiny_model)
    assert (
        encoder.provenance(options).differences(
            model_provenance(tiny_model, num_thinking_steps=2, instruction="find the answer")
        )
        == {}
    )
    assert_same_vectors([encoder.embed_query(QUERIES[0], options)], queries[:1])
    assert_same_vectors(encoder.embed_queries(QUERIES, options), queries)
    assert_same_vectors([encoder.embed_document(DOCUMENTS[0], options)], documents[:1])
    assert_same_vectors(encoder.embed_documents(DOCUMENTS, options), documents)
    assert_same_vectors([asyncio.run(encoder.aembed_query(QUERIES[0], options))], queries[:1])
    assert_same_vectors(asyncio.run(encoder.aembed_queries(QUERIES, options)), queries)
    assert_same_vectors([asyncio.run(encoder.aembed_document(DOCUMENTS[0], options))], documents[:1])
    assert_same_vectors(asyncio.run(encoder.aembed_documents(DOCUMENTS, options)), documents)
    encoder.close()
    assert_same_vectors(encoder.embed_documents(DOCUMENTS[:1], options), documents[:1])  # usable after close


def test_both_adapters_take_a_ready_encoder_and_share_it(encoder, tiny_model):
    langchain, llama_index = LaSEREmbeddings(encoder, num_thinking_steps=2), LaSEREmbedding(encoder)

    assert langchain.encoder is llama_index.encoder is encoder
    assert langchain.model_name == llama_index.model_name == model_name(tiny_model)
    assert (langchain.client is tiny_model) == isinstance(encoder, LocalEncoder)
    assert langchain.provenance.num_thinking_steps == 2
    assert_same_vectors(
        [langchain.embed_query(QUERIES[0])], tiny_model.encode_query(QUERIES[:1], num_thinking_steps=2)
    )
    assert_same_vectors(llama_index.get_text_embedding_batch(DOCUMENTS), tiny_model.encode_document(DOCUMENTS))
    with pytest.raises(ValueError, match="only apply when loading"):
        LaSEREmbedding(encoder, device="cpu")


def test_as_encoder_turns_what_an_adapter_is_given_into_an_encoder(server, tiny_model, tiny_dirs):
    ready = LocalEncoder(tiny_model)
    remote = as_encoder("tiny", endpoint=server.url, api_key=API_KEY)

    assert as_encoder(ready) is ready
    assert as_encoder(tiny_model).model is tiny_model
    assert as_encoder(str(tiny_dirs["qwen3"]), device="cpu").dimension == ready.dimension
    assert isinstance(remote, RemoteEncoder) and (remote.model, remote.model_id) == ("tiny", ready.model_id)
    assert as_encoder(endpoint=server.url).model is None  # the server's one model
    with pytest.raises(ValueError, match="endpoint"):
        as_encoder(tiny_model, endpoint=server.url)
    with pytest.raises(ValueError, match="endpoint"):
        as_encoder("tiny", endpoint=server.url, load_options={"dtype": "bf16"})
    with pytest.raises(ValueError, match="only apply when loading"):
        as_encoder(ready, device="cpu")
    with pytest.raises(TypeError, match="model spec"):
        as_encoder(42)


def test_a_server_without_laser_metadata_is_named(monkeypatch):
    encoder = RemoteEncoder("http://127.0.0.1:9")
    monkeypatch.setattr(encoder, "_request", lambda method, path, body=None: {"laser": {"model": "x"}})

    with pytest.raises(RemoteError, match="no LaSER metadata.*lacks"):
        encoder.provenance(EncodeOptions())
    with pytest.raises(RemoteError, match="no LaSER metadata"):
        encoder.dimension  # noqa: B018 - the property is what is tested
