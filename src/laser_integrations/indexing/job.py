"""``index_corpus``: fill a provenance-checked Qdrant collection from a corpus, resumably, and report what happened.

The job, whatever the engine:

1. open the collection with :func:`~laser_integrations.qdrant.ensure_collection` (created with the model's
   provenance, or refused with ``ProvenanceMismatchError`` before anything is written);
2. stream the corpus in chunks; for each chunk ask Qdrant which point ids it already stores and embed only
   the others (``encode_document``: no instruction, the model's K);
3. write them with :func:`~laser_integrations.indexing.writer.write_points` (bounded retries; what does not
   land is reported, never silently dropped).

Point ids come from the document ids (or the content), so a rerun after a crash embeds only what is
missing and never duplicates a point. Locally, the model embeds chunk N+1 in a worker thread while
this thread writes chunk N; the client is only ever used from the calling thread.

Example:
    >>> from laser_integrations import load_model                                   # doctest: +SKIP
    >>> from laser_integrations.qdrant import connect
    >>> report = index_corpus(load_model("smollm2"), "corpus.jsonl", collection="docs",
    ...                       client=connect("./qdrant-data"))                        # doctest: +SKIP
    >>> report.embedded, report.skipped_present, report.failed                      # doctest: +SKIP
    (275, 0, 0)
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from laser_integrations.indexing.chunks import (
    IndexReport,
    count_bad_rows,
    embed_checked,
    encode_documents,
    iter_chunks,
    to_points,
    unique_in_chunk,
)
from laser_integrations.indexing.engines import LocalEngine, PoolEngine
from laser_integrations.indexing.sources import BadRow, BadRowError, Document, Fields, Source, documents, open_source
from laser_integrations.indexing.writer import RetryPolicy, WriteOutcome, stored_ids, write_points
from laser_integrations.provenance import model_provenance

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sentence_transformers import SentenceTransformer


__all__ = [
    "DEFAULT_QDRANT_PATH",
    "Engine",
    "IndexReport",
    "embed_checked",
    "encode_documents",
    "index_corpus",
    "model_provenance",
    "to_points",
]

DEFAULT_QDRANT_PATH = "./qdrant-data"
"""Where ``laser index`` keeps an embedded Qdrant when given neither ``--qdrant-url`` nor ``--qdrant-path``."""

MAX_FAILED_CHUNKS_IN_A_ROW = 3
"""A job stops after this many consecutive chunks failed to write (Qdrant down): the rest would fail too."""


class Engine(Protocol):
    """What the in-process loop needs from an engine (:class:`LocalEngine`, :class:`PoolEngine`)."""

    name: str

    def start(self, model: SentenceTransformer, batch_size: int) -> None: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...

    def close(self) -> None: ...


def index_corpus(
    model: SentenceTransformer | str | os.PathLike[str],
    source: str | os.PathLike[str] | Source,
    *,
    collection: str,
    client: QdrantClient | None = None,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    engine: str | Any = "local",
    devices: Sequence[str] | None = None,
    fields: Fields | None = None,
    split: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 512,
    skip_bad_rows: bool = False,
    show_progress_bar: bool = True,
    retry: RetryPolicy | None = None,
    write_batch_size: int = 64,
    load_options: Mapping[str, Any] | None = None,
) -> IndexReport:
    """Embed a corpus with a LaSER model into a Qdrant collection; rerunning finishes an interrupted job.

    Args:
        model: A LaSER ``SentenceTransformer`` (:func:`~laser_integrations.load_model`), or a spec that
            ``load_model`` takes with ``load_options`` (the Ray engine then loads it in each actor).
        source: A corpus path (see :func:`~laser_integrations.indexing.sources.open_source`) or a ``Source``.
        collection: The collection; created with the model's provenance, or checked against it.
        client: A ``QdrantClient``; else one is opened on ``url`` (a server) or ``path`` (embedded, default
            ``./qdrant-data``) and closed at the end.
        engine: ``"local"``, ``"pool"`` (with ``devices``), ``"ray"``, or a ``LocalEngine``/``PoolEngine``/
            :class:`~laser_integrations.indexing.ray_engine.RayEngine` with its options.
        devices: The pool engine's devices, e.g. ``["cuda:0", "cuda:1"]``.
        fields: The id/text/title/payload field names (default ``_id``/``id``, ``text``, ``title``).
        split: The split of a saved ``DatasetDict``.
        batch_size: Texts per forward pass.
        chunk_size: Documents read, checked against Qdrant, embedded and written together.
        skip_bad_rows: Count and skip malformed rows instead of stopping at the first one.
        show_progress_bar: A tqdm bar with documents/s and the ETA on stderr.
        retry: Attempts and back-off of each Qdrant call (default 4 tries, 0.5 s doubling).
        write_batch_size: Points per upsert request.
        load_options: :func:`~laser_integrations.load_model` options when ``model`` is a spec.

    Returns:
        An :class:`IndexReport`: embedded, already present, bad rows, failed writes (with their ids), timings.

    Raises:
        ProvenanceMismatchError: The collection holds vectors of other settings (nothing is written).
        BadRowError: A malformed row (``file:line: problem``), unless ``skip_bad_rows``.
        FileNotFoundError: No corpus at ``source``.

    Example:
        >>> from laser_integrations import load_model                                        # doctest: +SKIP
        >>> report = index_corpus(load_model("laser-qwen3"), "corpus.parquet", collection="docs",
        ...                       url="http://localhost:6333", engine="pool", devices=["cuda:0", "cuda:1"])  # doctest: +SKIP
        >>> print(report.summary())                                                          # doctest: +SKIP
    """  # noqa: E501
    from laser_integrations.qdrant import connect, ensure_collection

    _check_sizes(batch_size=batch_size, chunk_size=chunk_size, write_batch_size=write_batch_size)
    runner = _engine(engine, devices)
    source = source if isinstance(source, Source) else open_source(source, fields, split=split)
    retry = retry or RetryPolicy()
    own_client = client is None
    if client is None:
        client = connect(url=url) if url is not None else connect(path or DEFAULT_QDRANT_PATH)
    elif path is not None or url is not None:
        raise ValueError("pass either client= or path=/url=, not both")
    try:
        report = IndexReport(collection, runner.name)
        start = time.perf_counter()
        job = dict(
            client=client,
            collection=collection,
            report=report,
            batch_size=batch_size,
            chunk_size=chunk_size,
            skip_bad_rows=skip_bad_rows,
            show_progress_bar=show_progress_bar,
            retry=retry,
            write_batch_size=write_batch_size,
        )
        if runner.name == "ray":  # checks the provenance itself, before any write
            runner.run(model, source, load_options=load_options, **job)
        else:
            loaded = _loaded(model, load_options)
            ensure_collection(client, collection, model_provenance(loaded))
            _run_in_process(runner, loaded, source, **job)
        report.wall_seconds = time.perf_counter() - start
        report.points = client.count(collection, exact=True).count
        return report
    finally:
        if own_client:
            client.close()


@dataclass
class _Pending:
    documents: list[Document]
    future: Future[tuple[np.ndarray, list[int], list[BadRow]]]
    rows: int


def _run_in_process(
    engine: Engine,
    model: SentenceTransformer,
    source: Source,
    *,
    client: QdrantClient,
    collection: str,
    report: IndexReport,
    batch_size: int,
    chunk_size: int,
    skip_bad_rows: bool,
    show_progress_bar: bool,
    retry: RetryPolicy,
    write_batch_size: int,
) -> None:
    from tqdm.auto import tqdm

    timings = report.timings
    for name in ("check", "embed", "write"):
        timings.setdefault(name, 0.0)

    def embed(todo: list[Document]) -> tuple[np.ndarray, list[int], list[BadRow]]:
        started = time.perf_counter()
        texts, wheres, ids = [d.text for d in todo], [d.where for d in todo], [d.doc_id for d in todo]
        try:
            return embed_checked(model, engine.encode, texts, wheres, skip_bad_rows=skip_bad_rows, doc_ids=ids)
        finally:
            timings["embed"] += time.perf_counter() - started

    failed_in_a_row = 0

    def finish(pending: _Pending) -> None:
        nonlocal failed_in_a_row
        vectors, kept, bad = pending.future.result()
        count_bad_rows(report, bad)
        docs = [pending.documents[index] for index in kept]
        started = time.perf_counter()
        outcome = write_points(
            client,
            collection,
            to_points([d.point_id for d in docs], [d.payload() for d in docs], vectors),
            batch_size=write_batch_size,
            policy=retry,
        )
        timings["write"] += time.perf_counter() - started
        _count_outcome(report, outcome)
        failed_in_a_row = failed_in_a_row + 1 if outcome.failed_ids and not outcome.written else 0
        bar.update(pending.rows)

    engine.start(model, batch_size)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laser-index-embed")
    pending: _Pending | None = None
    total = source.estimated_rows() if show_progress_bar else None
    bar = tqdm(total=total, desc="Indexing", unit="doc", disable=not show_progress_bar)
    try:
        for chunk, bad in iter_chunks(documents(source, skip_bad_rows=skip_bad_rows), chunk_size):
            count_bad_rows(report, bad)
            unique = unique_in_chunk(chunk, report)
            started = time.perf_counter()
            present = stored_ids(client, collection, [d.point_id for d in unique], retry)
            timings["check"] += time.perf_counter() - started
            todo = [d for d in unique if d.point_id not in present]
            report.skipped_present += len(unique) - len(todo)
            future = executor.submit(embed, todo)
            if pending is not None:
                finish(pending)
            pending = _Pending(todo, future, len(chunk) + len(bad))
            if failed_in_a_row >= MAX_FAILED_CHUNKS_IN_A_ROW:
                report.aborted = (
                    f"{failed_in_a_row} chunks in a row could not be written ({report.write_error}); "
                    "fix Qdrant and rerun: what was written is kept"
                )
                break
        if pending is not None and report.aborted is None:
            finish(pending)
    except BadRowError:
        if pending is not None and report.aborted is None:
            with contextlib.suppress(Exception):  # keep the documents read before the bad row
                finish(pending)
        raise
    finally:
        bar.close()
        executor.shutdown(wait=True, cancel_futures=True)
        engine.close()


def _count_outcome(report: IndexReport, outcome: WriteOutcome) -> None:
    report.add({"embedded": outcome.written, "failed_ids": outcome.failed_ids, "write_error": outcome.error})


# -- arguments -------------------------------------------------------------------------------------------


def _engine(engine: str | Any, devices: Sequence[str] | None) -> Any:
    if not isinstance(engine, str):
        if devices is not None:
            raise ValueError("pass devices to the PoolEngine itself, not next to an engine object")
        return engine
    if engine == "local":
        if devices:
            raise ValueError("devices= needs engine='pool' (one process per device)")
        return LocalEngine()
    if engine == "pool":
        return PoolEngine(list(devices) if devices else _default_devices())
    if engine == "ray":
        if devices:
            raise ValueError("the Ray engine places its actors itself: pass num_gpus/concurrency to RayEngine")
        from laser_integrations.indexing.ray_engine import RayEngine

        return RayEngine()
    raise ValueError(f"unknown engine {engine!r}; choose local, pool or ray")


def _default_devices() -> list[str]:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    raise ValueError("the pool engine needs devices (no CUDA device here), e.g. devices=['cpu', 'cpu']")


def _loaded(model: Any, load_options: Mapping[str, Any] | None) -> SentenceTransformer:
    from laser_integrations.embedder import resolve_model

    options = {key: value for key, value in (load_options or {}).items() if value is not None}
    return resolve_model(model, **options)


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
