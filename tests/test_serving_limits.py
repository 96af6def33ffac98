"""``laser serve`` when one request tries to hurt the others: invalid Unicode, huge inputs, clients that leave,
bodies that are not JSON, and shutdown cutting a request off. All on the tiny model, on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laser_integrations.formatting import max_text_chars
from laser_integrations.serving.app import ServeSettings, create_app
from serving_support import ThreadedServer, assert_same_vectors, metric_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROUTES = ("/v1/embeddings", "/embed", "/")
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def server(tiny_model):
    app = create_app(tiny_model, ServeSettings(served_model_name="tiny", max_thinking_steps=4))
    with ThreadedServer(app) as running:
        yield running


def post_json(client: httpx.Client, path: str, body: object) -> httpx.Response:
    """POST ``body`` as JSON with ``\\ud800``-style escapes, which httpx's own encoder cannot write."""
    return client.post(path, content=json.dumps(body).encode(), headers=JSON)


def field(path: str) -> str:
    return "input" if path == "/v1/embeddings" else "inputs"


# -- 7: text that is not valid Unicode ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("truncate", [None, True, False])
def test_a_lone_surrogate_is_a_400_naming_the_item(server, path, truncate):
    body: dict[str, object] = {field(path): ["fine", "half a pair: \ud800 here"]}
    if truncate is not None:
        body["truncate"] = truncate
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = post_json(client, path, body)
        instruction = post_json(client, path, {field(path): "ok", "input_type": "query", "instruction": "\udfff"})
        health = client.get("/health")
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == field(path)
    assert error["message"].startswith(f"{field(path)}[1] holds a lone surrogate (U+D800) at character 13")
    assert instruction.status_code == 400 and instruction.json()["error"]["param"] == "instruction"
    assert health.status_code == 200


CHARACTERS = st.characters(codec=None, exclude_categories=())
SURROGATES = st.sampled_from("\ud800\udbff\udc00\udfff")
ANY_TEXT = st.lists(CHARACTERS, max_size=40).map("".join) | st.lists(CHARACTERS | SURROGATES, max_size=40).map("".join)
"""Any code points; half the texts may hold lone surrogates (Hypothesis's own text() never does)."""
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=6,
)
WELL_FORMED = {  # the right types, any text: these reach the tokenizer and the model
    "input_type": st.sampled_from(["query", "document"]),
    "num_thinking_steps": st.integers(1, 4),
    "instruction": ANY_TEXT,
    "truncate": st.booleans(),
    "model": st.sampled_from(["tiny", "tiny:query", "tiny:document"]) | ANY_TEXT,
    "user": ANY_TEXT,
}
TEI_ONLY = {"prompt_name": st.sampled_from(["query", "document"]) | ANY_TEXT, "normalize": st.booleans()}
TEXTS = ANY_TEXT | st.lists(ANY_TEXT, min_size=1, max_size=4)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, object]:
    path = draw(st.sampled_from(ROUTES))
    fields = dict(WELL_FORMED)
    if path == "/v1/embeddings":
        fields["encoding_format"] = st.sampled_from(["float", "base64"])
    else:
        del fields["model"], fields["user"]
        fields.update(TEI_ONLY)
    body = draw(st.fixed_dictionaries({field(path): TEXTS}, optional=fields))
    if draw(st.integers(0, 3)) == 0:  # sometimes anything at all: wrong types, unknown keys, no object
        junk = st.dictionaries(st.sampled_from([*fields, field(path)]) | ANY_TEXT, JSON_VALUES, max_size=3)
        return path, draw(junk.map(lambda extra: {**body, **extra}) | JSON_VALUES)
    return path, body


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(request=requests())
def test_no_request_body_gets_a_5xx_and_the_server_keeps_serving(server, request):
    path, body = request
    with httpx.Client(base_url=server.url, timeout=30) as client:
        response = post_json(client, path, body)
        assert response.status_code < 500, response.text
        assert response.headers["content-type"] == "application/json"
        if response.status_code != 200:
            assert set(response.json()["error"]) == {"message", "type", "param", "code"}
        assert client.post("/embed", json={"inputs": "still serving"}).status_code == 200


# -- 8: huge inputs are bounded before any tokenizer reads them -------------------------------------------------


def test_a_15_mb_input_is_refused_within_a_second(server):
    body = b'{"input": "' + b"word " * 3_000_000 + b'"}'
    with httpx.Client(base_url=server.url, timeout=60) as client:
        started = time.perf_counter()
        response = client.post("/v1/embeddings", content=body, headers=JSON)
        elapsed = time.perf_counter() - started
    assert response.status_code == 413, response.text
    assert response.json()["error"]["param"] == "input[0]"
    assert "15000000 characters" in response.json()["error"]["message"]
    print(f"15 MB input: 413 in {elapsed * 1000:.0f} ms")
    assert elapsed <= 1.0, f"the 413 took {elapsed:.2f} s"


def test_truncate_cuts_a_text_over_the_character_cap_as_the_model_cuts_the_whole(server, tiny_model):
    cap = max_text_chars(tiny_model[0].max_seq_length)
    text = " ".join(f"w{i}" for i in range(cap // 2))  # ~3x the cap in characters
    assert len(text) > cap
    with httpx.Client(base_url=server.url, timeout=60) as client:
        vectors = client.post("/embed", json={"inputs": [text, "short"], "truncate": True}).json()
    assert_same_vectors(vectors, tiny_model.encode_document([text, "short"]))


# -- 9: a client that leaves stops costing forward passes -------------------------------------------------------


def test_a_client_that_disconnects_cancels_its_texts_not_yet_begun(tiny_model, monkeypatch):
    app = create_app(tiny_model, ServeSettings(served_model_name="tiny", max_batch_size=2, max_wait_ms=0))
    batcher = app.state.laser.embedder.batcher
    embedded: list[int] = []
    run_batch = batcher._run_batch

    def slow_run_batch(key, texts):
        time.sleep(0.05)  # 50 passes of 2 texts: 2.5 s for the whole request
        embedded.append(len(texts))
        return run_batch(key, texts)

    monkeypatch.setattr(batcher, "_run_batch", slow_run_batch)
    body = json.dumps({"input": [f"text {i}" for i in range(100)]}).encode()
    with ThreadedServer(app) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as raw:
            raw.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.4)
        time.sleep(0.3)  # the server notices, cancels what has not started
        after_leaving = sum(embedded)
        started = time.perf_counter()
        next_response = httpx.post(f"{running.url}/v1/embeddings", json={"input": "next"}, timeout=30)
        waited = time.perf_counter() - started
        time.sleep(0.5)
        metrics = httpx.get(f"{running.url}/metrics").text
    print(f"{after_leaving} of 100 abandoned texts embedded; the next request waited {waited * 1000:.0f} ms")
    assert next_response.status_code == 200
    assert 0 < after_leaving < 40, f"{after_leaving} of the 100 abandoned texts were embedded"
    assert sum(embedded) == after_leaving + 1, "abandoned texts kept being embedded"
    assert waited < 1.0, f"the next request waited {waited:.2f} s"
    assert metric_value(metrics, 'laser_requests_total{method="POST",route="/v1/embeddings",status="499"}') == 1


# -- 12: bodies that are not JSON, and requests cut off by shutdown ----------------------------------------------


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_a_body_not_labelled_json_gets_a_415_saying_what_to_send(server, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(f"{server.url}/v1/embeddings", content=b'{"input": "a"}', headers=headers)
    assert response.status_code == 415, response.text
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    labelled = {"content-type": "application/json; charset=utf-8"}
    assert httpx.post(f"{server.url}/embed", content=b'{"inputs": "a"}', headers=labelled).status_code == 200


def test_a_request_cut_off_by_the_graceful_timeout_gets_a_json_503(tiny_model):
    app = create_app(tiny_model, ServeSettings(max_wait_ms=20_000, max_batch_size=64))
    result: list[httpx.Response] = []
    running = ThreadedServer(app, graceful_timeout=0.5).__enter__()
    try:
        sender = threading.Thread(
            target=lambda: result.append(httpx.post(f"{running.url}/embed", json={"inputs": "a"}, timeout=30))
        )
        sender.start()
        deadline = time.monotonic() + 10
        while app.state.laser.embeddings_in_flight < 1:
            assert time.monotonic() < deadline, "the request never got in flight"
            time.sleep(0.02)
    finally:
        running.stop()
    sender.join(timeout=30)
    assert result and result[0].status_code == 503, result
    assert result[0].headers["content-type"] == "application/json"
    assert result[0].json()["error"]["code"] == "shutting_down"
