"""``laser serve`` as a process: both model forms, one-line user errors, and SIGTERM draining in-flight requests."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest

from laser_integrations.cli import build_parser, main
from laser_integrations.cli.serve import model_spec
from serving_support import assert_same_vectors, metric_value

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_model_is_the_positional_argument_or_model_option():
    parser = build_parser()
    assert model_spec(parser.parse_args(["serve", "smollm2"])) == "smollm2"
    assert model_spec(parser.parse_args(["serve", "--model", "smollm2", "--port", "9"])) == "smollm2"
    assert model_spec(parser.parse_args(["serve", "smollm2", "-m", "smollm2"])) == "smollm2"
    args = parser.parse_args(["serve", "-m", "smollm2", "--api-key", "k", "--max-batch-size", "1", "--default-side",
                              "query", "--auto-truncate"])  # fmt: skip
    assert (args.api_key, args.max_batch_size, args.default_side, args.auto_truncate) == ("k", 1, "query", True)
    assert args.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve"], "the model is missing"),
        (["serve", "smollm2", "--model", "laser-qwen3"], "two models given"),
        (["serve", "smollm2", "--max-batch-size", "0"], "max_batch_size must be a positive integer"),
        (["serve", "smollm2", "--max-wait-ms", "-1"], "max_wait_ms"),
        (["serve", "smollm2", "--max-request-mb", "0"], "--max-request-mb"),
        (["serve", "smollm2", "--header-timeout", "0"], "header_timeout"),
        (["serve", "smollm2", "--body-timeout", "-1"], "body_timeout"),
        (["serve", "smollm2", "--max-connections", "0"], "max_connections"),
        (["serve", "no-such-model", "--port", "0"], "unknown model"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("laser serve: error:") and message in err[0], err


@pytest.mark.parametrize("source", ["flag", "env"])
def test_an_empty_api_key_is_refused_not_an_open_server(source, monkeypatch, capsys):
    monkeypatch.delenv("LASER_API_KEY", raising=False)
    argv = ["serve", "no-such-model", "--port", "0"]
    if source == "flag":
        argv += ["--api-key", ""]
    else:
        monkeypatch.setenv("LASER_API_KEY", " ")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("laser serve: error:") and "is empty (an unset variable?)" in err[0]
    assert ("--api-key" if source == "flag" else "$LASER_API_KEY") in err[0]


def test_the_api_key_comes_from_the_environment_and_the_help_prefers_it(monkeypatch, capsys):
    from laser_integrations.cli.serve import api_key

    monkeypatch.setenv("LASER_API_KEY", "from-env")
    assert api_key(build_parser().parse_args(["serve", "smollm2"])) == "from-env"
    assert api_key(build_parser().parse_args(["serve", "smollm2", "--api-key", "flag"])) == "flag"
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "prefer setting $LASER_API_KEY" in " ".join(capsys.readouterr().out.split())


def test_a_busy_port_is_a_user_error_before_the_model_loads(capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "no-such-model", "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


class ServerProcess:
    """``python -m laser_integrations.cli serve ... --port 0``, its stderr read by a thread, killed if left."""

    def __init__(self, *args: str) -> None:
        env = {name: value for name, value in os.environ.items() if name != "LASER_API_KEY"}
        command = [sys.executable, "-m", "laser_integrations.cli", "serve", *args, "--port", "0", "--threads", "1"]
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.Queue[str] = queue.Queue()
        self.log: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def url(self, timeout: float = 120) -> str:
        """Wait for the announcement line and return the server's URL."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                if self.process.poll() is not None:
                    break
                continue
            self.log.append(line)
            found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
            if found:
                return found.group(1)
        raise AssertionError(f"laser serve did not announce itself in {timeout} s: {''.join(self.log)}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)
        self.reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(tiny_dirs, tiny_model):
    texts = [f"request {i}: why is the sky blue at noon?" for i in range(6)]
    server = ServerProcess(str(tiny_dirs["qwen3"]), "--max-wait-ms", "2000", "--max-batch-size", "64")
    try:
        url = server.url()
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while client.get("/health").status_code != 200:  # the socket listens before the app starts
                assert time.monotonic() < deadline
                time.sleep(0.1)

        results: dict[int, httpx.Response | BaseException] = {}

        def send(index: int) -> None:
            try:
                results[index] = httpx.post(f"{url}/v1/embeddings", json={"input": [texts[index]]}, timeout=60)
            except BaseException as error:  # noqa: BLE001 - asserted below
                results[index] = error

        senders = [threading.Thread(target=send, args=(index,)) for index in range(len(texts))]
        for sender in senders:
            sender.start()
        with httpx.Client(base_url=url, timeout=10) as client:  # wait until all six wait in the batcher
            deadline = time.monotonic() + 20
            while (metric_value(client.get("/metrics").text, "laser_requests_in_flight") or 0) < len(texts) + 1:
                assert time.monotonic() < deadline, "the requests never got in flight"
                time.sleep(0.05)
        server.process.send_signal(signal.SIGTERM)
        for sender in senders:
            sender.join(timeout=60)

        assert server.process.wait(timeout=30) == 0
        responses = [results[index] for index in range(len(texts))]
        assert all(isinstance(r, httpx.Response) and r.status_code == 200 for r in responses), responses
        vectors = [r.json()["data"][0]["embedding"] for r in responses]  # type: ignore[union-attr]
        assert_same_vectors(vectors, [tiny_model.encode_document([text])[0] for text in texts])
    finally:
        server.close()


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or ``timeout`` runs out)."""
    sock.settimeout(timeout)
    received = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return received


def test_slow_headers_slow_bodies_and_connections_over_the_cap_are_cut_off(tiny_dirs):
    server = ServerProcess(
        str(tiny_dirs["qwen3"]), "--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1",
        "--max-connections", "3",
    )  # fmt: skip
    try:
        url = server.url()
        port = int(url.rsplit(":", 1)[1])
        with httpx.Client(base_url=url, timeout=10) as client:
            deadline = time.monotonic() + 30
            while client.get("/health").status_code != 200:  # the socket listens before the app starts
                assert time.monotonic() < deadline
                time.sleep(0.1)

        # Half a request's headers, then nothing: closed once the header timeout runs out.
        with socket.create_connection(("127.0.0.1", port)) as half_open:
            half_open.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            started = time.monotonic()
            assert read_response(half_open, 10) == b""
            assert 0.5 < time.monotonic() - started < 5

        # A whole request, then an idle keep-alive connection: answered, then closed after the keep-alive timeout.
        with socket.create_connection(("127.0.0.1", port)) as idle_after:
            idle_after.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            started = time.monotonic()
            answer = read_response(idle_after, 10)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}'), answer
            assert 0.5 < time.monotonic() - started < 5

        # Headers, then half the body: 408 once the body timeout runs out, and closed.
        with socket.create_connection(("127.0.0.1", port)) as slow_body:
            slow_body.sendall(b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{\"inputs\": ")  # fmt: skip
            answer = read_response(slow_body, 10)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert b'"code":"body_timeout"' in answer

        # Three idle connections fill the cap: a fourth gets a JSON 503; once one closes, requests are served.
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(3)]
        try:
            time.sleep(0.2)
            with socket.create_connection(("127.0.0.1", port)) as over:
                over.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                refused = read_response(over, 10)
        finally:
            for sock in idle:
                sock.close()
        assert refused.startswith(b"HTTP/1.1 503"), refused
        assert b'"code":"too_many_connections"' in refused
        time.sleep(0.3)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        server.close()


def one_text_latencies(url: str, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for number in range(count):
            started = time.perf_counter()
            assert client.post("/v1/embeddings", json={"input": f"why is the sky blue {number}"}).status_code == 200
            latencies.append(time.perf_counter() - started)
    return latencies


def test_one_text_requests_keep_their_latency_while_4_mb_truncated_requests_run(tiny_dirs):
    """Issue 19: a 4 MB truncated request took 27 s and held 1-text requests up to 15 s. Here 4 MB truncated
    requests go back to back while 1-text requests are timed (the server in its own process, as in use)."""
    server = ServerProcess(str(tiny_dirs["qwen3"]))
    try:
        url = server.url()
        one_text_latencies(url, 5)  # warm up (and wait for the app: the socket listens before it starts)
        idle = one_text_latencies(url, 60)
        big = json.dumps({"input": "word " * 800_000, "truncate": True}).encode()
        done: list[float] = []
        measuring = threading.Event()
        measuring.set()

        def send_big() -> None:
            with httpx.Client(base_url=url, timeout=120) as client:
                while measuring.is_set() and len(done) < 200:
                    started = time.perf_counter()
                    response = client.post("/v1/embeddings", content=big, headers={"content-type": "application/json"})
                    assert response.status_code == 200
                    done.append(time.perf_counter() - started)

        sender = threading.Thread(target=send_big)
        sender.start()
        try:
            loaded = one_text_latencies(url, 60)
        finally:
            measuring.clear()
            sender.join(timeout=120)
    finally:
        server.close()
    p95 = {name: float(np.percentile(values, 95)) for name, values in (("idle", idle), ("loaded", loaded))}
    print(f"p95 idle {p95['idle'] * 1000:.1f} ms, loaded {p95['loaded'] * 1000:.1f} ms; {len(done)} 4 MB requests, "
          f"max {max(done):.2f} s")  # fmt: skip
    assert done and max(done) <= 2.0, f"a 4 MB truncated request took {max(done):.2f} s"
    # 2x, with 100 ms of slack for a shared 2-core machine (benchmarks/serve.py --big-input-mb 4 has the figure).
    assert p95["loaded"] <= 2 * p95["idle"] + 0.1, p95
