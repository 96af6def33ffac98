"""``index_corpus``: fill a provenance-checked store from a corpus, resumably, and report what happened.

The job owns everything but the embedding, once, whatever the engine (:mod:`~laser_integrations.indexing.engines`):

1. open the store (a second process on an Edge or local-mode folder is refused here, before any model loads)
   and check it can hold the corpus (:func:`~laser_integrations.stores.check_capacity`: the local-mode
   fence, from the corpus size for a new store and the stored count for a resumed one);
2. with ``on_duplicate`` ``"last"`` or ``"error"``, read the corpus once for repeated ids;
3. start the engine (the model loads) and ``store.ensure`` its provenance: other settings are refused
   with ``ProvenanceMismatchError`` before anything is embedded;
4. stream the corpus in chunks: keep one row per id (:class:`~laser_integrations.indexing.duplicates.Duplicates`),
   ask the store which ids it already holds, embed the others (the engine, in a worker thread, while this
   thread writes the chunk before), and write them through the store (:func:`write_points`: bounded
   retries; what does not land is reported, never silently dropped). This thread is the only writer.

Point ids come from the document ids (or the content), so a rerun after a crash embeds only what is
missing and never duplicates a point.

Example:
    >>> from laser_integrations import load_model                                   # doctest: +SKIP
    >>> from laser_integrations.stores import open_store
    >>> with open_store("edge", path="./laser-index") as store:                       # doctest: +SKIP
    ...     report = index_corpus(load_model("smollm2"), "corpus.jsonl", store=store)
    >>> report.embedded, report.skipped_present, report.failed                      # doctest: +SKIP
    (275, 0, 0)
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from laser_integrations.indexing.duplicates import ON_DUPLICATE, Duplicates, repeated_ids
from laser_integrations.indexing.engines import Embedded, Engine, LocalEngine, PoolEngine
from laser_integrations.indexing.report import IndexReport
from laser_integrations.indexing.sources import (
    MAX_PAYLOAD_CHARS,
    BadRow,
    BadRowError,
    Document,
    Fields,
    Source,
    documents,
    open_source,
)
from laser_integrations.indexing.writer import RetryPolicy, WriteOutcome, stored_ids, write_points
from laser_integrations.stores import Store, check_capacity
from laser_integrations.validation import positive_int

if TYPE_CHECKING:
    from qdrant_client import QdrantClient


__all__ = ["DEFAULT_QDRANT_PATH", "CapacityWarning", "index_corpus"]

DEFAULT_QDRANT_PATH = "./qdrant-data"
"""The folder ``laser index`` and ``index_corpus(path=None)`` use when given no store, path or URL."""

MAX_FAILED_CHUNKS_IN_A_ROW = 3
"""A job stops after this many consecutive chunks failed to write (the store is down): the rest would fail too."""

FLUSH_EVERY_SECONDS = 60.0
"""The job flushes the store at least this often, so a slow job's write-ahead log stays bounded too."""


class CapacityWarning(UserWarning):
    """The store will hold more points than it is meant for (local mode above 20,000); shown before embedding."""


def index_corpus(
    model: Any,
    source: str | os.PathLike[str] | Source,
    *,
    store: Store | None = None,
    collection: str | None = None,
    client: QdrantClient | None = None,
    path: str | os.PathLike[str] | None = None,
    url: str | None = None,
    engine: str | Engine = "local",
    devices: Sequence[str] | None = None,
    fields: Fields | None = None,
    split: str | None = None,
    batch_size: int = 32,
    chunk_size: int = 512,
    skip_bad_rows: bool = False,
    on_duplicate: str = "first",
    max_payload_chars: int | None = MAX_PAYLOAD_CHARS,
    show_progress_bar: bool = True,
    retry: RetryPolicy | None = None,
    write_batch_size: int = 64,
    load_options: Mapping[str, Any] | None = None,
) -> IndexReport:
    """Embed a corpus with a LaSER model into a store; rerunning finishes an interrupted job.

    Args:
        model: A LaSER ``SentenceTransformer`` (:func:`~laser_integrations.load_model`), or a spec that
            ``load_model`` takes with ``load_options``: it loads only once the store is open and checked.
        source: A corpus path (see :func:`~laser_integrations.indexing.sources.open_source`) or a ``Source``.
        store: Where the vectors go (:func:`~laser_integrations.stores.open_store`); the caller closes it.
        collection, client, path, url: Shorthand for a Qdrant collection (a ``QdrantStore``): of ``client``,
            or of a client opened on ``url`` (a server) or ``path`` (local mode, default ``./qdrant-data``) and
            closed at the end. For an Edge folder pass ``store=open_store("edge", path=...)``.
        engine: ``"local"``, ``"pool"`` (with ``devices``), ``"ray"``, or an :class:`Engine` with its options.
        devices: The pool engine's devices, e.g. ``["cuda:0", "cuda:1"]``.
        fields: The id/text/title/payload field names (default ``_id``/``id``, ``text``, ``title``).
        split: The split of a saved ``DatasetDict``.
        batch_size: Texts per forward pass.
        chunk_size: Documents read, checked against the store, embedded and written together.
        skip_bad_rows: Count and skip malformed rows (each exactly, named by file and line) instead of stopping
            at the first one.
        on_duplicate: Which row of a repeated id is indexed: ``"first"``, ``"last"``, or ``"error"`` (refuse).
        max_payload_chars: Cap on the text stored in each payload (``None``: whole).
        show_progress_bar: A tqdm bar with documents/s and the ETA on stderr.
        retry: Attempts and back-off of each store call (default 4 tries, 0.5 s doubling).
        write_batch_size: Points per upsert.
        load_options: :func:`~laser_integrations.load_model` options when ``model`` is a spec.

    Returns:
        An :class:`IndexReport`: embedded, already present, bad rows, duplicates, failed writes (with their
        ids), truncated documents, timings, and the store's count at the end.

    Raises:
        StoreLockedError: Another process has the store's folder open (before the model loads).
        StoreCapacityError: Local mode could not reopen what the job would write (before the model loads).
        DuplicateIdError: ``on_duplicate="error"`` and the corpus repeats ids (before the model loads).
        ProvenanceMismatchError: The store holds vectors of other settings (nothing is embedded).
        BadRowError: A malformed row (``file:line: problem``), unless ``skip_bad_rows``.
        FileNotFoundError: No corpus at ``source``.

    Example:
        >>> from laser_integrations.stores import open_store
        >>> with open_store("server", url="http://localhost:6333", collection="docs") as store:    # doctest: +SKIP
        ...     report = index_corpus("laser-qwen3", "corpus.parquet", store=store, engine="pool",
        ...                           devices=["cuda:0", "cuda:1"])
        >>> print(report.summary())                                                               # doctest: +SKIP
    """
    sizes = {"batch_size": batch_size, "chunk_size": chunk_size, "write_batch_size": write_batch_size}
    for name, value in sizes.items():
        positive_int(name, value)
    if max_payload_chars is not None:
        positive_int("max_payload_chars", max_payload_chars)
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"on_duplicate must be one of {', '.join(ON_DUPLICATE)}, got {on_duplicate!r}")
    runner = engine_named(engine, devices) if isinstance(engine, str) else _engine_alone(engine, devices)
    source = source if isinstance(source, Source) else open_source(source, fields, split=split)
    with _opened(store, collection=collection, client=client, path=path, url=url) as target:
        report = IndexReport(target.description, runner.name, duplicate_rule=on_duplicate)
        note = check_capacity(target, _points_after(target, source))
        if note is not None:
            report.notes.append(note)
            warnings.warn(note, CapacityWarning, stacklevel=2)
        repeats = None  # "first" needs no look ahead
        if on_duplicate != "first":
            repeats = repeated_ids(documents(source, skip_bad_rows=True), on_duplicate)
        duplicates = Duplicates(on_duplicate, repeats)
        start = time.perf_counter()
        try:
            provenance = runner.start(model, batch_size=batch_size, load_options=load_options)
            target.ensure(provenance)  # before anything is embedded
            report.max_seq_length = provenance.max_seq_length
            job = _Job(target, runner, report, duplicates, skip_bad_rows, max_payload_chars, retry or RetryPolicy())
            job.run(source, chunk_size, write_batch_size, show_progress_bar)
        finally:
            runner.close()
        report.wall_seconds = time.perf_counter() - start
        report.points = _fresh_count(target, retry or RetryPolicy())
        return report


@dataclass
class _Pending:
    documents: list[Document]
    future: Future[Embedded]
    rows: int


class _Job:
    """The chunk loop: one writer (this thread), embedding one chunk ahead in a worker thread."""

    def __init__(
        self,
        store: Store,
        engine: Engine,
        report: IndexReport,
        duplicates: Duplicates,
        skip_bad_rows: bool,
        max_payload_chars: int | None,
        retry: RetryPolicy,
    ) -> None:
        self.store, self.engine, self.report, self.duplicates = store, engine, report, duplicates
        self.skip_bad_rows, self.max_payload_chars, self.retry = skip_bad_rows, max_payload_chars, retry
        self.failed_in_a_row = 0
        self.flushed_at = time.monotonic()
        for name in ("check", "embed", "write"):
            report.timings.setdefault(name, 0.0)

    def run(self, source: Source, chunk_size: int, write_batch_size: int, show_progress_bar: bool) -> None:
        from tqdm.auto import tqdm

        self.write_batch_size = write_batch_size
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="laser-index-embed")
        total = source.estimated_rows() if show_progress_bar else None
        self.bar = tqdm(total=total, desc="Indexing", unit="doc", disable=not show_progress_bar)
        pending: _Pending | None = None
        try:
            for chunk, bad in _chunks(documents(source, skip_bad_rows=self.skip_bad_rows), chunk_size):
                self.report.add_bad_rows(bad)
                todo = self._missing(chunk)
                future = executor.submit(self._embed, todo)
                if pending is not None:
                    previous, pending = pending, None  # finished once, even if it raises
                    self._finish(previous)
                pending = _Pending(todo, future, len(chunk) + len(bad))
                if self.failed_in_a_row >= MAX_FAILED_CHUNKS_IN_A_ROW:
                    self._abort(pending)
                    pending = None
                    break
            if pending is not None:
                last, pending = pending, None
                self._finish(last)
        except BadRowError:
            if pending is not None:
                with contextlib.suppress(Exception):  # keep the documents read before the bad row
                    self._finish(pending)
            raise
        finally:
            self.bar.close()
            executor.shutdown(wait=True, cancel_futures=True)

    def _missing(self, chunk: list[Document]) -> list[Document]:
        """The chunk's rows to embed: one per id (the duplicate rule), not already stored."""
        kept = []
        for document in chunk:
            if self.duplicates.keep(document):
                kept.append(document)
            else:
                self.report.add_duplicate(document.doc_id)
        started = time.perf_counter()
        present = stored_ids(self.store, [document.point_id for document in kept], self.retry)
        self.report.timings["check"] += time.perf_counter() - started
        self.report.skipped_present += sum(document.point_id in present for document in kept)
        return [document for document in kept if document.point_id not in present]

    def _embed(self, todo: list[Document]) -> Embedded:
        started = time.perf_counter()
        try:
            return self.engine.embed([document.text for document in todo])
        finally:
            self.report.timings["embed"] += time.perf_counter() - started

    def _finish(self, pending: _Pending) -> None:
        embedded = pending.future.result()
        limit = self.report.max_seq_length
        empty = [index for index, count in enumerate(embedded.tokens) if count == 0]
        cut = len(pending.documents) if self.skip_bad_rows or not empty else empty[0]
        docs = [document for index, document in enumerate(pending.documents[:cut]) if embedded.tokens[index] > 0]
        vectors = embedded.vectors[: len(docs)]
        if limit is not None:
            self.report.truncated += int((embedded.tokens[:cut] > limit).sum())
        started = time.perf_counter()
        payloads = [document.payload(self.max_payload_chars) for document in docs]
        outcome = write_points(
            self.store,
            [document.point_id for document in docs],
            vectors,
            payloads,
            batch_size=self.write_batch_size,
            policy=self.retry,
        )
        self.report.timings["write"] += time.perf_counter() - started
        self._count(outcome)
        if empty:
            bad = [BadRow(pending.documents[i].where, _tokenless(pending.documents[i])) for i in empty]
            if not self.skip_bad_rows:
                raise BadRowError(bad[0].where, bad[0].problem)
            self.report.add_bad_rows(bad)
        self.bar.update(pending.rows)
        if time.monotonic() - self.flushed_at >= FLUSH_EVERY_SECONDS:
            self.store.flush()
            self.flushed_at = time.monotonic()

    def _count(self, outcome: WriteOutcome) -> None:
        report = self.report
        report.embedded += outcome.written
        report.unsure += len(outcome.unsure_ids)
        if outcome.failed_ids or outcome.unsure_ids:
            report.add_failed(outcome.failed_ids, outcome.error)
        self.failed_in_a_row = self.failed_in_a_row + 1 if outcome.error and not outcome.written else 0

    def _abort(self, pending: _Pending) -> None:
        """Stop: the chunk embedded meanwhile is not written (it counts as failed; a rerun embeds it)."""
        with contextlib.suppress(Exception):
            pending.future.result()
        error = self.report.write_error
        self.report.add_failed([document.point_id for document in pending.documents], error)
        self.report.aborted = (
            f"{self.failed_in_a_row} chunks in a row could not be written ({error}); "
            "fix the store and rerun: what was written is kept"
        )


# -- helpers ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _opened(
    store: Store | None,
    *,
    collection: str | None,
    client: QdrantClient | None,
    path: str | os.PathLike[str] | None,
    url: str | None,
) -> Iterator[Store]:
    """``store`` as given (the caller closes it), or a ``QdrantStore`` built from the shorthand (closed here)."""
    from laser_integrations.stores import QdrantStore, open_store

    if store is not None:
        if any(value is not None for value in (collection, client, path, url)):
            raise ValueError("pass either store= or collection=/client=/path=/url=, not both")
        yield store
        return
    if collection is None:
        raise ValueError("pass store= (open_store(...)), or collection= for a Qdrant collection")
    if client is not None:
        if path is not None or url is not None:
            raise ValueError("pass either client= or path=/url=, not both")
        yield QdrantStore(client, collection)
        return
    if url is not None:
        opened = open_store("server", url=url, collection=collection)
    else:
        opened = open_store("local", path=path or DEFAULT_QDRANT_PATH, collection=collection)
    try:
        yield opened
    finally:
        opened.close()


def _engine_alone(engine: Engine, devices: Sequence[str] | None) -> Engine:
    if devices is not None:
        raise ValueError("pass devices to the PoolEngine itself, not next to an engine object")
    return engine


def _points_after(store: Store, source: Source) -> int:
    """What the store will hold after the job, known before it: the corpus size, or the stored count when larger
    (a resumed job ends with the corpus it resumes). A gzipped corpus has no size until read: only the count."""
    return max(store.count(), source.estimated_rows() or 0)


def _fresh_count(store: Store, retry: RetryPolicy) -> int | None:
    from laser_integrations.indexing.writer import call_with_retries

    try:
        return call_with_retries(store.count, retry)
    except Exception:
        return None


def _chunks(rows: Iterator[Document | BadRow], size: int) -> Iterator[tuple[list[Document], list[BadRow]]]:
    """Chunks of ``size`` documents (with the bad rows skipped among them); at a ``BadRowError`` the rows read
    before it come first, so that the job keeps them."""
    chunk: list[Document] = []
    bad: list[BadRow] = []
    try:
        for row in rows:
            if isinstance(row, BadRow):
                bad.append(row)
                continue
            chunk.append(row)
            if len(chunk) >= size:
                yield chunk, bad
                chunk, bad = [], []
    except BadRowError:
        if chunk or bad:
            yield chunk, bad
        raise
    if chunk or bad:
        yield chunk, bad


def _tokenless(document: Document) -> str:
    return f"document {document.doc_id!r} tokenizes to nothing; nothing to embed"


def engine_named(name: str, devices: Sequence[str] | None = None) -> Engine:
    """The engine ``"local"``, ``"pool"`` (on ``devices``; default: every CUDA device) or ``"ray"`` (defaults).

    Example:
        >>> engine_named("pool", ["cpu", "cpu"]).devices
        ['cpu', 'cpu']
    """
    if name == "local":
        if devices:
            raise ValueError("devices= needs engine='pool' (one process per device)")
        return LocalEngine()
    if name == "pool":
        return PoolEngine(list(devices) if devices else _cuda_devices())
    if name == "ray":
        if devices:
            raise ValueError("the Ray engine places its actors itself: pass num_gpus/concurrency to RayEngine")
        from laser_integrations.indexing.ray_engine import RayEngine

        return RayEngine()
    raise ValueError(f"unknown engine {name!r}; choose local, pool or ray")


def _cuda_devices() -> list[str]:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    raise ValueError("the pool engine needs devices (no CUDA device here), e.g. devices=['cpu', 'cpu']")
