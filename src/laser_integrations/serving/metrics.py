"""Prometheus metrics of one ``laser serve`` app: requests, latency, and how well requests coalesce.

Built on ``prometheus_client`` with one registry per app (never the process-global one), so several
apps in one process (tests, a Ray Serve replica next to other code) keep separate counts. ``GET /metrics``
serves :meth:`ServerMetrics.exposition` in the Prometheus text format.

>>> metrics = ServerMetrics()
>>> metrics.batch_size.observe(8)
>>> b'laser_batch_size_count 1.0' in metrics.exposition()
True
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of :meth:`ServerMetrics.exposition`."""


class ServerMetrics:
    """The counters and histograms one app records (thread-safe: the batcher's worker records too).

    - ``laser_requests_total{route, method, status}``: HTTP requests answered.
    - ``laser_request_duration_seconds{route}``: time from request to response.
    - ``laser_requests_in_flight``: requests being handled now.
    - ``laser_batch_size``: texts per forward pass (> 1 when requests coalesce).
    - ``laser_batch_requests``: requests sharing one forward pass.
    - ``laser_queue_wait_seconds``: time a request waited in the micro-batcher before its pass started.
    - ``laser_batch_duration_seconds``: time of one forward pass (one coalesced batch).
    - ``laser_inputs_total{side}``, ``laser_prompt_tokens_total{side}``: texts and tokens embedded.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "laser_requests", "HTTP requests by route, method and status", ["route", "method", "status"], registry=r
        )
        self.latency = Histogram(
            "laser_request_duration_seconds", "Request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("laser_requests_in_flight", "Requests being handled", registry=r)
        self.batch_size = Histogram(
            "laser_batch_size",
            "Texts per forward pass (coalesced requests share one)",
            buckets=SIZE_BUCKETS,
            registry=r,
        )
        self.batch_requests = Histogram(
            "laser_batch_requests", "Requests sharing one forward pass", buckets=SIZE_BUCKETS, registry=r
        )
        self.queue_wait = Histogram(
            "laser_queue_wait_seconds",
            "Time a request waited in the micro-batcher before its forward pass started",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.batch_duration = Histogram(
            "laser_batch_duration_seconds", "Time of one forward pass", buckets=LATENCY_BUCKETS, registry=r
        )
        self.inputs = Counter("laser_inputs", "Texts embedded", ["side"], registry=r)
        self.tokens = Counter("laser_prompt_tokens", "Tokens of the formatted texts embedded", ["side"], registry=r)

    def exposition(self) -> bytes:
        """All metrics in the Prometheus text format."""
        return generate_latest(self.registry)
