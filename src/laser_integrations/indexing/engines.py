"""The one engine contract of ``laser index``: where the documents of a chunk become vectors.

An engine embeds; it never touches the store. :func:`~laser_integrations.indexing.job.index_corpus` owns
the rest once, whatever the engine: provenance (``store.ensure``), resume (``store.present``), duplicates,
the writes (one writer: the calling process) and the report. Three engines implement :class:`Engine`:

- :class:`LocalEngine`: this process, sentence-transformers batching on the model's device;
- :class:`PoolEngine`: sentence-transformers' multi-process pool, one process per device;
- :class:`~laser_integrations.indexing.ray_engine.RayEngine`: Ray actors, on a local Ray or a cluster.

Each embeds with ``encode_document`` (documents side: no instruction, the model's K) through
:func:`embed_texts`, which also counts each text's tokens: ``0`` means it tokenizes to nothing (not
embedded), more than ``max_seq_length`` means the model read only its start.

Example:
    >>> engine = PoolEngine(["cuda:0", "cuda:1"])                              # doctest: +SKIP
    >>> index_corpus(model, "corpus.jsonl", store=store, engine=engine)       # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from laser_integrations.formatting import max_text_chars
from laser_integrations.provenance import EmbeddingProvenance, model_provenance

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "Embedded",
    "Engine",
    "LocalEngine",
    "PoolEngine",
    "embed_texts",
    "encode_documents",
    "load",
    "token_counts",
]


@dataclass(frozen=True)
class Embedded:
    """What an engine returns for a chunk of texts."""

    vectors: np.ndarray
    """float32 ``(texts with tokens, dim)``, in the texts' order; a text that tokenizes to nothing has no row."""
    tokens: np.ndarray
    """Tokens of each text as the model formats documents (``0``: nothing to embed); above the model's
    ``max_seq_length`` the model read only the first ``max_seq_length``."""


@runtime_checkable
class Engine(Protocol):
    """What :func:`~laser_integrations.indexing.job.index_corpus` needs from an engine."""

    name: str

    def start(
        self, model: Any, *, batch_size: int, load_options: Mapping[str, Any] | None = None
    ) -> EmbeddingProvenance:
        """Load (or ship) the model and return the provenance of the vectors it makes; no write happens here.

        ``model`` is a LaSER ``SentenceTransformer`` or a spec :func:`~laser_integrations.load_model` takes with
        ``load_options``.
        """
        ...

    def embed(self, texts: Sequence[str]) -> Embedded:
        """Document vectors of ``texts`` and their token counts."""
        ...

    def close(self) -> None:
        """Stop what :meth:`start` started (processes, actors); idempotent."""
        ...


def load(model: Any, load_options: Mapping[str, Any] | None) -> SentenceTransformer:
    """``model`` itself, or the spec loaded with ``load_options`` (``None`` values skipped)."""
    from laser_integrations.embedder import resolve_model

    return resolve_model(model, **(load_options or {}))


def encode_documents(
    model: SentenceTransformer, texts: Sequence[str], *, batch_size: int, pool: dict[str, Any] | None = None
) -> np.ndarray:
    """Document vectors for ``texts``, float32 ``(len(texts), dim)``; sentence-transformers sorts them by length."""
    if not texts:
        return np.zeros((0, model[0].get_embedding_dimension()), dtype=np.float32)
    options: dict[str, Any] = {"batch_size": batch_size, "show_progress_bar": False, "convert_to_numpy": True}
    if pool is not None:
        workers = len(pool["processes"])
        options.update(pool=pool, chunk_size=max(1, min(batch_size, math.ceil(len(texts) / workers))))
    vectors = model.encode_document(list(texts), **options)
    return np.asarray(np.stack(vectors) if isinstance(vectors, list) else vectors, dtype=np.float32)


def token_counts(model: SentenceTransformer, texts: Sequence[str]) -> np.ndarray:
    """Tokens of each text formatted as the model formats documents, up to ``max_seq_length + 1``.

    Reads at most :func:`~laser_integrations.formatting.max_text_chars` characters of each text; a longer
    text counts as ``max_seq_length + 1`` (truncated).
    """
    module = model[0]
    limit = module.max_seq_length
    prompt = model.prompts.get("document") or ""
    cut = max_text_chars(limit)
    if not texts:
        return np.zeros(0, dtype=np.int64)
    formatted = [module.format_text(prompt + text[:cut]) for text in texts]
    ids = module.tokenizer(formatted, truncation=True, max_length=limit + 1)["input_ids"]
    counts = np.array([len(row) for row in ids], dtype=np.int64)
    counts[[len(text) > cut for text in texts]] = limit + 1
    return counts


def embed_texts(
    model: SentenceTransformer, texts: Sequence[str], *, batch_size: int, pool: dict[str, Any] | None = None
) -> Embedded:
    """Count the tokens of ``texts``, then embed those that have any (what every engine runs)."""
    tokens = token_counts(model, texts)
    kept = [text for text, count in zip(texts, tokens, strict=True) if count > 0]
    return Embedded(encode_documents(model, kept, batch_size=batch_size, pool=pool), tokens)


@dataclass
class LocalEngine:
    """One process: sentence-transformers batching on the model's device."""

    name: str = field(default="local", init=False)

    def start(
        self, model: Any, *, batch_size: int, load_options: Mapping[str, Any] | None = None
    ) -> EmbeddingProvenance:
        self.model, self.batch_size = load(model, load_options), batch_size
        return model_provenance(self.model)

    def embed(self, texts: Sequence[str]) -> Embedded:
        return embed_texts(self.model, texts, batch_size=self.batch_size)

    def close(self) -> None:
        pass


@dataclass
class PoolEngine:
    """Several devices on one machine: sentence-transformers' multi-process pool, one process per device.

    The processes start on the first chunk with work, so a rerun with nothing new starts none.

    Args:
        devices: e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
        threads_per_cpu_process: torch threads in each CPU process (default: the cores shared evenly), so
            that N CPU processes do not each spin up every core.
    """

    devices: Sequence[str]
    threads_per_cpu_process: int | None = None
    name: str = field(default="pool", init=False)

    def __post_init__(self) -> None:
        self.devices = [str(device).strip() for device in self.devices if str(device).strip()]
        if not self.devices:
            raise ValueError("the pool engine needs at least one device, e.g. devices=['cuda:0', 'cuda:1']")
        self.pool: dict[str, Any] | None = None

    def start(
        self, model: Any, *, batch_size: int, load_options: Mapping[str, Any] | None = None
    ) -> EmbeddingProvenance:
        self.model, self.batch_size = load(model, load_options), batch_size
        return model_provenance(self.model)

    def _start_pool(self) -> dict[str, Any]:
        model = self.model
        cpu_processes = sum(device.startswith("cpu") for device in self.devices)
        threads = self.threads_per_cpu_process or max(1, (os.cpu_count() or 1) // max(cpu_processes, 1))
        saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
        try:  # spawned workers read these when torch starts
            if cpu_processes:
                for name in saved:
                    os.environ[name] = str(threads)
            self.pool = model.start_multi_process_pool(list(self.devices))
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        return self.pool

    def embed(self, texts: Sequence[str]) -> Embedded:
        if not texts:
            return embed_texts(self.model, texts, batch_size=self.batch_size)
        pool = self.pool if self.pool is not None else self._start_pool()
        return embed_texts(self.model, texts, batch_size=self.batch_size, pool=pool)

    def close(self) -> None:
        if self.pool is not None:
            self.model.stop_multi_process_pool(self.pool)
            self.pool = None
