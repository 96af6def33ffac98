"""The server's side of one model: the adapters' embedder with measured batches, and a token counter.

:class:`ServingEncoder` is :class:`~laser_integrations.embedder.LocalEncoder` (same sides, options,
validation and micro-batching) whose batcher also records batch sizes and queue waits, and which submits a
large request in chunks of ``batch_size`` texts, so that cancelling it drops the chunks not yet begun.
:class:`TokenCounter` counts the tokens of the formatted texts, for ``usage`` and the length limit, and cuts
over-long texts just past what the model keeps of them, with its own copy of the tokenizer so that it never
touches the one the model's worker thread is using.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import weakref
from collections import deque
from collections.abc import Hashable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from laser_integrations.batching import MicroBatcher
from laser_integrations.embedder import EncodeOptions, LocalEncoder, Side, model_lock

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from laser_integrations.module import LatentThinkingEmbedding
    from laser_integrations.serving.metrics import ServerMetrics


CHUNKS_AHEAD = 2
"""Chunks of one request queued in the micro-batcher at a time (2: the next is ready when one ends)."""

KEPT_MARGIN_TOKENS = 16
"""A text cut for ``truncate`` keeps this many tokens past the model's limit, so that the tokens the model
keeps are the ones it would read from the whole text (a cut changes only the tokens right before it)."""


class MeasuredBatcher(MicroBatcher[Any, Any]):
    """A :class:`~laser_integrations.batching.MicroBatcher` that reports each coalesced batch to the metrics."""

    def __init__(self, *args: Any, metrics: ServerMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._submitted: weakref.WeakKeyDictionary[Future[Any], float] = weakref.WeakKeyDictionary()
        self._submitted_lock = threading.Lock()
        self.last_pass_seconds = 0.0
        """How long the latest coalesced batch took (the server sizes its collection window on it)."""

    def submit(
        self,
        key: Hashable,
        items: Sequence[Any],
        *,
        max_batch_size: int | None = None,
        max_wait: float | None = None,
    ) -> Future[list[Any]]:
        submitted = time.monotonic()
        future = super().submit(key, items, max_batch_size=max_batch_size, max_wait=max_wait)
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

    async def aembed(self, side: Side, texts: list[str], options: EncodeOptions) -> list[list[float]]:
        """Vectors for ``texts``, submitted in chunks of ``options.batch_size``, at most
        :data:`CHUNKS_AHEAD` queued at a time: other requests' texts get a pass between a large request's
        chunks, and cancelling the call cancels the chunks that have not started."""
        embed = self.aembed_queries if side == "query" else self.aembed_documents
        size = options.batch_size
        if len(texts) <= size:
            return await embed(texts, options)
        queued: deque[asyncio.Future[list[list[float]]]] = deque()
        vectors: list[list[float]] = []
        try:
            for start in range(0, len(texts), size):
                queued.append(asyncio.ensure_future(embed(texts[start : start + size], options)))
                if len(queued) >= CHUNKS_AHEAD:
                    vectors.extend(await queued.popleft())
            while queued:
                vectors.extend(await queued.popleft())
        finally:
            for chunk in queued:
                chunk.cancel()
        return vectors


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

    def fit(self, texts: Sequence[str], prompt: str, max_length: int) -> tuple[list[str], list[int]]:
        """Each text cut just past the ``max_length`` tokens the model keeps of it (by :data:`KEPT_MARGIN_TOKENS`),
        and the tokens the model reads of each (at most ``max_length``).

        The model then tokenizes a few hundred characters past its limit instead of the whole text. With a slow
        tokenizer (no offsets) the texts come back whole.
        """
        texts = list(texts)
        if self._backend is None:
            return texts, [min(count, max_length) for count in self.count(texts, prompt)]
        start = len(self.module.prompt_prefix(prompt))
        formatted = [self.module.format_text(prompt + text) for text in texts]
        counts = []
        for index, encoding in enumerate(self._backend.encode_batch(formatted, add_special_tokens=True)):
            total = len(encoding.ids)
            counts.append(min(total, max_length))
            if total <= max_length + KEPT_MARGIN_TOKENS:
                continue
            text = texts[index]
            kept = encoding.offsets[max_length + KEPT_MARGIN_TOKENS - 1][1] - start
            if 0 < kept < len(text) and formatted[index][start : start + len(text)] == text:
                texts[index] = text[:kept]
        return texts, counts
