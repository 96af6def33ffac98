"""``laser serve`` on a tiny model: real OpenAI, LangChain, LlamaIndex and TEI clients, bad input, load, metrics."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import numpy as np
import pytest

from laser_integrations.formatting import query_prompt
from laser_integrations.serving.app import ServeSettings, create_app
from laser_integrations.serving.engine import TokenCounter
from serving_support import API_KEY, ThreadedServer, assert_same_vectors, histogram_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = [
    "why is the sky blue",
    "Rayleigh scattering of sunlight by molecules in the atmosphere",
    "what is python",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
]
AUTH = {"Authorization": f"Bearer {API_KEY}"}
SETTINGS = ServeSettings(
    served_model_name="tiny",
    api_key=API_KEY,
    max_inputs=8,
    max_thinking_steps=8,
    max_request_bytes=64 * 1024,
    max_wait_ms=5,
)


@pytest.fixture(scope="module")
def server(tiny_model):
    with ThreadedServer(create_app(tiny_model, SETTINGS)) as running:
        yield running


@pytest.fixture(scope="module")
def expected(tiny_model):
    """In-process vectors of TEXTS: both sides, K=2 for both, and a query instruction."""
    return {
        "query": tiny_model.encode_query(TEXTS),
        "document": tiny_model.encode_document(TEXTS),
        "query_k2": tiny_model.encode_query(TEXTS, num_thinking_steps=2),
        "document_k2": tiny_model.encode_document(TEXTS, num_thinking_steps=2),
        "query_task": tiny_model.encode_query(TEXTS, prompt=query_prompt("find theorems")),
    }


# -- real clients ---------------------------------------------------------------------------------------------


def test_openai_client_gets_in_process_vectors_for_the_side_it_asks_for(server, expected, tiny_model):
    from openai import OpenAI

    client = OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)

    def vectors(**kwargs):
        response = client.embeddings.create(input=TEXTS, **kwargs)
        assert [item.index for item in response.data] == list(range(len(TEXTS)))
        return response, [item.embedding for item in response.data]

    response, queries = vectors(model="tiny:query")  # the client asks for base64 by default
    assert_same_vectors(queries, expected["query"])
    assert_same_vectors(vectors(model="tiny:document")[1], expected["document"])
    assert_same_vectors(vectors(model="tiny")[1], expected["document"])  # the documented default side
    assert_same_vectors(vectors(model="tiny:query", encoding_format="float")[1], expected["query"])
    assert_same_vectors(
        vectors(model="tiny", extra_body={"input_type": "query", "num_thinking_steps": 2})[1], expected["query_k2"]
    )
    assert_same_vectors(vectors(model="tiny", extra_body={"num_thinking_steps": 2})[1], expected["document_k2"])
    assert_same_vectors(
        vectors(model="tiny:query", extra_body={"instruction": "find theorems"})[1], expected["query_task"]
    )
    assert_same_vectors(vectors(model=tiny_model[0].base_model + ":query")[1], expected["query"])  # provenance name

    counter = TokenCounter(tiny_model[0])
    assert response.usage.prompt_tokens == response.usage.total_tokens
    assert response.usage.prompt_tokens == sum(counter.count(TEXTS, tiny_model.prompts["query"]))
    assert response.model == "tiny:query"


async def test_async_openai_client_and_raw_base64_are_little_endian_float32(server, expected, tiny_model):
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    responses = await asyncio.gather(
        *(client.embeddings.create(model="tiny:query", input=text, encoding_format="float") for text in TEXTS)
    )
    assert_same_vectors([r.data[0].embedding for r in responses], expected["query"])
    await client.close()

    async with httpx.AsyncClient(base_url=server.url, headers=AUTH) as raw:
        body = (await raw.post("/v1/embeddings", json={"input": TEXTS[0], "encoding_format": "base64"})).json()
    decoded = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(decoded, tiny_model.encode_document(TEXTS[:1])[0])  # one text alone: the same bits


def test_langchain_openai_embeddings_picks_the_side_by_model_name(server, expected):
    from langchain_openai import OpenAIEmbeddings

    def embeddings(model: str) -> OpenAIEmbeddings:
        return OpenAIEmbeddings(
            model=model, base_url=f"{server.url}/v1", api_key=API_KEY, check_embedding_ctx_length=False, max_retries=0
        )

    assert_same_vectors(embeddings("tiny:query").embed_documents(TEXTS), expected["query"])
    assert_same_vectors([embeddings("tiny:query").embed_query(TEXTS[0])], expected["query"][:1])
    assert_same_vectors(embeddings("tiny").embed_documents(TEXTS), expected["document"])

    async def async_documents() -> list[list[float]]:
        async with httpx.AsyncClient() as http:  # closed here: OpenAIEmbeddings never closes its own
            return await OpenAIEmbeddings(
                model="tiny:document",
                base_url=f"{server.url}/v1",
                api_key=API_KEY,
                check_embedding_ctx_length=False,
                http_async_client=http,
            ).aembed_documents(TEXTS)

    assert_same_vectors(asyncio.run(async_documents()), expected["document"])


def test_llama_index_openai_embedding_takes_a_custom_model_name(server, expected):
    from llama_index.embeddings.openai import OpenAIEmbedding

    # OpenAIEmbedding(model=...) accepts only OpenAI's names; model_name= is sent as is, for both sides.
    queries = OpenAIEmbedding(model_name="tiny:query", api_base=f"{server.url}/v1", api_key=API_KEY, max_retries=0)
    documents = OpenAIEmbedding(model_name="tiny", api_base=f"{server.url}/v1", api_key=API_KEY, max_retries=0)

    assert_same_vectors([queries.get_query_embedding(text) for text in TEXTS], expected["query"])
    assert_same_vectors(documents.get_text_embedding_batch(TEXTS), expected["document"])

    async def async_query() -> list[float]:
        async with httpx.AsyncClient() as http:  # closed here: OpenAIEmbedding never closes its own
            embedding = OpenAIEmbedding(
                model_name="tiny:query", api_base=f"{server.url}/v1", api_key=API_KEY, async_http_client=http
            )
            return await embedding.aget_query_embedding(TEXTS[1])

    assert_same_vectors([asyncio.run(async_query())], expected["query"][1:2])


def test_tei_clients_pick_the_side_with_prompt_name(server, expected, monkeypatch):
    from huggingface_hub import InferenceClient, constants

    # HF_HUB_OFFLINE (set for the whole suite) makes huggingface_hub refuse every URL, a local server's too.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    # What langchain_huggingface.HuggingFaceEndpointEmbeddings(model=URL, model_kwargs={"prompt_name": ...}) calls.
    client = InferenceClient(model=server.url, token=API_KEY)
    assert_same_vectors(client.feature_extraction(TEXTS, prompt_name="query"), expected["query"])
    assert_same_vectors(client.feature_extraction(TEXTS, prompt_name="document"), expected["document"])
    assert_same_vectors(client.feature_extraction(TEXTS), expected["document"])
    assert_same_vectors(client.feature_extraction(TEXTS[0], normalize=True, truncate=False), expected["document"][:1])

    with httpx.Client(base_url=server.url, headers=AUTH) as raw:
        body = {"inputs": TEXTS, "input_type": "query", "num_thinking_steps": 2}
        assert_same_vectors(raw.post("/embed", json=body).json(), expected["query_k2"])
        info = raw.get("/info").json()
    assert info["model_id"] == "tiny"
    assert info["laser"]["dimension"] == len(expected["query"][0])
    assert info["prompts"]["query"] == query_prompt()


def test_models_and_info_describe_the_provenance(server, tiny_model):
    from laser_integrations.embedder import EncodeOptions, LocalEncoder

    local = LocalEncoder(tiny_model).provenance(EncodeOptions())
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        models = client.get("/v1/models").json()
        one = client.get("/v1/models/tiny:query")
        missing = client.get("/v1/models/other")
    assert [card["id"] for card in models["data"]] == ["tiny", "tiny:query", "tiny:document"]
    laser = models["data"][0]["laser"]
    assert {name: laser[name] for name in local.CHECKED} == {name: getattr(local, name) for name in local.CHECKED}
    assert one.status_code == 200 and one.json()["id"] == "tiny:query"
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


def test_token_counts_match_what_the_model_reads(tiny_model):
    counter = TokenCounter(tiny_model[0])
    module = tiny_model[0]
    for prompt in ("", tiny_model.prompts["query"]):
        features = module.preprocess(TEXTS, prompt=prompt)
        assert counter.count(TEXTS, prompt) == features["attention_mask"].sum(dim=1).tolist()


# -- bad input: status, OpenAI error body, and the server keeps serving ----------------------------------------

LONG_TEXT = "word " * 700
BAD_REQUESTS = [
    # (id, method, path, json body or raw bytes, headers, status, param, code)
    ("empty list", "POST", "/v1/embeddings", {"input": []}, AUTH, 400, "input", None),
    ("non-string item", "POST", "/v1/embeddings", {"input": ["ok", 3.5]}, AUTH, 400, "input", None),
    ("null item", "POST", "/v1/embeddings", {"input": ["ok", None]}, AUTH, 400, "input", None),
    ("token ids", "POST", "/v1/embeddings", {"input": [[1, 2, 3]]}, AUTH, 400, "input", None),
    ("missing input", "POST", "/v1/embeddings", {"model": "tiny"}, AUTH, 400, "input", None),
    ("K < 1", "POST", "/v1/embeddings", {"input": "a", "num_thinking_steps": 0}, AUTH, 400,
     "num_thinking_steps", None),
    ("K not int", "POST", "/v1/embeddings", {"input": "a", "num_thinking_steps": "3"}, AUTH, 400,
     "num_thinking_steps", None),
    ("K over limit", "POST", "/v1/embeddings", {"input": "a", "num_thinking_steps": 9}, AUTH, 400,
     "num_thinking_steps", None),
    ("unknown field", "POST", "/v1/embeddings", {"input": "a", "num_thinking_step": 2}, AUTH, 400,
     "num_thinking_step", None),
    ("bad encoding", "POST", "/v1/embeddings", {"input": "a", "encoding_format": "int8"}, AUTH, 400,
     "encoding_format", None),
    ("bad side", "POST", "/v1/embeddings", {"input": "a", "input_type": "passage"}, AUTH, 400, "input_type", None),
    ("conflicting sides", "POST", "/v1/embeddings", {"input": "a", "model": "tiny:query", "input_type": "document"},
     AUTH, 400, "input_type", None),
    ("instruction on documents", "POST", "/v1/embeddings", {"input": "a", "instruction": "x"}, AUTH, 400,
     "instruction", None),
    ("dimensions", "POST", "/v1/embeddings", {"input": "a", "dimensions": 8}, AUTH, 400, "dimensions", None),
    ("not json", "POST", "/v1/embeddings", b"{not json", AUTH, 400, None, None),
    ("not an object", "POST", "/v1/embeddings", [1, 2], AUTH, 400, None, None),
    ("too many inputs", "POST", "/v1/embeddings", {"input": ["a"] * 9}, AUTH, 413, "input", "too_many_inputs"),
    ("too long", "POST", "/v1/embeddings", {"input": ["a", LONG_TEXT]}, AUTH, 413, "input[1]", "input_too_long"),
    ("body too large", "POST", "/v1/embeddings", {"input": ["x" * 70_000]}, AUTH, 413, None, "request_too_large"),
    ("no key", "POST", "/v1/embeddings", {"input": "a"}, {}, 401, None, "invalid_api_key"),
    ("wrong key", "POST", "/v1/embeddings", {"input": "a"}, {"Authorization": "Bearer nope"}, 401, None,
     "invalid_api_key"),
    ("not bearer", "GET", "/v1/models", None, {"Authorization": f"Basic {API_KEY}"}, 401, None, "invalid_api_key"),
    ("unknown model", "POST", "/v1/embeddings", {"input": "a", "model": "gpt-4"}, AUTH, 404, "model",
     "model_not_found"),
    ("unknown route", "GET", "/v2/nothing", None, AUTH, 404, None, "not_found"),
    ("wrong method", "GET", "/v1/embeddings", None, AUTH, 405, None, "method_not_allowed"),
    ("tei empty", "POST", "/embed", {"inputs": []}, AUTH, 400, "inputs", None),
    ("tei prompt name", "POST", "/embed", {"inputs": "a", "prompt_name": "passage"}, AUTH, 400, "prompt_name", None),
    ("tei left truncation", "POST", "/embed", {"inputs": "a", "truncation_direction": "left"}, AUTH, 400,
     "truncation_direction", None),
    ("tei too long", "POST", "/", {"inputs": LONG_TEXT}, AUTH, 413, "inputs[0]", "input_too_long"),
    ("tei no key", "POST", "/embed", {"inputs": "a"}, {}, 401, None, "invalid_api_key"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "param", "code"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_bad_requests_get_their_status_and_an_openai_error_body(server, method, path, body, headers, status, param,
                                                                 code):  # fmt: skip
    with httpx.Client(base_url=server.url) as client:
        if isinstance(body, bytes):
            raw_headers = {**headers, "content-type": "application/json"}
            response = client.request(method, path, content=body, headers=raw_headers)
        else:
            response = client.request(method, path, json=body, headers=headers)
        health = client.get("/health")

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"] and error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_truncate_cuts_long_inputs_as_the_model_does(server, tiny_model):
    texts = ["short", LONG_TEXT]
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        openai = client.post("/v1/embeddings", json={"input": texts, "truncate": True, "model": "tiny:query"}).json()
        tei = client.post("/embed", json={"inputs": texts, "truncate": True}).json()
    assert openai["usage"]["prompt_tokens"] <= 2 * tiny_model[0].max_seq_length
    assert_same_vectors([item["embedding"] for item in openai["data"]], tiny_model.encode_query(texts))
    assert_same_vectors(tei, tiny_model.encode_document(texts))


def test_health_is_open_and_everything_else_needs_the_key(server):
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/health").status_code == 200
        for path in ("/v1/models", "/info", "/metrics"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers=AUTH).status_code == 200, path


def test_metrics_count_requests_by_route_and_status(server):
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        client.post("/v1/embeddings", json={"input": TEXTS[:2]})
        client.post("/v1/embeddings", json={"input": []})
        text = client.get("/metrics").text
    assert 'laser_requests_total{method="POST",route="/v1/embeddings",status="200"}' in text
    assert 'laser_requests_total{method="POST",route="/v1/embeddings",status="400"}' in text
    for name in ("laser_request_duration_seconds", "laser_queue_wait_seconds", "laser_batch_size"):
        assert f"{name}_bucket" in text
    assert histogram_counts(text, "laser_batch_size")["+Inf"] >= 1


# -- load: one model, many callers ----------------------------------------------------------------------------

LOAD_TEXTS = [f"question {i}: why does {'the ' * (i % 7)}sky look blue at noon?" for i in range(64)]


async def test_64_concurrent_clients_get_exact_vectors_from_shared_forward_passes(tiny_model):
    """64 clients x 10 requests (one text each, both sides, K=3 and K=2): no error, every vector its in-process
    value, and the batch-size histogram shows coalescing."""
    reference = {
        ("query", 3): tiny_model.encode_query(LOAD_TEXTS),
        ("document", 3): tiny_model.encode_document(LOAD_TEXTS),
        ("query", 2): tiny_model.encode_query(LOAD_TEXTS, num_thinking_steps=2),
    }
    kinds = list(reference)
    settings = ServeSettings(served_model_name="tiny", max_batch_size=32, max_wait_ms=5)
    errors: list[str] = []
    results: dict[tuple[str, int], list[tuple[int, list[float]]]] = {kind: [] for kind in kinds}

    with ThreadedServer(create_app(tiny_model, settings)) as running:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=running.url, limits=limits, timeout=60) as client:

            async def one_client(number: int) -> None:
                for request in range(10):
                    index = (number * 10 + request) % len(LOAD_TEXTS)
                    side, steps = kinds[(number + request) % len(kinds)]
                    body = {"input": [LOAD_TEXTS[index]], "input_type": side, "num_thinking_steps": steps}
                    response = await client.post("/v1/embeddings", json=body)
                    if response.status_code != 200:
                        errors.append(f"{response.status_code}: {response.text[:200]}")
                        continue
                    results[(side, steps)].append((index, response.json()["data"][0]["embedding"]))

            await asyncio.wait_for(asyncio.gather(*(one_client(n) for n in range(64))), timeout=300)
            metrics = (await client.get("/metrics")).text

    assert errors == []
    assert sum(len(values) for values in results.values()) == 640
    for kind, values in results.items():
        indexes = [index for index, _ in values]
        assert_same_vectors([vector for _, vector in values], reference[kind][indexes])
    batches = histogram_counts(metrics, "laser_batch_size")
    assert batches["+Inf"] < 640, "every request ran alone"
    assert batches["+Inf"] > batches["1.0"], "no forward pass coalesced two requests"


def test_json_floats_round_trip_exactly(server, tiny_model):
    with httpx.Client(base_url=server.url, headers=AUTH) as client:
        text = client.post("/v1/embeddings", json={"input": TEXTS[:1], "encoding_format": "float"}).text
    vector = np.asarray(json.loads(text)["data"][0]["embedding"], dtype=np.float32)
    assert np.array_equal(vector, tiny_model.encode_document(TEXTS[:1])[0])


@pytest.mark.slow
async def test_smollm2_served_to_concurrent_openai_clients_matches_in_process(smollm2_dir):
    """The real SmolLM2 behind the server: 24 concurrent AsyncOpenAI calls, coalesced, each its in-process vector.

    (The 64 x 10 load test above runs on the tiny model: on this 2-core CPU, SmolLM2 embeds ~5-10 queries/s.)
    """
    from openai import AsyncOpenAI

    from laser_integrations import load_model

    model = load_model(str(smollm2_dir), device="cpu")
    queries = LOAD_TEXTS[:24]
    expected = model.encode_query(queries)
    with ThreadedServer(create_app(model, ServeSettings(served_model_name="smollm2"))) as running:
        async with AsyncOpenAI(base_url=f"{running.url}/v1", api_key="unused", max_retries=0, timeout=300) as client:
            responses = await asyncio.wait_for(
                asyncio.gather(*(client.embeddings.create(model="smollm2:query", input=q) for q in queries)), 300
            )
        async with httpx.AsyncClient(base_url=running.url) as raw:
            metrics = (await raw.get("/metrics")).text

    assert_same_vectors([response.data[0].embedding for response in responses], expected)
    batches = histogram_counts(metrics, "laser_batch_size")
    assert batches["+Inf"] > batches["1.0"], "no forward pass coalesced two requests"


def test_the_collection_window_grows_with_the_last_pass_up_to_a_cap(tiny_model):
    from laser_integrations.serving.app import MAX_ADAPTIVE_WAIT_MS

    state = create_app(tiny_model, ServeSettings(max_wait_ms=2, wait_fraction=0.05)).state.laser
    batcher = state.embedder.batcher
    state.embeddings_in_flight = 3
    for seconds, window in ((0.0, 2.0), (0.01, 2.0), (1.0, 50.0), (100.0, MAX_ADAPTIVE_WAIT_MS)):
        batcher.last_pass_seconds = seconds
        assert state.collection_window_ms() == pytest.approx(window)
    state.embeddings_in_flight = 1  # a lone client: nobody to wait for
    assert state.collection_window_ms() == 2.0
    fixed = create_app(tiny_model, ServeSettings(max_wait_ms=2, wait_fraction=0)).state.laser
    fixed.embedder.batcher.last_pass_seconds, fixed.embeddings_in_flight = 10.0, 3
    assert fixed.collection_window_ms() == 2.0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_inputs": True}, "max_inputs"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"wait_fraction": 2}, "wait_fraction"),
        ({"default_side": "passage"}, "default_side"),
        ({"api_key": ""}, "api_key"),
        ({"body_timeout": 0}, "body_timeout"),
    ],
)
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        ServeSettings(**settings)
