"""What ``laser serve`` lets a request do: names, sides, limits, batching, the API key and the body timeout.

:class:`ServeSettings` is what the app reads (every ``laser serve`` option but the connection-level ones,
which :class:`~laser_integrations.serving.connections.ConnectionLimits` holds, since uvicorn enforces them).

>>> ServeSettings(max_batch_size=16).max_wait_ms
2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from laser_integrations.serving.schemas import SIDES, Side
from laser_integrations.validation import non_negative_number, positive_int

MAX_ADAPTIVE_WAIT_MS = 500.0
"""The longest collection window :attr:`ServeSettings.wait_fraction` may choose."""


@dataclass(frozen=True)
class ServeSettings:
    """How the server treats requests (the ``laser serve`` options).

    Example:
        >>> ServeSettings(api_key="secret", max_batch_size=16).default_side
        'document'
    """

    served_model_name: str | None = None
    """The name clients send as ``model`` (default: the model's provenance name). The provenance name is
    accepted too, and either with a ``:query`` or ``:document`` suffix."""
    api_key: str | None = field(default=None, repr=False)
    """Require ``Authorization: Bearer <api_key>`` on every route but ``/health`` (``None``: open)."""
    max_batch_size: int = 32
    """Texts per forward pass; concurrent requests are coalesced up to this many (1: no coalescing). A request
    with more texts is submitted in chunks of this size, so a client that leaves cancels the chunks not begun."""
    max_wait_ms: float = 2.0
    """How long the micro-batcher collects concurrent requests before a forward pass (at least)."""
    wait_fraction: float = 0.05
    """While other embedding requests are in flight, collect for up to this fraction of the last forward pass's
    time, when that is longer than ``max_wait_ms`` (capped at :data:`MAX_ADAPTIVE_WAIT_MS`). The clients a pass
    answers send their next requests a few milliseconds after it ends; without this they miss the next pass and
    requests settle into two cohorts that alternate in half-full passes. A lone client never waits for it.
    ``0`` turns it off."""
    max_inputs: int = 2048
    """Most texts one request may carry (413 above; 2048 is OpenAI's own limit)."""
    max_thinking_steps: int = 32
    """Largest ``num_thinking_steps`` a request may ask for (400 above): K is compute the client chooses."""
    default_side: Side = "document"
    """The side of a request that names none (``input_type``, ``prompt_name`` or a model-name suffix)."""
    auto_truncate: bool = False
    """Cut over-long inputs at ``max_seq_length`` tokens instead of answering 413 (a request's ``truncate``
    overrides it)."""
    max_request_bytes: int = 16 * 2**20
    """Largest request body (413 above)."""
    body_timeout: float = 30.0
    """Seconds a request's body may take to arrive once its headers have (408 and the connection closed
    after)."""

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_inputs", "max_thinking_steps", "max_request_bytes"):
            positive_int(name, getattr(self, name))
        non_negative_number("max_wait_ms", self.max_wait_ms)
        if not 0 <= self.wait_fraction <= 1:
            raise ValueError(f"wait_fraction must be between 0 and 1, got {self.wait_fraction!r}")
        if not 0 < self.body_timeout < math.inf:
            raise ValueError(f"body_timeout must be > 0 seconds, got {self.body_timeout!r}")
        if self.default_side not in SIDES:
            raise ValueError(f"default_side must be 'query' or 'document', got {self.default_side!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key is empty; pass None for an open server")
