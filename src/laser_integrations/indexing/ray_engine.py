"""The Ray engine of ``laser index``: Ray Data reads the shards, a pool of embedding actors, Qdrant writes.

The pipeline (the same on a laptop's local Ray and on a cluster; only ``ray.init`` and the client differ):

1. ``from_items`` of the source's shards, ``map_batches`` reading each shard with the one reader of
   :mod:`~laser_integrations.indexing.sources` (same ids, same ``file:line`` errors as every engine);
2. ``map_batches(RayEmbedder, compute=ActorPoolStrategy(size=concurrency), num_gpus=...)``: each actor loads
   the model once, asks Qdrant which ids of its batch are stored and embeds only the others;
3. the write, with the one write function of :mod:`~laser_integrations.indexing.writer`:

   - a Qdrant **server** (``url``): workers write directly, through :class:`QdrantDatasink`;
   - **embedded** Qdrant (a folder, one process only): the vectors stream back to the driver, which writes
     them (and the actors check against a snapshot of the stored ids taken before the job; the folder lock
     guarantees nobody else writes meanwhile).

An actor that dies is restarted by Ray and its batch retried (Ray Data's defaults: ``max_restarts=-1``,
``max_task_retries=-1``); ids are deterministic and upserts idempotent, so a retried batch overwrites
itself and never duplicates a point.

Example:
    ```python
    from laser_integrations.indexing import RayEngine, index_corpus

    engine = RayEngine(address="auto", concurrency=8, num_gpus=1)
    report = index_corpus("laser-qwen3", "corpus/", collection="docs", url="http://qdrant:6333", engine=engine)
    ```
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

try:
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, Datasink
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError("the Ray engine needs Ray Data: pip install 'laser-integrations[ray]'") from error

from laser_integrations.indexing.chunks import (
    IndexReport,
    count_bad_rows,
    embed_checked,
    encode_documents,
    iter_chunks,
    to_points,
    unique_in_chunk,
)
from laser_integrations.indexing.sources import BadRowError, Document, Source, documents, shard_documents
from laser_integrations.indexing.writer import RetryPolicy, stored_ids, write_points
from laser_integrations.provenance import model_provenance

if TYPE_CHECKING:
    from qdrant_client import QdrantClient
    from sentence_transformers import SentenceTransformer

__all__ = ["QdrantDatasink", "RayEmbedder", "RayEngine", "write_batch"]

NEW, PRESENT, DUPLICATE, BAD = "new", "present", "duplicate", "bad"
"""Row states along the pipeline: every row reaches the writer, which counts them."""


@dataclass
class RayEngine:
    """Ray Data over a local Ray or a cluster.

    Args:
        address: ``ray.init(address=...)``: ``"auto"`` or ``"ray://head:10001"`` for a cluster; ``None`` joins the
            Ray already initialized in this process, or starts a local one. A Ray started here is shut down after.
        concurrency: Embedding actors (one model each).
        num_gpus: GPUs per actor (``1``: one model per GPU; ``0``: CPU actors).
        num_cpus: CPUs per actor (default: Ray Data's, 1); CPU actors use as many torch threads.
        worker_client: A picklable callable returning a ``QdrantClient`` for workers to write with; default: a
            client like the one passed to ``index_corpus`` for a server, none (the driver writes) when embedded.
        ray_remote_args: More options for the actors (``max_restarts``, ``resources``, ``runtime_env`` ...).
    """

    address: str | None = None
    concurrency: int = 1
    num_gpus: float = 0
    num_cpus: float | None = None
    worker_client: Callable[[], Any] | None = None
    ray_remote_args: dict[str, Any] = field(default_factory=dict)
    name: str = field(default="ray", init=False)

    def __post_init__(self) -> None:
        if isinstance(self.concurrency, bool) or not isinstance(self.concurrency, int) or self.concurrency < 1:
            raise ValueError(f"concurrency must be a positive integer, got {self.concurrency!r}")
        if self.num_gpus < 0 or (self.num_cpus is not None and self.num_cpus <= 0):
            raise ValueError(f"num_gpus must be >= 0 and num_cpus > 0, got {self.num_gpus!r} and {self.num_cpus!r}")

    def run(
        self,
        model: SentenceTransformer | str | os.PathLike[str],
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
        load_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Check the provenance, then run the pipeline; ``report`` gets the counts."""
        from laser_integrations.qdrant import ensure_collection

        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address)
        context = _data_context()
        saved_bars = context.enable_progress_bars
        try:
            reference = _ModelReference.of(model, load_options)
            ensure_collection(client, collection, self._provenance(reference))  # before any write
            if not source.shards or _everything_stored(
                source, client, collection, report, chunk_size, skip_bad_rows, retry
            ):
                return  # a rerun of a finished job starts no actor
            embedded_qdrant = _is_embedded(client)
            context.enable_progress_bars = show_progress_bar and not embedded_qdrant
            if embedded_qdrant:
                lookup: Any = ray.put(_StoredSnapshot.of(client, collection))
                factory = None
            else:
                factory = self.worker_client or functools.partial(_client_from_options, dict(client.init_options))
                lookup = None
            shards = ray.data.from_items(
                [{"shard": index} for index in range(len(source.shards))], override_num_blocks=len(source.shards)
            )
            rows = shards.map_batches(
                _read_shards,
                batch_size=1,
                fn_kwargs={"source": source, "chunk_size": chunk_size, "skip_bad_rows": skip_bad_rows},
                num_cpus=0.25,
            ).repartition(target_num_rows_per_block=chunk_size)  # a read task's rows, spread over the actors
            embedder = RayEmbedder  # looked up at call time: a subclass patched in here is what the actors run
            vectors = rows.map_batches(
                embedder,
                batch_size=chunk_size,
                batch_format="numpy",
                compute=ActorPoolStrategy(size=self.concurrency),
                num_gpus=self.num_gpus or None,
                num_cpus=self.num_cpus,
                fn_constructor_kwargs={
                    "model": reference.shipped(),
                    "collection": collection,
                    "client_factory": factory,
                    "stored": lookup,
                    "batch_size": batch_size,
                    "skip_bad_rows": skip_bad_rows,
                    "retry": retry,
                    "num_cpus": self.num_cpus,
                    "use_gpu": self.num_gpus > 0,
                },
                **self.ray_remote_args,
            )
            with warnings.catch_warnings():
                # Ray's advice to raise read parallelism when a corpus has fewer chunks than actors
                warnings.filterwarnings("ignore", "The minimum number of concurrent actors", UserWarning)
                self._write(
                    vectors, factory, client, collection, report, source, show_progress_bar, retry, write_batch_size
                )
        except Exception as error:
            found = _user_error(error)
            if found is None:
                raise
            raise found from None
        finally:
            context.enable_progress_bars = saved_bars
            if started_here:
                ray.shutdown()

    def _provenance(self, reference: _ModelReference) -> Any:
        from laser_integrations.provenance import EmbeddingProvenance

        if reference.instance is not None:
            return model_provenance(reference.instance)
        remote = ray.remote(_provenance_record).options(num_gpus=self.num_gpus or None, num_cpus=self.num_cpus)
        return EmbeddingProvenance.from_dict(ray.get(remote.remote(reference, self.num_gpus > 0)))

    @staticmethod
    def _write(
        vectors: Any,
        factory: Callable[[], Any] | None,
        client: QdrantClient,
        collection: str,
        report: IndexReport,
        source: Source,
        show_progress_bar: bool,
        retry: RetryPolicy,
        write_batch_size: int,
    ) -> None:
        """Workers write (a server: ``factory`` opens their clients), or the driver does (embedded Qdrant)."""
        from tqdm.auto import tqdm

        if factory is not None:
            sink = QdrantDatasink(factory, collection, write_batch_size=write_batch_size, retry=retry)
            vectors.write_datasink(sink, ray_remote_args={"num_cpus": 0.25})
            for counts in sink.results:
                report.add(counts)
            return

        total = source.estimated_rows() if show_progress_bar else None
        with tqdm(total=total, desc="Indexing", unit="doc", disable=not show_progress_bar) as bar:
            for batch in vectors.iter_batches(batch_size=None, batch_format="numpy"):
                report.add(write_batch(client, collection, batch, write_batch_size=write_batch_size, retry=retry))
                bar.update(len(batch["point_id"]))


class RayEmbedder:
    """The Ray Data actor: one model; per batch, skip the stored ids, embed the rest, return their vectors."""

    def __init__(
        self,
        model: _ModelReference,
        collection: str,
        client_factory: Callable[[], Any] | None,
        stored: Any,
        batch_size: int,
        skip_bad_rows: bool,
        retry: RetryPolicy,
        num_cpus: float | None = None,
        use_gpu: bool = False,
    ) -> None:
        if not use_gpu:
            import torch

            torch.set_num_threads(max(1, int(num_cpus or 1)))
        self.model = model.load(use_gpu)
        self.collection = collection
        self.lookup = client_factory() if client_factory is not None else _resolved(stored)
        self.batch_size = batch_size
        self.skip_bad_rows = skip_bad_rows
        self.retry = retry
        self.dimension = self.model[0].get_embedding_dimension()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        status = np.array(batch["status"], dtype=object)
        point_ids = [str(value) for value in batch["point_id"]]
        seen: set[str] = set()
        candidates = []
        for index in np.flatnonzero(status == NEW):
            if point_ids[index] in seen:
                status[index] = DUPLICATE
            else:
                seen.add(point_ids[index])
                candidates.append(int(index))
        present = stored_ids(self.lookup, self.collection, [point_ids[i] for i in candidates], self.retry)
        todo = []
        for index in candidates:
            if point_ids[index] in present:
                status[index] = PRESENT
            else:
                todo.append(index)
        texts = [str(batch["text"][index]) for index in todo]
        wheres = [str(batch["where"][index]) for index in todo]
        encode = functools.partial(encode_documents, self.model, batch_size=self.batch_size)
        ids = [str(batch["doc_id"][index]) for index in todo]
        embedded, kept, bad = embed_checked(
            self.model, encode, texts, wheres, skip_bad_rows=self.skip_bad_rows, doc_ids=ids
        )
        problems = np.array(batch["problem"], dtype=object)
        for row in bad:
            index = todo[wheres.index(row.where)]
            status[index], problems[index] = BAD, row.problem
        vectors = np.zeros((len(status), self.dimension), dtype=np.float32)
        if kept:
            vectors[[todo[k] for k in kept]] = embedded
        text = np.array(batch["text"], dtype=object)
        text[status != NEW] = ""  # only new rows travel on with their text
        return {**batch, "status": status, "problem": problems, "text": text, "vector": vectors}


class QdrantDatasink(Datasink):
    """Ray Data's write step for a Qdrant server: each write task opens a client and calls :func:`write_batch`.

    The per-task counts come back to the driver in :attr:`results` (``on_write_complete``).
    """

    def __init__(
        self, client_factory: Callable[[], Any], collection: str, *, write_batch_size: int, retry: RetryPolicy
    ) -> None:
        self.client_factory = client_factory
        self.collection = collection
        self.write_batch_size = write_batch_size
        self.retry = retry
        self.results: list[dict[str, Any]] = []

    def write(self, blocks: Iterable[Any], ctx: Any) -> dict[str, Any]:
        from ray.data.block import BlockAccessor

        client = self.client_factory()
        totals = IndexReport(self.collection, "ray")
        try:
            for block in blocks:
                batch = BlockAccessor.for_block(block).to_batch_format("numpy")
                if len(batch.get("point_id", ())):
                    totals.add(
                        write_batch(
                            client, self.collection, batch, write_batch_size=self.write_batch_size, retry=self.retry
                        )
                    )
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()
        return _tally(totals)

    def on_write_complete(self, write_result: Any) -> None:
        self.results = [counts for counts in write_result.write_returns if counts]

    def get_name(self) -> str:
        return "Qdrant"


def write_batch(
    client: Any, collection: str, batch: Mapping[str, Any], *, write_batch_size: int, retry: RetryPolicy
) -> dict[str, Any]:
    """Write the embedded rows of a pipeline batch with :func:`write_points` and count every row by its state."""
    status = np.asarray(batch["status"], dtype=object)
    new = np.flatnonzero(status == NEW)
    points = to_points(
        [str(batch["point_id"][i]) for i in new],
        [{"page_content": str(batch["text"][i]), "metadata": json.loads(str(batch["metadata"][i]))} for i in new],
        np.asarray(batch["vector"])[new],
    )
    outcome = write_points(client, collection, points, batch_size=write_batch_size, policy=retry)
    bad = np.flatnonzero(status == BAD)
    return {
        "embedded": outcome.written,
        "failed_ids": outcome.failed_ids,
        "write_error": outcome.error,
        "skipped_present": int((status == PRESENT).sum()),
        "duplicates": int((status == DUPLICATE).sum()),
        "bad_rows": len(bad),
        "bad_row_examples": [f"{batch['where'][i]}: {batch['problem'][i]}" for i in bad[:20]],
    }


# -- pieces shipped to workers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ModelReference:
    """How an actor gets the model: load a spec (with options), or fetch a model object from the object store."""

    spec: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    instance_ref: Any = None
    instance: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, model: Any, options: Mapping[str, Any] | None) -> _ModelReference:
        options = {key: value for key, value in (options or {}).items() if value is not None}
        if isinstance(model, (str, os.PathLike)):
            return cls(spec=os.fspath(model), options=options)
        if options:
            raise ValueError(f"load options {sorted(options)} only apply when the model is a spec")
        from laser_integrations.embedder import resolve_model

        return cls(instance=resolve_model(model))

    def shipped(self) -> _ModelReference:
        """Ready for the actors: a model object goes to the object store once (a spec travels as it is)."""
        if self.instance is None or self.instance_ref is not None:
            return self
        return _ModelReference(instance_ref=ray.put(self.instance), instance=self.instance)

    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "options": dict(self.options), "instance_ref": self.instance_ref, "instance": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            object.__setattr__(self, key, value)

    def load(self, use_gpu: bool) -> SentenceTransformer:
        device = "cuda" if use_gpu else "cpu"
        if self.spec is not None:
            from laser_integrations.loading import load_model

            options = dict(self.options)
            options.setdefault("device", device)
            return load_model(self.spec, **options)
        model = ray.get(self.instance_ref)
        return model.to(device)


def _everything_stored(
    source: Source,
    client: Any,
    collection: str,
    report: IndexReport,
    chunk_size: int,
    skip_bad_rows: bool,
    retry: RetryPolicy,
) -> bool:
    """Read the ids in the driver until one is missing; if none is, count the whole corpus into ``report``."""
    scan = IndexReport(report.collection, report.engine)
    for chunk, bad in iter_chunks(documents(source, skip_bad_rows=skip_bad_rows), chunk_size):
        count_bad_rows(scan, bad)
        unique = unique_in_chunk(chunk, scan)
        present = stored_ids(client, collection, [document.point_id for document in unique], retry)
        if len(present) < len(unique):
            return False
        scan.skipped_present += len(unique)
    report.add(_tally(scan))
    return True


def _provenance_record(reference: _ModelReference, use_gpu: bool) -> dict[str, Any]:
    return model_provenance(reference.load(use_gpu)).to_dict()


def _read_shards(batch: dict[str, np.ndarray], source: Source, chunk_size: int, skip_bad_rows: bool) -> Any:
    """Ray read step: the rows of the batch's shards, ``chunk_size`` at a time, as pipeline columns."""
    for shard_index in batch["shard"]:
        columns: dict[str, list[str]] = _empty_columns()
        for row in shard_documents(source, source.shards[int(shard_index)], skip_bad_rows=skip_bad_rows):
            if isinstance(row, Document):
                values = (row.point_id, row.doc_id, row.text, json.dumps(row.metadata), row.where, NEW, "")
            else:
                values = ("", "", "", "{}", row.where, BAD, row.problem)
            for name, value in zip(_COLUMNS, values, strict=True):
                columns[name].append(value)
            if len(columns["point_id"]) >= chunk_size:
                yield _as_arrays(columns)
                columns = _empty_columns()
        if columns["point_id"]:
            yield _as_arrays(columns)


_COLUMNS = ("point_id", "doc_id", "text", "metadata", "where", "status", "problem")


def _empty_columns() -> dict[str, list[str]]:
    return {name: [] for name in _COLUMNS}


def _as_arrays(columns: dict[str, list[str]]) -> dict[str, np.ndarray]:
    return {name: np.array(values, dtype=object) for name, values in columns.items()}


@dataclass(frozen=True)
class _StoredSnapshot:
    """The ids an embedded collection held when the job started, answering ``retrieve`` like a client."""

    ids: frozenset[str]

    @classmethod
    def of(cls, client: QdrantClient, collection: str) -> _StoredSnapshot:
        ids: set[str] = set()
        offset = None
        while True:
            records, offset = client.scroll(
                collection, limit=10_000, offset=offset, with_payload=False, with_vectors=False
            )
            ids.update(str(record.id) for record in records)
            if offset is None:
                return cls(frozenset(ids))

    def retrieve(self, collection: str, ids: Sequence[str], **_: Any) -> list[Any]:
        return [_Record(point_id) for point_id in ids if point_id in self.ids]


@dataclass(frozen=True)
class _Record:
    id: str


def _resolved(value: Any) -> Any:
    return ray.get(value) if isinstance(value, ray.ObjectRef) else value


def _client_from_options(options: dict[str, Any]) -> Any:
    from qdrant_client import QdrantClient

    return QdrantClient(**options)


def _is_embedded(client: Any) -> bool:
    options = getattr(client, "init_options", None) or {}
    return options.get("path") is not None or options.get("location") == ":memory:"


def _tally(report: IndexReport) -> dict[str, Any]:
    return {
        "embedded": report.embedded,
        "skipped_present": report.skipped_present,
        "bad_rows": report.bad_rows,
        "duplicates": report.duplicates,
        "failed_ids": report.failed_ids,
        "bad_row_examples": report.bad_row_examples,
        "write_error": report.write_error,
    }


def _data_context() -> Any:
    with warnings.catch_warnings():  # Ray's own default context trips its own deprecation (use_push_based_shuffle)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ray.data.DataContext.get_current()


def _user_error(error: BaseException) -> BaseException | None:
    """The bad row or provenance error inside a Ray task failure, rebuilt without Ray's wrapping."""
    from laser_integrations.qdrant import ProvenanceMismatchError

    stack: list[Any] = [error]
    seen: set[int] = set()
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BadRowError):
            return BadRowError(current.where, current.problem)
        if isinstance(current, ProvenanceMismatchError) and not isinstance(current, ray.exceptions.RayError):
            return current
        stack.extend([getattr(current, "cause", None), current.__cause__, current.__context__])
    return None
