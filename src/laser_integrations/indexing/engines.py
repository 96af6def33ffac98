"""How the documents of one chunk become vectors: in this process, or in a sentence-transformers pool.

Both engines call ``encode_document`` (documents side: no instruction, the model's K), which sorts a
chunk by length before batching. The Ray engine (:mod:`laser_integrations.indexing.ray_engine`) runs
the same call inside Ray actors.

Example:
    >>> engine = PoolEngine(["cuda:0", "cuda:1"])                    # doctest: +SKIP
    >>> index_corpus(model, "corpus.jsonl", collection="docs", engine=engine)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["LocalEngine", "PoolEngine", "encode_documents", "tokenless_rows"]


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


def tokenless_rows(model: SentenceTransformer, texts: Sequence[str]) -> list[int]:
    """Indexes of ``texts`` that tokenize to nothing once formatted as the model formats documents."""
    module = model[0]
    prompt = model.prompts.get("document") or ""
    empty = []
    for index, text in enumerate(texts):
        ids = module.tokenizer(module.format_text(prompt + text), truncation=True, max_length=module.max_seq_length)
        if not ids["input_ids"]:
            empty.append(index)
    return empty


@dataclass
class LocalEngine:
    """One process: sentence-transformers batching on the model's device."""

    name: str = field(default="local", init=False)

    def start(self, model: SentenceTransformer, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return encode_documents(self.model, texts, batch_size=self.batch_size)

    def close(self) -> None:
        pass


@dataclass
class PoolEngine:
    """Several devices on one machine: sentence-transformers' multi-process pool, one process per device.

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

    def start(self, model: SentenceTransformer, batch_size: int) -> None:
        self.model, self.batch_size = model, batch_size

    def _start_pool(self) -> dict[str, Any]:
        """Start the processes on the first chunk with work, so a rerun with nothing new starts none."""
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

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return encode_documents(self.model, texts, batch_size=self.batch_size)
        pool = self.pool if self.pool is not None else self._start_pool()
        return encode_documents(self.model, texts, batch_size=self.batch_size, pool=pool)

    def close(self) -> None:
        if self.pool is not None:
            self.model.stop_multi_process_pool(self.pool)
            self.pool = None
