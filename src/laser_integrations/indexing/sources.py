"""Corpus readers for ``laser index``: JSONL, Parquet, a BEIR folder or a saved Hugging Face dataset, streamed.

A :class:`Source` is a list of shards (a file, a Parquet row-group range, an Arrow file of a dataset
saved with ``Dataset.save_to_disk``; :mod:`~laser_integrations.indexing.shards`). The job reads them in
the calling process, whatever the engine, so a row gets the same point id, text and error message
everywhere. Rows are streamed: nothing holds more than one chunk of a shard at a time.

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

import json
import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from laser_integrations.formatting import passage_text
from laser_integrations.indexing.shards import (
    Shard,
    Unparsable,
    find_shards,
    jsonl_records,
    records,
    schema_names,
    shard_rows,
)

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
class Source:
    """A corpus on disk: its shards, in order, and the resolved :class:`Fields`. Picklable."""

    location: str
    shards: tuple[Shard, ...]
    fields: Fields = field(default_factory=Fields)

    def estimated_rows(self) -> int | None:
        """Rows in the corpus (JSONL: newline count, an upper bound with blank lines), for the progress bar."""
        total = 0
        for shard in self.shards:
            count = shard_rows(shard)
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
    shards = tuple(find_shards(path, split))
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
    for where, record in records(shard, _columns_to_read(shard, source.fields)):
        try:
            yield to_document(record, source.fields, where)
        except BadRowError as error:
            if not skip_bad_rows:
                raise
            yield BadRow(error.where, error.problem)


def to_document(record: Any, fields: Fields, where: str) -> Document:
    """Check one parsed row and build its :class:`Document` (``BadRowError`` names ``where`` and the problem)."""
    if isinstance(record, Unparsable):
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


def _columns_to_read(shard: Shard, fields: Fields) -> list[str]:
    names = schema_names(shard) or []
    wanted = [fields.id, fields.text, fields.title, *fields.payload]
    return [name for name in dict.fromkeys(wanted) if name is not None and name in names]


def _resolve_fields(location: str, shards: Sequence[Shard], fields: Fields) -> Fields:
    """Check the columns a table has and pick the id field once, so every reader agrees on it."""
    names: list[str] | None = None
    first_record: Any = None
    if shards:
        names = schema_names(shards[0])
        if names is None:  # JSONL: the first parsable row stands for the file
            for _, record in jsonl_records(shards[0].path):
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


def _json_ready(value: Any) -> Any:
    """A payload value Qdrant can store (JSON): dates, decimals, bytes ... become strings."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return json.loads(json.dumps(value, default=str))
