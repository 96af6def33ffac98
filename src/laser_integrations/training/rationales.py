"""Write the ``rationale`` column LaSER trains its explicit view on (``laser rationales``).

A rationale is what a reasoner writes for a query when asked the paper's Table 1 prompt
(:func:`~laser_integrations.formatting.rationale_prompt`). Two sources write them:

- a local causal LM: the project's one generator,
  :class:`~laser_integrations.rewrite.generator.RationaleGenerator` (batched, left padded, greedy, chat
  template with Qwen3 thinking off), the same one the rewrite chain uses;
- :func:`request_rationales`: an OpenAI-compatible ``/v1/chat/completions`` endpoint (vLLM, llama.cpp
  server, Ollama, a hosted API), over plain ``urllib``.

:func:`write_rationales` runs either over a dataset and appends each finished batch to a JSONL file,
flushed and synced, so a crash loses nothing already written and a rerun resumes where it stopped.

>>> from laser_integrations.rewrite import RationaleGenerator                   # doctest: +SKIP
>>> generator = RationaleGenerator.from_pretrained("Qwen/Qwen3-4B", max_new_tokens=512)  # doctest: +SKIP
>>> write_rationales(rows, "with_rationales.jsonl", generator.generate)         # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from laser_integrations.formatting import rationale_prompt
from laser_integrations.validation import checked_strings

logger = logging.getLogger(__name__)

Generator = Callable[[list[str]], list[str]]
"""Queries in, one rationale per query out."""


def request_rationales(
    queries: Sequence[str],
    endpoint: str,
    *,
    model: str,
    api_key: str | None = None,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    timeout: float = 300.0,
    concurrency: int = 4,
    retries: int = 2,
    prompt: Callable[[str], str] = rationale_prompt,
) -> list[str]:
    """Write one rationale per query with an OpenAI-compatible chat-completions endpoint.

    Args:
        queries: The queries.
        endpoint: The server's base URL (``http://localhost:8000``), its ``/v1``, or the full
            ``/v1/chat/completions`` URL.
        model: The model name the server expects.
        api_key: Sent as ``Authorization: Bearer ...`` when given.
        max_tokens, temperature: Generation settings sent with each request (greedy by default).
        timeout: Seconds to wait for one response.
        concurrency: Requests in flight at once.
        retries: Extra attempts after a connection error, 429 or 5xx (with a short back-off).
        prompt: Builds the user message for one query.

    Returns:
        The rationales (each response's first choice, stripped), in the order of ``queries``.
    """
    queries = checked_strings(queries, "query")
    url = chat_completions_url(endpoint)
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"

    def one(query: str) -> str:
        body = {
            "model": model,
            "messages": [{"role": "user", "content": prompt(query)}],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        return _post_chat(url, body, headers, timeout=timeout, retries=retries)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return list(pool.map(one, queries))


def chat_completions_url(endpoint: str) -> str:
    """``http://host:8000`` or ``.../v1`` -> ``.../v1/chat/completions`` (a full URL is kept as is)."""
    url = endpoint.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"endpoint must be an http(s) URL, got {endpoint!r}")
    if url.endswith("/chat/completions"):
        return url
    return url + ("/chat/completions" if url.endswith("/v1") else "/v1/chat/completions")


def _post_chat(url: str, body: dict[str, Any], headers: dict[str, str], *, timeout: float, retries: int) -> str:
    data = json.dumps(body).encode("utf8")
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                payload = json.loads(response.read().decode("utf8"))
            break
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf8", "replace")[:300]
            if (error.code == 429 or error.code >= 500) and attempt < retries:
                time.sleep(2**attempt)
                continue
            raise RuntimeError(f"{url} answered HTTP {error.code}: {detail}") from None
        except urllib.error.URLError as error:
            if attempt < retries:
                time.sleep(2**attempt)
                continue
            raise RuntimeError(f"could not reach {url}: {error.reason}") from None
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise RuntimeError(f"{url} returned no choices[0].message.content: {json.dumps(payload)[:300]}") from None
    return (content or "").strip()


def write_rationales(
    rows: Iterable[Mapping[str, Any]],
    output: str | os.PathLike[str],
    generate: Generator,
    *,
    batch_size: int = 16,
    query_column: str = "query",
    id_column: str | None = None,
    overwrite: bool = False,
) -> int:
    """Add a ``rationale`` to every row and append the rows to a JSONL file, resumably.

    Rows already in ``output`` are skipped: by their ``id_column`` value when given, otherwise by
    position (the file then holds the first N input rows, in order, which is checked). A line cut off
    by a crash is dropped and redone. Each batch is flushed and synced to disk before the next starts.

    Args:
        rows: The input rows (a ``datasets.Dataset``, a list of dicts, ...), each with ``query_column``.
        output: The JSONL file to append to (created if missing).
        generate: Turns a list of queries into their rationales, e.g.
            ``RationaleGenerator.from_pretrained(...).generate``.
        batch_size: Rows per ``generate`` call and per write.
        query_column: The column holding the query.
        id_column: A column identifying rows across runs (default: row position).
        overwrite: Regenerate rows that already carry a non-empty ``rationale`` (default: keep those).

    Returns:
        The number of rows written by this call.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(output)
    done_ids, done_rows = _resume_state(path, id_column, query_column)
    written, batch = 0, []
    with path.open("a", encoding="utf8") as handle:
        for position, row in enumerate(rows):
            if query_column not in row:
                raise ValueError(f"row {position} has no {query_column!r} column; it has {sorted(row)}")
            if id_column is not None:
                if id_column not in row:
                    raise ValueError(f"row {position} has no id column {id_column!r}")
                if _id_key(row[id_column]) in done_ids:
                    continue
            elif position < len(done_rows):
                if done_rows[position] != row[query_column]:
                    raise ValueError(
                        f"{path} line {position + 1} is for query {done_rows[position]!r:.60}, but input row "
                        f"{position} is {row[query_column]!r:.60}: it was written from other input; use a new "
                        "output file or pass id_column"
                    )
                continue
            batch.append(dict(row))
            if len(batch) == batch_size:
                written += _write_batch(handle, batch, generate, query_column, overwrite)
                batch = []
        if batch:
            written += _write_batch(handle, batch, generate, query_column, overwrite)
    return written


def _write_batch(handle: Any, batch: list[dict[str, Any]], generate: Generator, column: str, overwrite: bool) -> int:
    todo = [row for row in batch if overwrite or not _has_rationale(row)]
    if todo:
        rationales = generate([row[column] for row in todo])
        if len(rationales) != len(todo):
            raise RuntimeError(f"the generator returned {len(rationales)} rationales for {len(todo)} queries")
        for row, rationale in zip(todo, rationales, strict=True):
            row["rationale"] = rationale
    handle.write("".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in batch))
    handle.flush()
    os.fsync(handle.fileno())
    return len(batch)


def _resume_state(path: Path, id_column: str | None, query_column: str) -> tuple[set[str], list[Any]]:
    """What ``path`` already holds (ids, or queries in order), after cutting off a partly written last line."""
    if not path.exists():
        return set(), []
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1]
    if len(complete) != len(raw):
        logger.warning("%s ends with a partly written line (an interrupted run); it is dropped and redone", path)
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    records = [json.loads(line) for line in complete.decode("utf8").splitlines() if line.strip()]
    if id_column is not None:
        return {_id_key(record.get(id_column)) for record in records}, []
    return set(), [record.get(query_column) for record in records]


def _id_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _has_rationale(row: Mapping[str, Any]) -> bool:
    value = row.get("rationale")
    return isinstance(value, str) and bool(value.strip())
