"""``laser serve`` as a process: both model forms, one-line user errors, and SIGTERM draining in-flight requests."""

from __future__ import annotations

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
        (["serve", "no-such-model", "--port", "0"], "unknown model"),
    ],
)
def test_user_errors_exit_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("laser serve: error:") and message in err[0], err


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
        env = {**os.environ, "LASER_API_KEY": ""}
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
