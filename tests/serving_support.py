"""What the ``laser serve`` tests share: a uvicorn server in a thread on 127.0.0.1, and vector comparisons."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

import numpy as np
import uvicorn

API_KEY = "test-key-1234"


class ThreadedServer:
    """Run an ASGI app with uvicorn in a background thread on a free 127.0.0.1 port (a context manager).

    Leaving the block stops it the way SIGTERM would (``should_exit``: in-flight requests finish, then the
    app's lifespan shutdown runs) and joins the thread, within bounded time.
    """

    def __init__(self, app: object, *, graceful_timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_config=None,  # leave the test process's logging alone
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=graceful_timeout,
            timeout_keep_alive=60,  # a loaded test machine must not race the server closing idle connections
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                self.stop()
                raise RuntimeError("the test server did not start within 30 s")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
        assert not self.thread.is_alive(), "the test server did not stop within 30 s"


def cosines(a: Sequence[Sequence[float]] | np.ndarray, b: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert x.shape == y.shape, (x.shape, y.shape)
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


def assert_same_vectors(a: object, b: object, minimum: float = 0.99999) -> None:
    values = cosines(a, b)  # type: ignore[arg-type]
    assert values.min() >= minimum, f"min cosine {values.min():.7f} < {minimum}"


def histogram_counts(metrics_text: str, name: str) -> dict[str, float]:
    """``{le: cumulative count}`` of an unlabeled Prometheus histogram, from the text exposition."""
    counts = {}
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            counts[le] = float(line.rsplit(" ", 1)[1])
    return counts


def metric_value(metrics_text: str, sample: str) -> float | None:
    """The value of one sample line, e.g. ``laser_requests_in_flight``."""
    for line in metrics_text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return None
