"""The shards of a corpus on disk and the rows in each, parsed: JSONL (each line decoded on its own), Parquet
row-group ranges, and the Arrow files of a dataset saved with ``Dataset.save_to_disk``.

:mod:`~laser_integrations.indexing.sources` turns these rows into documents.

>>> Shard("jsonl", "corpus.jsonl")
Shard(kind='jsonl', path='corpus.jsonl', start=0, stop=None)
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Shard", "Unparsable", "find_shards", "jsonl_records", "records", "schema_names", "shard_rows"]

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
ROW_GROUPS_PER_SHARD = 8
"""A Parquet file with many row groups is cut into shards of this many row groups."""


@dataclass(frozen=True)
class Shard:
    """A piece of a source read by one reader: a JSONL file, Parquet row groups ``[start, stop)``, an Arrow file."""

    kind: str
    """``"jsonl"``, ``"parquet"`` or ``"arrow"``."""
    path: str
    start: int = 0
    stop: int | None = None


def find_shards(path: Path, split: str | None) -> list[Shard]:
    """The shards of the corpus at ``path`` (a file, a BEIR folder, a saved dataset, a folder of files), in order."""
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
        pq = pyarrow_modules().parquet

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


def shard_rows(shard: Shard) -> int | None:
    if shard.kind == "parquet":
        pq = pyarrow_modules().parquet

        metadata = pq.ParquetFile(shard.path).metadata
        stop = metadata.num_row_groups if shard.stop is None else shard.stop
        return sum(metadata.row_group(index).num_rows for index in range(shard.start, stop))
    if shard.kind == "arrow":
        return sum(batch.num_rows for batch in arrow_batches(shard.path, None))
    if shard.path.endswith(".gz"):
        return None
    count, last = 0, b"\n"
    with open(shard.path, "rb") as handle:
        while block := handle.read(1 << 22):
            count += block.count(b"\n")
            last = block[-1:]
    return count + (last != b"\n")


@dataclass(frozen=True)
class Unparsable:
    """A row that could not be parsed (bad bytes, bad JSON), with the problem."""

    problem: str


def records(shard: Shard, columns: list[str] | None = None) -> Iterator[tuple[str, Any]]:
    """``(where, parsed row)`` per row of a shard (``columns``: of a table, the ones to read)."""
    if shard.kind == "jsonl":
        yield from jsonl_records(shard.path)
        return
    first = 1
    if shard.kind == "parquet":
        pq = pyarrow_modules().parquet

        parquet = pq.ParquetFile(shard.path)
        metadata = parquet.metadata
        first += sum(metadata.row_group(index).num_rows for index in range(shard.start))
        stop = metadata.num_row_groups if shard.stop is None else shard.stop
        groups = list(range(shard.start, stop))
        batches = parquet.iter_batches(batch_size=1024, row_groups=groups, columns=columns) if groups else iter(())
    else:
        batches = arrow_batches(shard.path, columns)
    for batch in batches:
        for offset, record in enumerate(batch.to_pylist()):
            yield f"{shard.path}:row {first + offset}", record
        first += batch.num_rows


def jsonl_records(path: str) -> Iterator[tuple[str, Any]]:
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
                yield f"{path}:{number}", Unparsable(problem)
                continue
            if not line.strip():
                continue
            try:
                yield f"{path}:{number}", json.loads(line)
            except json.JSONDecodeError as error:
                yield f"{path}:{number}", Unparsable(f"not valid JSON ({error.msg} at column {error.colno})")


def arrow_batches(path: str, columns: list[str] | None) -> Iterator[Any]:
    pa = pyarrow_modules()

    with pa.memory_map(path) as source:
        for batch in pa.ipc.open_stream(source):
            yield batch.select(columns) if columns is not None else batch


def schema_names(shard: Shard) -> list[str] | None:
    pa = pyarrow_modules()
    pq = pa.parquet

    if shard.kind == "parquet":
        return list(pq.ParquetFile(shard.path).schema_arrow.names)
    if shard.kind == "arrow":
        with pa.memory_map(shard.path) as source:
            return list(pa.ipc.open_stream(source).schema.names)
    return None


def pyarrow_modules() -> Any:
    """``pyarrow`` with its ``parquet`` and ``ipc`` modules, or an ``ImportError`` that says what to install."""
    try:
        import pyarrow
        import pyarrow.ipc
        import pyarrow.parquet  # noqa: F401
    except ImportError as error:  # pragma: no cover - exercised only without pyarrow
        raise ImportError("reading Parquet or a saved dataset needs pyarrow: pip install pyarrow") from error
    return pyarrow
