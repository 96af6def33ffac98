"""The server's side of one model: the adapters' embedder with measured batches, and a token counter.

:class:`ServingEncoder` is :class:`~laser_integrations.embedder.LocalEncoder` (same sides, options,
validation and micro-batching) whose batcher also records batch sizes and queue waits. :class:`TokenCounter`
counts the tokens of the formatted texts, for ``usage`` and the length limit, with its own copy of the
tokenizer so that counting never touches the one the model's worker thread is using.
"""

from __future__ import annotations

import copy
import threading
import time
import weakref
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from laser_integrations.batching import MicroBatcher
from laser_integrations.embedder import LocalEncoder, model_lock

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from laser_integrations.module import LatentThinkingEmbedding
    from laser_integrations.serving.metrics import ServerMetrics


class MeasuredBatcher(MicroBatcher[Any, Any]):
    """A :class:`~laser_integrations.batching.MicroBatcher` that reports each coalesced batch to the metrics."""

    def __init__(self, *args: Any, metrics: ServerMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._submitted: weakref.WeakKeyDictionary[Future[Any], float] = weakref.WeakKeyDictionary()
        self._submitted_lock = threading.Lock()
        self.last_pass_seconds = 0.0
        """How long the latest coalesced batch took (the server sizes its collection window on it)."""

    def submit(self, key: Hashable, items: Sequence[Any], **limits: Any) -> Future[list[Any]]:
        submitted = time.monotonic()
        future = super().submit(key, items, **limits)
        with self._submitted_lock:
            if not future.done():
                self._submitted[future] = submitted
        return future

    def _run_group(self, key: Hashable, requests: list[Any]) -> None:
        started = time.monotonic()
        live = [request for request in requests if not request.future.cancelled()]
        with self._submitted_lock:
            waits = [started - self._submitted.pop(request.future, started) for request in live]
        for wait in waits:
            self.metrics.queue_wait.observe(wait)
        if live:
            self.metrics.batch_size.observe(sum(len(request.items) for request in live))
            self.metrics.batch_requests.observe(len(live))
        try:
            super()._run_group(key, requests)
        finally:
            self.last_pass_seconds = time.monotonic() - started
            self.metrics.batch_duration.observe(self.last_pass_seconds)


class ServingEncoder(LocalEncoder):
    """:class:`~laser_integrations.embedder.LocalEncoder` whose coalesced batches are measured.

    Example:
        >>> from laser_integrations.serving.metrics import ServerMetrics
        >>> embedder = ServingEncoder(load_model("smollm2"), ServerMetrics())             # doctest: +SKIP
    """

    def __init__(self, model: SentenceTransformer, metrics: ServerMetrics) -> None:
        super().__init__(model)
        self.batcher: MeasuredBatcher = MeasuredBatcher(
            self._run_batch, metrics=metrics, lock=model_lock(self.model), name="laser-serve-batcher"
        )


class TokenCounter:
    """Tokens of each formatted text (prompt, chat template and special tokens included), untruncated.

    Its tokenizer is a private copy that is never reconfigured after construction (no truncation, no padding),
    so calls from several threads at once are safe, and never disturb the model's own tokenizer.

    Example:
        >>> counter = TokenCounter(model[0])                                               # doctest: +SKIP
        >>> counter.count(["why is the sky blue"], prompt=model.prompts["query"])         # doctest: +SKIP
        [38]
    """

    def __init__(self, module: LatentThinkingEmbedding) -> None:
        self.module = module
        tokenizer = module.tokenizer
        self._backend = None
        self._tokenizer = None
        if getattr(tokenizer, "is_fast", False) and getattr(tokenizer, "backend_tokenizer", None) is not None:
            from tokenizers import Tokenizer

            self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
            self._backend.no_truncation()
            self._backend.no_padding()
        else:
            self._tokenizer = copy.deepcopy(tokenizer)

    def count(self, texts: Sequence[str], prompt: str = "") -> list[int]:
        """Token counts of ``module.format_text(prompt + text)`` for each text."""
        formatted = [self.module.format_text(prompt + text) for text in texts]
        if self._backend is not None:
            return [len(encoding.ids) for encoding in self._backend.encode_batch(formatted, add_special_tokens=True)]
        assert self._tokenizer is not None
        return [len(ids) for ids in self._tokenizer(formatted, add_special_tokens=True)["input_ids"]]
