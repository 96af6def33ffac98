"""What the routes of one app share: the model's encoder, the request policy, metrics, and how texts are bounded.

:meth:`ServerState.embed` is the one path from a request's texts to vectors:

1. at most ``max_inputs`` texts (413);
2. at most ``formatting.max_text_chars(max_seq_length)`` characters per text, checked before any tokenizer reads it
   (413, or the text cut there with ``truncate``), so a huge input costs a length check, not a tokenization;
3. token counts (and, with ``truncate``, each over-long text cut just past what the model keeps) in the
   tokenizer thread for anything over :data:`INLINE_TOKENIZE_CHARS`, so the event loop keeps serving and the
   model's thread only ever tokenizes text already cut near the limit;
4. the vectors, from the micro-batcher, in chunks of ``max_batch_size`` texts.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from laser_integrations import __version__
from laser_integrations.embedder import EncodeOptions
from laser_integrations.formatting import max_text_chars
from laser_integrations.provenance import model_query_prompt
from laser_integrations.serving.engine import ServingEncoder, TokenCounter
from laser_integrations.serving.errors import APIError
from laser_integrations.serving.metrics import ServerMetrics
from laser_integrations.serving.policy import RequestPolicy
from laser_integrations.serving.schemas import LaserMetadata, Side
from laser_integrations.serving.settings import ServeSettings

INLINE_TOKENIZE_CHARS = 4096
"""Requests with at most this many characters are tokenized on the event loop (tens of microseconds),
larger ones in the tokenizer thread so that the loop keeps serving."""


class ServerState:
    """Everything the routes share: the embedder, its settings, names, metrics and the token counter."""

    def __init__(self, embedder: ServingEncoder, settings: ServeSettings, metrics: ServerMetrics) -> None:
        self.embedder = embedder
        self.settings = settings
        self.metrics = metrics
        self.counter = TokenCounter(embedder.module)
        self.policy = RequestPolicy(
            settings,
            served_name=settings.served_model_name or embedder.model_id,
            model_id=embedder.model_id,
            dimension=embedder.dimension,
        )
        self.served_name = self.policy.served_name
        self.created = int(time.time())
        self.document_prompt = embedder.model.prompts.get("document") or ""
        self.embeddings_in_flight = 0
        """Embedding requests being handled now (counted by the metrics middleware, on the event loop)."""
        self._pool: ThreadPoolExecutor | None = None

    def options(self, side: Side, steps: int | None, instruction: str | None) -> EncodeOptions:
        """The request's options, with the collection window chosen for the load right now."""
        return self.policy.options(side, steps, instruction, self.collection_window_ms())

    def collection_window_ms(self) -> float:
        """``max_wait_ms``, or, with other requests in flight, a fraction of the last pass's time if longer."""
        last_pass = self.embedder.batcher.last_pass_seconds
        return self.policy.collection_window_ms(self.embeddings_in_flight, last_pass)

    async def embed(
        self, texts: list[str], side: Side, options: EncodeOptions, truncate: bool | None, param: str
    ) -> tuple[list[list[float]], int]:
        """Vectors for ``texts`` on ``side`` and their token count; ``APIError`` for what the client got wrong."""
        self.policy.check_count(len(texts), param)
        prompt = self.document_prompt
        if side == "query":
            prompt = model_query_prompt(self.embedder.model, options.instruction)
        truncate = self.settings.auto_truncate if truncate is None else truncate
        max_length = self.embedder.module.max_seq_length
        texts = self._bounded(texts, max_length, truncate, param)
        if sum(map(len, texts)) <= INLINE_TOKENIZE_CHARS:  # a thread hop would cost more than tokenizing
            texts, counts = self._tokenized(texts, prompt, max_length, truncate)
        else:
            loop = asyncio.get_running_loop()
            work = (self._tokenized, texts, prompt, max_length, truncate)
            texts, counts = await loop.run_in_executor(self._tokenizer_pool(), *work)
        if not truncate:
            for index, count in enumerate(counts):
                if count > max_length:
                    raise APIError(
                        413,
                        f"{param}[{index}] is {count} tokens once formatted; this model reads at most {max_length}: "
                        "shorten it, or send truncate: true to cut it (or start the server with --auto-truncate)",
                        param=f"{param}[{index}]",
                        code="input_too_long",
                    )
        try:
            vectors = await self.embedder.aembed(side, texts, options)
        except (ValueError, TypeError) as error:
            raise APIError(400, str(error), param=param) from None
        tokens = sum(min(count, max_length) for count in counts)
        self.metrics.inputs.labels(side).inc(len(texts))
        self.metrics.tokens.labels(side).inc(tokens)
        return vectors, tokens

    def _bounded(self, texts: list[str], max_length: int, truncate: bool, param: str) -> list[str]:
        """Texts within the character cap: cut there with ``truncate``, else the first over it is a 413."""
        cap = max_text_chars(max_length)
        for index, text in enumerate(texts):
            if len(text) <= cap:
                continue
            if not truncate:
                raise APIError(
                    413,
                    f"{param}[{index}] has {len(text)} characters; this model reads at most {max_length} tokens, and "
                    f"this server refuses inputs over {cap} characters before reading them: shorten it, or send "
                    "truncate: true to cut it (or start the server with --auto-truncate)",
                    param=f"{param}[{index}]",
                    code="input_too_long",
                )
            texts = [text[:cap] if len(text) > cap else text for text in texts]
            break
        return texts

    def _tokenized(
        self, texts: list[str], prompt: str, max_length: int, truncate: bool
    ) -> tuple[list[str], list[int]]:
        if truncate:
            return self.counter.fit(texts, prompt, max_length)
        return texts, self.counter.count(texts, prompt)

    def _tokenizer_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laser-serve-tokenizer")
        return self._pool

    def metadata(self) -> LaserMetadata:
        provenance = self.embedder.provenance(EncodeOptions())
        settings = self.settings
        return LaserMetadata(
            served_model_name=self.served_name,
            model=provenance.model,
            num_thinking_steps=provenance.num_thinking_steps,
            query_prompt=provenance.query_prompt,
            document_prompt=self.document_prompt,
            dimension=provenance.dimension,
            text_format=provenance.text_format,
            max_seq_length=provenance.max_seq_length,
            dtype=provenance.dtype,
            default_side=settings.default_side,
            max_inputs=settings.max_inputs,
            max_thinking_steps=settings.max_thinking_steps,
            max_batch_size=settings.max_batch_size,
            auto_truncate=settings.auto_truncate,
            version=__version__,
        )

    def close(self) -> None:
        """Finish queued work and stop the worker threads (a later request starts them again)."""
        self.embedder.close()
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
