"""Load a BEIR-format retrieval dataset: ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.

The layout is the one ``beir.datasets.data_loader.GenericDataLoader`` reads, so any BEIR dataset
folder works, and so does the bundled ``pyref`` set (Python Language Reference passages with
user-style questions). Malformed input fails with a :class:`BeirFormatError` that names the file
and the line, never with a ``KeyError`` three calls later.

>>> dataset = load_beir(bundled_dataset_path("pyref"))
>>> len(dataset.corpus), len(dataset.queries)
(275, 123)
>>> dataset.queries["q001"][:45]
'I append to a parameter that defaults to an e'
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from laser_integrations.formatting import passage_text

BUNDLED_DATASETS = ("pyref",)
"""Datasets shipped in ``laser_integrations/data`` (BEIR format)."""


class BeirFormatError(ValueError):
    """A BEIR file is malformed; the message starts with ``file:line:``."""

    def __init__(self, path: Path | str, line: int | None, problem: str) -> None:
        self.path = Path(path)
        self.line = line
        location = f"{self.path}:{line}" if line is not None else str(self.path)
        super().__init__(f"{location}: {problem}")


@dataclass(frozen=True)
class Passage:
    """One corpus entry."""

    id: str
    text: str
    title: str = ""

    def as_text(self) -> str:
        """What gets embedded: ``title + " " + text`` (the text alone when untitled), as BEIR and MTEB join them,
        so a corpus gets the same vectors here as in the MTEB runs the released checkpoints were scored with."""
        return passage_text(self.text, self.title)


@dataclass
class BeirDataset:
    """A retrieval dataset in memory: passages, queries and graded relevance judgements.

    Only queries with at least one positive judgement are kept in :attr:`queries`, as BEIR does.
    """

    corpus: dict[str, Passage]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    name: str = "dataset"
    split: str = "test"
    folder: Path | None = field(default=None, compare=False)

    def limited(self, limit: int | None) -> BeirDataset:
        """The same dataset with only its first ``limit`` queries (in file order); all of it for ``None``."""
        if limit is None:
            return self
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        kept = dict(list(self.queries.items())[:limit])
        qrels = {query_id: self.qrels[query_id] for query_id in kept}
        return BeirDataset(self.corpus, kept, qrels, name=self.name, split=self.split, folder=self.folder)


def bundled_dataset_path(name: str = "pyref") -> Path:
    """Folder of a dataset shipped with the package (``"pyref"``)."""
    if name not in BUNDLED_DATASETS:
        raise ValueError(f"unknown bundled dataset {name!r}; bundled: {', '.join(BUNDLED_DATASETS)}")
    return Path(str(resources.files("laser_integrations") / "data" / name))


def load_beir(folder: str | Path, split: str = "test", *, name: str | None = None) -> BeirDataset:
    """Read a BEIR folder and check it: every line parses, ids are unique, qrels point at known ids.

    Args:
        folder: Holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/{split}.tsv``; or a bundled
            dataset's name (``"pyref"``).
        split: Which qrels file to read.
        name: Shown in reports (default: the folder's name).

    Raises:
        FileNotFoundError: A required file is missing.
        BeirFormatError: A line is not valid (the message names the file and line).

    Example:
        >>> load_beir("pyref").qrels["q001"]
        {'calls-2': 1, 'compound-41': 1}
    """
    root = Path(folder)
    if not root.exists() and str(folder) in BUNDLED_DATASETS:
        root = bundled_dataset_path(str(folder))
    if not root.is_dir():
        raise FileNotFoundError(f"BEIR dataset folder not found: {root}")
    corpus_path, queries_path, qrels_path = (
        root / "corpus.jsonl",
        root / "queries.jsonl",
        root / "qrels" / f"{split}.tsv",
    )
    for path in (corpus_path, queries_path, qrels_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: a BEIR folder holds corpus.jsonl, queries.jsonl and qrels/")

    corpus = {record_id: Passage(record_id, text, title) for record_id, text, title in _read_jsonl(corpus_path)}
    queries = {record_id: text for record_id, text, _ in _read_jsonl(queries_path)}
    qrels = _read_qrels(qrels_path, set(queries), set(corpus))
    if not corpus:
        raise BeirFormatError(corpus_path, None, "the corpus is empty")
    judged = {query_id: docs for query_id, docs in qrels.items() if any(score > 0 for score in docs.values())}
    if not judged:
        raise BeirFormatError(qrels_path, None, "no query has a positive relevance judgement")
    kept_queries = {query_id: text for query_id, text in queries.items() if query_id in judged}
    return BeirDataset(corpus, kept_queries, judged, name=name or root.name, split=split, folder=root)


def _read_jsonl(path: Path) -> list[tuple[str, str, str]]:
    """``(_id, text, title)`` per non-blank line, checking types and uniqueness."""
    records: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BeirFormatError(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(record, dict):
                raise BeirFormatError(path, number, f"expected a JSON object, got {type(record).__name__}")
            record_id, text, title = record.get("_id"), record.get("text"), record.get("title", "")
            if isinstance(record_id, int) and not isinstance(record_id, bool):
                record_id = str(record_id)  # some BEIR sets write numeric ids
            if not isinstance(record_id, str) or not record_id:
                raise BeirFormatError(path, number, f"'_id' must be a non-empty string, got {record_id!r}")
            if not isinstance(text, str):
                raise BeirFormatError(path, number, f"'text' must be a string, got {type(text).__name__}")
            if title is None:
                title = ""
            if not isinstance(title, str):
                raise BeirFormatError(path, number, f"'title' must be a string, got {type(title).__name__}")
            if record_id in seen:
                raise BeirFormatError(path, number, f"duplicate _id {record_id!r} (first on line {seen[record_id]})")
            seen[record_id] = number
            records.append((record_id, text, title))
    return records


def _read_qrels(path: Path, query_ids: set[str], doc_ids: set[str]) -> dict[str, dict[str, int]]:
    """``{query_id: {doc_id: score}}`` from a ``query-id<TAB>corpus-id<TAB>score`` file (header optional)."""
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf8", newline="") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            if not row or not any(cell.strip() for cell in row):
                continue
            if number == 1 and row[0].strip().lower() in {"query-id", "query_id", "qid"}:
                continue
            if len(row) != 3:
                raise BeirFormatError(
                    path, number, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(row)}"
                )
            query_id, doc_id, raw_score = (cell.strip() for cell in row)
            try:
                score = int(raw_score)
            except ValueError:
                raise BeirFormatError(path, number, f"score must be an integer, got {raw_score!r}") from None
            if query_id not in query_ids:
                raise BeirFormatError(path, number, f"query-id {query_id!r} is not in queries.jsonl")
            if doc_id not in doc_ids:
                raise BeirFormatError(path, number, f"corpus-id {doc_id!r} is not in corpus.jsonl")
            qrels.setdefault(query_id, {})[doc_id] = score
    return qrels
