"""Corpus readers for ``laser index``: JSONL, Parquet, a BEIR folder or a saved Hugging Face dataset, streamed.

A :class:`Source` is a list of shards (a file, a Parquet row-group range, an Arrow file of a dataset
saved with ``Dataset.save_to_disk``). Every engine reads the same shards with the same code, so a
row gets the same point id, the same text and the same error message whether one process or a Ray
cluster reads it. Rows are streamed: nothing holds more than one chunk of a shard at a time.

Each row becomes a :class:`Document` (its point id, the text to embed, the LangChain payload) or,
when it is malformed, a :class:`BadRow` naming the file and line (``corpus.jsonl:17``) or row
(``corpus.parquet:row 17``). :func:`documents` raises :class:`BadRowError` on the first bad row
unless asked to skip them.

Example:
    >>> from laser_integrations.evaluation.beir import bundled_dataset_path
    >>> source = open_source(bundled_dataset_path("pyref"))
    >>> source.fields.id, source.estimated_rows()
    ('_id', 275)
    >>> first = next(documents(source))
    >>> first.doc_id, first.where.endswith("corpus.jsonl:1")
    ('assert-1', True)
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from laser_integrations.formatting import passage_text

__all__ = [
    "AUTO",
    "BadRow",
    "BadRowError",
    "Document",
    "MAX_PAYLOAD_CHARS",
    "Fields",
    "Shard",
    "Source",
    "documents",
    "document_point_id",
    "open_source",
]

AUTO = "auto"
"""``Fields.id`` default: ``_id`` or ``id`` when the rows have one, else ids from the content."""

DOC_ID_NAMESPACE = uuid.UUID("0b8f4f8e-55c2-5d55-9a43-3c2f0b9b7e11")
"""uuid5 namespace of point ids made from document ids (content ids: :func:`laser_integrations.qdrant.content_id`)."""

RESERVED_METADATA = ("doc_id", "title", "page_content_chars")
MAX_PAYLOAD_CHARS = 65_536
"""Default cap on the text stored in a point's ``page_content`` (``--max-payload-chars``; ``None``: no cap). The
model reads only ``max_seq_length`` tokens of a document (about 2,000 characters at 512), so a 5 MB row would
otherwise put 5 MB into the store for nothing. A cut payload records the full length as
``metadata.page_content_chars``."""
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW_GROUPS_PER_SHARD = 8
"""A Parquet file with many row groups is cut into shards of this many, so a cluster reads it in parallel."""


class BadRowError(ValueError):
    """A corpus row cannot be indexed; the message starts with ``file:line:`` (or ``file:row N:``)."""

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling across processes (Ray, multiprocessing)
        return (type(self), (self.where, self.problem))


@dataclass(frozen=True)
class Fields:
    """Which fields of a row hold the id, the text, the title and the extra payload.

    Attributes:
        id: The document id field; :data:`AUTO` picks ``_id`` or ``id`` when the rows have one, ``None``
            always derives ids from the content (:func:`laser_integrations.qdrant.content_id`).
        text: The text field (required in every row).
        title: The title field (optional in a row; joined to the text as ``laser eval`` joins BEIR passages).
        payload: Extra fields copied into the point's ``metadata``.
    """

    id: str | None = AUTO
    text: str = "text"
    title: str | None = "title"
    payload: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "payload", tuple(self.payload))
        clash = [name for name in self.payload if name in RESERVED_METADATA]
        if clash:
            raise ValueError(f"payload fields {clash} clash with the metadata the indexer writes: {RESERVED_METADATA}")
        if not self.text:
            raise ValueError("the text field name must not be empty")


@dataclass(frozen=True)
class Document:
    """One row, ready to embed and store."""

    point_id: str
    """The Qdrant point id: uuid5 of the document id, or the content id when there is none."""
    doc_id: str
    """The original id (the point id for rows without one), stored as ``metadata.doc_id``."""
    text: str
    """What gets embedded: title and text joined by BEIR's ``Passage.as_text`` (what ``laser eval`` embeds)."""
    metadata: dict[str, Any]
    """``{"doc_id", "title", payload fields...}``: LangChain's ``metadata`` payload key."""
    where: str
    """``file:line`` (JSONL) or ``file:row N`` (Parquet, Arrow), for messages."""

    def payload(self, max_chars: int | None = MAX_PAYLOAD_CHARS) -> dict[str, Any]:
        """The point payload in LangChain's layout (``langchain_qdrant.QdrantVectorStore`` reads it).

        ``page_content`` is cut at ``max_chars`` characters (``None``: kept whole); a cut one records the full
        length as ``metadata.page_content_chars``.

        Example:
            >>> Document("p", "d", "abcdef", {"doc_id": "d", "title": ""}, "c.jsonl:1").payload(max_chars=4)
            {'page_content': 'abcd', 'metadata': {'doc_id': 'd', 'title': '', 'page_content_chars': 6}}
        """
        if max_chars is None or len(self.text) <= max_chars:
            return {"page_content": self.text, "metadata": self.metadata}
        metadata = {**self.metadata, "page_content_chars": len(self.text)}
        return {"page_content": self.text[:max_chars], "metadata": metadata}


@dataclass(frozen=True)
class BadRow:
    """A row that cannot be indexed, kept only to be counted (``skip_bad_rows``)."""

    where: str
    problem: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem}"


@dataclass(frozen=True)
class Shard:
    """A piece of a source read by one reader: a JSONL file, Parquet row groups ``[start, stop)``, an Arrow file."""

    kind: str
    """``"jsonl"``, ``"parquet"`` or ``"arrow"``."""
    path: str
    start: int = 0
    stop: int | None = None


@dataclass(frozen=True)
class Source:
    """A corpus on disk: its shards, in order, and the resolved :class:`Fields`. Picklable (Ray ships it)."""

    location: str
    shards: tuple[Shard, ...]
    fields: Fields = field(default_factory=Fields)

    def estimated_rows(self) -> int | None:
        """Rows in the corpus (JSONL: newline count, an upper bound with blank lines), for the progress bar."""
        total = 0
        for shard in self.shards:
            count = _shard_rows(shard)
            if count is None:
                return None
            total += count
        return total


def open_source(
    location: str | os.PathLike[str],
    fields: Fields | None = None,
    *,
    split: str | None = None,
) -> Source:
    """Find the shards of a corpus and resolve its id field.

    Args:
        location: A ``.jsonl``/``.jsonl.gz``/``.json`` (JSON Lines) or ``.parquet`` file; a BEIR folder (holds
            ``corpus.jsonl``); a folder saved by ``datasets`` (``Dataset.save_to_disk``; a ``DatasetDict`` needs
            ``split`` unless it has one split or a ``corpus`` split); or a folder of ``.jsonl`` or ``.parquet`` files.
        fields: Field names (default: ``_id``/``id``, ``text``, ``title``, no payload).
        split: The split of a saved ``DatasetDict``.

    Raises:
        FileNotFoundError: Nothing at ``location``, or a folder without a corpus in it.
        ValueError: An unknown file type, a missing text or id column, an unknown split.

    Example:
        >>> open_source("corpus.parquet", Fields(id="doc", text="body", payload=("url",)))  # doctest: +SKIP
    """
    fields = fields or Fields()
    path = Path(location)
    if not path.exists():
        raise FileNotFoundError(f"corpus not found: {path}")
    shards = tuple(_find_shards(path, split))
    return Source(str(path), shards, _resolve_fields(str(path), shards, fields))


def document_point_id(doc_id: str) -> str:
    """The point id of a document id: the same id on every run, so a rerun overwrites instead of adding.

    Example:
        >>> document_point_id("doc-1") == document_point_id("doc-1") != document_point_id("doc-2")
        True
    """
    return str(uuid.uuid5(DOC_ID_NAMESPACE, doc_id))


def documents(source: Source, *, skip_bad_rows: bool = False) -> Iterator[Document | BadRow]:
    """Every row of every shard, in order, as a :class:`Document` (or a :class:`BadRow` when skipping them).

    Raises:
        BadRowError: The first malformed row, unless ``skip_bad_rows``.
    """
    for shard in source.shards:
        yield from shard_documents(source, shard, skip_bad_rows=skip_bad_rows)


def shard_documents(source: Source, shard: Shard, *, skip_bad_rows: bool = False) -> Iterator[Document | BadRow]:
    """The rows of one shard (what one Ray read task runs)."""
    for where, record in _records(shard, source.fields):
        try:
            yield to_document(record, source.fields, where)
        except BadRowError as error:
            if not skip_bad_rows:
                raise
            yield BadRow(error.where, error.problem)


def to_document(record: Any, fields: Fields, where: str) -> Document:
    """Check one parsed row and build its :class:`Document` (``BadRowError`` names ``where`` and the problem)."""
    if isinstance(record, _Unparsable):
        raise BadRowError(where, record.problem)
    if not isinstance(record, Mapping):
        raise BadRowError(where, f"expected a JSON object, got {type(record).__name__}")
    text = record.get(fields.text)
    if fields.text not in record:
        raise BadRowError(where, f"no {fields.text!r} field (the text to embed; name it with --text-field)")
    if not isinstance(text, str):
        raise BadRowError(where, f"{fields.text!r} must be a string, got {type(text).__name__}")
    title = record.get(fields.title) if fields.title else None
    if title is None:
        title = ""
    if not isinstance(title, str):
        raise BadRowError(where, f"{fields.title!r} must be a string, got {type(title).__name__}")
    doc_id = None
    if fields.id is not None:
        doc_id = record.get(fields.id)
        if isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        if not isinstance(doc_id, str) or not doc_id:
            raise BadRowError(where, f"{fields.id!r} must be a non-empty string or integer id, got {doc_id!r}")
    embedded = passage_text(text, title)
    if not embedded.strip():
        name = f"document {doc_id!r}" if doc_id else "the document"
        raise BadRowError(where, f"{name} has no text to embed (empty {fields.text!r} and title)")
    extra = {name: _json_ready(record[name]) for name in fields.payload if name in record}
    if doc_id is None:
        from laser_integrations.qdrant import content_id

        point_id = doc_id = content_id(embedded, extra or None)
    else:
        point_id = document_point_id(doc_id)
    return Document(point_id, doc_id, embedded, {"doc_id": doc_id, "title": title, **extra}, where)


# -- shards ---------------------------------------------------------------------------------------------


def _find_shards(path: Path, split: str | None) -> list[Shard]:
    if path.is_file():
        return _file_shards(path)
    if (path / "corpus.jsonl").is_file():  # BEIR
        return [Shard("jsonl", str(path / "corpus.jsonl"))]
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return _saved_dataset_shards(path, split)
    files = sorted(p for p in path.iterdir() if p.is_file() and _kind(p) is not None)
    kinds = {_kind(p) for p in files}
    if not files:
        raise FileNotFoundError(
            f"{path} holds no corpus: expected corpus.jsonl (BEIR), a dataset saved with save_to_disk, "
            "or .jsonl/.parquet files"
        )
    if len(kinds) > 1:
        raise ValueError(f"{path} mixes JSONL and Parquet files; index one format at a time")
    return [shard for file in files for shard in _file_shards(file)]


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _file_shards(path: Path) -> list[Shard]:
    kind = _kind(path)
    if kind == "jsonl":
        return [Shard("jsonl", str(path))]
    if kind == "parquet":
        pq = _pyarrow().parquet

        groups = pq.ParquetFile(path).metadata.num_row_groups
        step = ROW_GROUPS_PER_SHARD
        return [Shard("parquet", str(path), start, min(start + step, groups)) for start in range(0, groups, step)] or [
            Shard("parquet", str(path), 0, 0)
        ]
    raise ValueError(
        f"{path}: unknown corpus format; expected .jsonl, .jsonl.gz, .json (JSON Lines) or .parquet, "
        "a BEIR folder, or a folder saved by datasets"
    )


def _saved_dataset_shards(path: Path, split: str | None) -> list[Shard]:
    if (path / "dataset_dict.json").is_file():
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf8")).get("splits", [])
        if split is None:
            split = "corpus" if "corpus" in splits else (splits[0] if len(splits) == 1 else None)
        if split is None or split not in splits:
            wanted = "pass --split" if split is None else f"no split {split!r}"
            raise ValueError(f"{path} is a DatasetDict with splits {splits}: {wanted}")
        path = path / split
    elif split is not None:
        raise ValueError(f"{path} is a single saved dataset (no splits); drop --split {split}")
    state = json.loads((path / "state.json").read_text(encoding="utf8"))
    return [Shard("arrow", str(path / item["filename"])) for item in state.get("_data_files", [])]


def _shard_rows(shard: Shard) -> int | None:
    if shard.kind == "parquet":
        pq = _pyarrow().parquet

        metadata = pq.ParquetFile(shard.path).metadata
        stop = metadata.num_row_groups if shard.stop is None else shard.stop
        return sum(metadata.row_group(index).num_rows for index in range(shard.start, stop))
    if shard.kind == "arrow":
        return sum(batch.num_rows for batch in _arrow_batches(shard.path, None))
    if shard.path.endswith(".gz"):
        return None
    count, last = 0, b"\n"
    with open(shard.path, "rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


# -- records ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Unparsable:
    problem: str


def _records(shard: Shard, fields: Fields) -> Iterator[tuple[str, Any]]:
    """``(where, parsed row)`` per row of a shard."""
    if shard.kind == "jsonl":
        yield from _jsonl_records(shard.path)
        return
    columns = _columns_to_read(shard, fields)
    first = 1
    if shard.kind == "parquet":
        pq = _pyarrow().parquet

        parquet = pq.ParquetFile(shard.path)
        metadata = parquet.metadata
        first += sum(metadata.row_group(index).num_rows for index in range(shard.start))
        stop = metadata.num_row_groups if shard.stop is None else shard.stop
        groups = list(range(shard.start, stop))
        batches = parquet.iter_batches(batch_size=1024, row_groups=groups, columns=columns) if groups else iter(())
    else:
        batches = _arrow_batches(shard.path, columns)
    for batch in batches:
        for offset, record in enumerate(batch.to_pylist()):
            yield f"{shard.path}:row {first + offset}", record
        first += batch.num_rows


def _jsonl_records(path: str) -> Iterator[tuple[str, Any]]:
    """Each line decoded on its own: a bad byte spoils only its line, and line numbers stay exact."""
    opener = gzip.open if path.endswith(".gz") else open
    offset = 0
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            start, offset = offset, offset + len(raw)
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as error:
                problem = f"not valid UTF-8 at byte {start + error.start} of the file ({error.reason})"
                yield f"{path}:{number}", _Unparsable(problem)
                continue
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                yield f"{path}:{number}", _Unparsable(f"not valid JSON ({error.msg} at column {error.colno})")


def _arrow_batches(path: str, columns: list[str] | None) -> Iterator[Any]:
    pa = _pyarrow()

    with pa.memory_map(path) as source:
        for batch in pa.ipc.open_stream(source):
            yield batch.select(columns) if columns is not None else batch


def _schema_names(shard: Shard) -> list[str] | None:
    pa = _pyarrow()
    pq = pa.parquet

    if shard.kind == "parquet":
        return list(pq.ParquetFile(shard.path).schema_arrow.names)
    if shard.kind == "arrow":
        with pa.memory_map(shard.path) as source:
            return list(pa.ipc.open_stream(source).schema.names)
    return None


def _columns_to_read(shard: Shard, fields: Fields) -> list[str]:
    names = _schema_names(shard) or []
    wanted = [fields.id, fields.text, fields.title, *fields.payload]
    return [name for name in dict.fromkeys(wanted) if name is not None and name in names]


def _resolve_fields(location: str, shards: Sequence[Shard], fields: Fields) -> Fields:
    """Check the columns a table has and pick the id field once, so every reader agrees on it."""
    names: list[str] | None = None
    first_record: Any = None
    if shards:
        names = _schema_names(shards[0])
        if names is None:  # JSONL: the first parsable row stands for the file
            for _, record in _jsonl_records(shards[0].path):
                if isinstance(record, Mapping):
                    first_record = record
                    break
            names = list(first_record) if first_record is not None else None
    if names is None:  # an empty corpus: nothing to resolve
        return replace(fields, id=None) if fields.id == AUTO else fields
    table = shards[0].kind != "jsonl"
    if table and fields.text not in names:
        raise ValueError(f"{shards[0].path}: no column {fields.text!r} (columns: {names}); name it with --text-field")
    missing = [name for name in fields.payload if table and name not in names]
    if missing:
        raise ValueError(f"{shards[0].path}: no payload column(s) {missing} (columns: {names})")
    if fields.id == AUTO:
        return replace(fields, id=next((name for name in ("_id", "id") if name in names), None))
    if table and fields.id is not None and fields.id not in names:
        raise ValueError(f"{shards[0].path}: no id column {fields.id!r} (columns: {names}); name it with --id-field")
    return fields


def _pyarrow() -> Any:
    """``pyarrow`` with its ``parquet`` and ``ipc`` modules, or an ``ImportError`` that says what to install."""
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:  # pragma: no cover - exercised only without pyarrow
        raise ImportError("reading Parquet or a saved dataset needs pyarrow: pip install pyarrow") from error
    return pyarrow


def _json_ready(value: Any) -> Any:
    """A payload value Qdrant can store (JSON): dates, decimals, bytes ... become strings."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return json.loads(json.dumps(value, default=str))
