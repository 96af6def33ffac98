"""``laser serve`` as a Ray Serve deployment: two replicas on a small local Ray cluster, the same vectors."""

from __future__ import annotations

import socket

import httpx
import pytest

from serving_support import API_KEY, assert_same_vectors

ray = pytest.importorskip("ray")

pytestmark = [
    pytest.mark.slow,  # a local Ray cluster takes ~30 s to start and stop
    pytest.mark.usefixtures("one_torch_thread"),
    # Ray's own modules use pydantic and protobuf APIs their authors have been warned about.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:ray"),
    pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince20"),
    pytest.mark.filterwarnings("ignore::FutureWarning:ray"),
]

TEXTS = ["why is the sky blue", "Rayleigh scattering of sunlight", "what is python", "photosynthesis and glucose"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def ray_url(tiny_dirs):
    from ray import serve

    from laser_integrations.serving.app import ServeSettings
    from laser_integrations.serving.ray_serve import deployment

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        settings = ServeSettings(served_model_name="tiny", api_key=API_KEY)
        app = deployment(str(tiny_dirs["qwen3"]), replicas=2, settings=settings, num_cpus=1, torch_threads=1)
        serve.run(app, name="laser", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_two_replicas_serve_the_in_process_vectors(ray_url, tiny_model):
    from ray import serve

    status = serve.status().applications["laser"]
    assert status.status == "RUNNING"
    replicas = status.deployments["laser-serve"].replica_states
    assert replicas.get("RUNNING") == 2, replicas

    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=ray_url, headers=headers, timeout=60) as client:
        for _ in range(4):  # the proxy spreads these over both replicas
            queries = client.post("/v1/embeddings", json={"input": TEXTS, "model": "tiny:query"}).json()
            assert_same_vectors([item["embedding"] for item in queries["data"]], tiny_model.encode_query(TEXTS))
            documents = client.post("/embed", json={"inputs": TEXTS}).json()
            assert_same_vectors(documents, tiny_model.encode_document(TEXTS))
        assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/info").json()["laser"]["served_model_name"] == "tiny"
