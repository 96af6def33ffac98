"""Run retrieval modes side by side on the same queries, batched the same way, and time them.

Modes (``parse_mode``):

- ``single``: K = 1, plain last-token pooling (a standard LLM retriever's single pass);
- ``latent``: K latent thinking steps (3, the released setting); ``latent:6`` for any K;
- ``explicit``: rewrite-then-retrieve: a causal LM writes the paper's rationale for the query, then
  the (query, rationale) pair is embedded with LaSER's explicit view (spec section 2).

Documents are always embedded once, with the latent view at the index's K: all three query
vectors live in that one space, which is how the paper compares them.

Timing is interleaved: each query batch runs through every mode in turn (the order rotating from
batch to batch), so a busy neighbour on a shared machine slows all modes alike. A query's latency
is the wall time of the batch that carried it (generation + embedding + search): with
``batch_size=1`` that is single-query latency.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from laser_integrations.evaluation.metrics import DEFAULT_METRICS, evaluate_run
from laser_integrations.evaluation.search import ExactSearch, Searcher
from laser_integrations.provenance import model_name
from laser_integrations.validation import positive_int

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from laser_integrations.evaluation.beir import BeirDataset
    from laser_integrations.rewrite import RationaleGenerator


@dataclass(frozen=True)
class Mode:
    """How queries are turned into vectors."""

    name: str
    """Label in tables and JSON (``single``, ``latent``, ``latent-k6``, ``explicit``)."""
    kind: Literal["latent", "explicit"]
    num_thinking_steps: int | None = None
    """K for a latent mode; ``None`` for explicit."""


def parse_mode(text: str, default_steps: int = 3) -> Mode:
    """``"single"`` (K=1), ``"latent"`` (K=``default_steps``), ``"latent:K"``, or ``"explicit"``.

    Example:
        >>> parse_mode("latent:6")
        Mode(name='latent-k6', kind='latent', num_thinking_steps=6)
    """
    from laser_integrations.latent import check_num_thinking_steps

    name, _, value = text.strip().lower().partition(":")
    if name == "single" and not value:
        return Mode("single", "latent", 1)
    if name == "explicit" and not value:
        return Mode("explicit", "explicit")
    if name == "latent":
        if not value:
            return Mode("latent", "latent", check_num_thinking_steps(default_steps))
        if not value.isdigit():
            raise ValueError(f"mode {text!r}: K after 'latent:' must be a positive integer")
        steps = check_num_thinking_steps(int(value))
        return Mode("latent" if steps == default_steps else f"latent-k{steps}", "latent", steps)
    raise ValueError(f"unknown mode {text!r}; use single, latent, latent:K or explicit")


def parse_modes(texts: Sequence[str], default_steps: int = 3) -> list[Mode]:
    """Parse and de-duplicate modes, keeping their order."""
    modes: list[Mode] = []
    for text in texts:
        mode = parse_mode(text, default_steps)
        if mode not in modes:
            modes.append(mode)
    if not modes:
        raise ValueError("no modes given; use single, latent, latent:K or explicit")
    return modes


@dataclass
class ModeResult:
    """Quality and cost of one mode over all queries."""

    mode: str
    kind: str
    num_thinking_steps: int | None
    metrics: dict[str, float]
    latency_ms_median: float
    """Median over queries of the wall time of the batch that carried the query."""
    latency_ms_p95: float
    encode_seconds: float
    """Total query-side time: rationale generation (explicit) plus query embedding, without search."""
    generate_seconds: float
    """Of which rationale generation (0 for latent modes)."""
    search_seconds: float
    total_seconds: float
    """Everything: encode + search, summed over batches."""
    num_queries: int
    rationales: dict[str, str] = field(default_factory=dict)
    """query id -> rationale written (explicit mode)."""
    run: dict[str, dict[str, float]] = field(default_factory=dict, repr=False)
    """query id -> {doc id: score} (top results), what the metrics were computed from."""

    def to_dict(self, *, include_run: bool = False) -> dict[str, Any]:
        data = asdict(self)
        if not include_run:
            data.pop("run")
        return data


@dataclass
class EvaluationReport:
    """Everything one side-by-side run measured, ready for :mod:`laser_integrations.evaluation.report`."""

    dataset: str
    model: str
    modes: list[ModeResult]
    num_documents: int
    num_queries: int
    document_steps: int
    batch_size: int
    top_k: int
    index_seconds: float | None = None
    generator: str | None = None
    max_new_tokens: int | None = None
    search: str = "exact"
    device: str = ""
    notes: list[str] = field(default_factory=list)

    def mode(self, name: str) -> ModeResult | None:
        return next((result for result in self.modes if result.mode == name), None)

    def cost_ratios(self) -> dict[str, float]:
        """Each mode's total query time as a fraction of the explicit rewrite chain's (needs ``explicit``)."""
        explicit = self.mode("explicit")
        if explicit is None or explicit.total_seconds <= 0:
            return {}
        return {result.mode: result.total_seconds / explicit.total_seconds for result in self.modes}

    def to_dict(self, *, include_runs: bool = False) -> dict[str, Any]:
        data = asdict(self)
        data["modes"] = [result.to_dict(include_run=include_runs) for result in self.modes]
        data["cost_vs_explicit"] = self.cost_ratios()
        return data


def run_modes(
    model: SentenceTransformer,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    searcher: Searcher,
    modes: Sequence[Mode],
    *,
    generator: RationaleGenerator | None = None,
    batch_size: int = 8,
    top_k: int = 100,
    metrics: Sequence[str] = DEFAULT_METRICS,
    prompt: str | None = None,
    warmup: bool = True,
    show_progress_bar: bool = True,
) -> list[ModeResult]:
    """Answer every query in every mode, interleaved batch by batch, and score the runs.

    Args:
        model: A LaSER ``SentenceTransformer``.
        queries: ``{query_id: text}``.
        qrels: ``{query_id: {doc_id: relevance}}``.
        searcher: Where the document vectors live (:class:`ExactSearch`, a Qdrant collection ...).
        modes: What to run (see :func:`parse_mode`).
        generator: Writes rationales for the ``explicit`` mode.
        batch_size: Queries per batch, the same for every mode.
        top_k: Documents retrieved per query (>= the largest metric cutoff).
        metrics: Metric names (:mod:`laser_integrations.evaluation.metrics`).
        prompt: Query prompt (``None``: the model's ``"query"`` prompt).
        warmup: Run one query per mode first, untimed, so one-time costs do not land on the first batch.
        show_progress_bar: One progress bar over the query batches (rationale generation shows inside it).
    """
    from tqdm.auto import tqdm

    if any(mode.kind == "explicit" for mode in modes) and generator is None:
        raise ValueError("the explicit mode needs a rationale generator (generator=RationaleGenerator(...))")
    positive_int("batch_size", batch_size)
    positive_int("top_k", top_k)
    query_ids = list(queries)
    if not query_ids:
        raise ValueError("no queries to run")
    encoders = {mode.name: _query_encoder(model, mode, generator, prompt, show_progress_bar) for mode in modes}
    if warmup:
        _warm_up(model, modes, generator, prompt, queries[query_ids[0]])

    records = {mode.name: _ModeRecord() for mode in modes}
    batches = [query_ids[start : start + batch_size] for start in range(0, len(query_ids), batch_size)]
    progress = tqdm(
        total=len(batches) * len(modes), desc="Answering queries", unit="batch", disable=not show_progress_bar
    )
    with progress:
        for number, batch in enumerate(batches):
            texts = [queries[query_id] for query_id in batch]
            for mode in _rotated(modes, number):
                progress.set_postfix_str(mode.name)
                records[mode.name].add(batch, encoders[mode.name](texts), searcher, top_k)
                progress.update()
    return [records[mode.name].result(mode, qrels, metrics) for mode in modes]


def evaluate_dataset(
    model: SentenceTransformer,
    dataset: BeirDataset,
    modes: Sequence[Mode],
    *,
    generator: RationaleGenerator | None = None,
    document_steps: int | None = None,
    batch_size: int = 8,
    document_batch_size: int = 16,
    top_k: int = 100,
    metrics: Sequence[str] = DEFAULT_METRICS,
    show_progress_bar: bool = True,
) -> EvaluationReport:
    """``laser eval``: embed the corpus (latent view, K = ``document_steps``), then :func:`run_modes` with
    exact search.

    Args:
        model: A LaSER ``SentenceTransformer``.
        dataset: From :func:`~laser_integrations.evaluation.beir.load_beir`.
        modes: What to compare.
        generator: Rationale writer for ``explicit``.
        document_steps: K for documents (``None``: the model's default).
        batch_size: Queries per batch.
        document_batch_size: Passages per forward pass while indexing.
        top_k: Documents retrieved per query.
        metrics: Metric names.
        show_progress_bar: Show progress while indexing and answering.
    """
    steps = document_steps if document_steps is not None else model[0].num_thinking_steps
    doc_ids = list(dataset.corpus)
    start = time.perf_counter()
    vectors = model.encode_document(
        [dataset.corpus[doc_id].as_text() for doc_id in doc_ids],
        num_thinking_steps=steps,
        batch_size=document_batch_size,
        show_progress_bar=show_progress_bar,
        convert_to_numpy=True,
    )
    index_seconds = time.perf_counter() - start
    results = run_modes(
        model,
        dataset.queries,
        dataset.qrels,
        ExactSearch(doc_ids, vectors),
        modes,
        generator=generator,
        batch_size=batch_size,
        top_k=top_k,
        metrics=metrics,
        show_progress_bar=show_progress_bar,
    )
    return EvaluationReport(
        dataset=dataset.name,
        model=model_name(model),
        modes=results,
        num_documents=len(doc_ids),
        num_queries=len(dataset.queries),
        document_steps=steps,
        batch_size=batch_size,
        top_k=top_k,
        index_seconds=index_seconds,
        generator=generator.name if generator is not None else None,
        max_new_tokens=generator.max_new_tokens if generator is not None else None,
        search="exact (dot product over normalized vectors)",
        device=str(model.device),
    )


NOT_LASER_WARNING = (
    "NOTE: {name} is not a trained LaSER model. It runs offline and its speed is real, but its retrieval "
    "quality says nothing about LaSER's: these numbers show the mechanics. For LaSER's quality use "
    "laser-qwen3 (Alibaba-NLP/LaSER-Qwen3-0.6B, downloaded once)."
)
SHIPPED_NOTE = (
    "NOTE: {name} is SmolLM2-135M-Instruct with a LaSER LoRA adapter trained by this package on a 2-core CPU "
    "(model card: {card}). Its numbers show LaSER's training effect in miniature, on a 135M model; for LaSER's "
    "quality use laser-qwen3 (Alibaba-NLP/LaSER-Qwen3-0.6B, downloaded once)."
)
CAVEAT_LINES = {
    "untrained": "not a trained LaSER model: the quality numbers show the mechanics, not LaSER's quality",
    "shipped": "a 135M model with a LaSER adapter trained on a CPU: LaSER's effect in miniature, not LaSER-Qwen3",
    "other": "not a released LaSER checkpoint: its quality reflects LaSER only if trained with LaSER's objective",
}


def model_kind(model: SentenceTransformer) -> str:
    """``released`` (a LaSER alias), ``shipped`` (a package-data adapter), ``untrained`` (smollm2) or ``other``."""
    from laser_integrations.loading import DEMO_MODEL, MODEL_ALIASES
    from laser_integrations.shipped import is_shipped

    name = model_name(model)
    if name in MODEL_ALIASES.values():
        return "released"
    if is_shipped(name):
        return "shipped"
    return "untrained" if name == DEMO_MODEL else "other"


def not_laser_warning(model: SentenceTransformer) -> str | None:
    """What the model's quality numbers mean, when it is not a released LaSER checkpoint (else ``None``)."""
    from laser_integrations.shipped import adapter_dir

    name, kind = model_name(model), model_kind(model)
    if kind == "released":
        return None
    if kind == "untrained":
        return NOT_LASER_WARNING.format(name="SmolLM2-135M-Instruct (the offline 'smollm2' demo model)")
    if kind == "shipped":
        return SHIPPED_NOTE.format(name=repr(name), card=adapter_dir(name) / "README.md")
    return (
        f"NOTE: {name!r} is not a released LaSER checkpoint: its quality numbers reflect LaSER only if it was "
        "trained with LaSER's objective."
    )


def caveat_line(model: SentenceTransformer) -> str | None:
    """:func:`not_laser_warning` in one short line, for a plot's subtitle."""
    kind = model_kind(model)
    return None if kind == "released" else CAVEAT_LINES[kind]


# -- internals ------------------------------------------------------------------------------------------


@dataclass
class _Encoded:
    vectors: np.ndarray
    generate_seconds: float
    encode_seconds: float
    """Generation included."""
    rationales: list[str] | None = None


def _query_encoder(
    model: SentenceTransformer,
    mode: Mode,
    generator: RationaleGenerator | None,
    prompt: str | None,
    show_progress_bar: bool,
) -> Callable[[list[str]], _Encoded]:
    """``texts -> _Encoded`` for one mode, timed."""
    from laser_integrations.rewrite import explicit_query_embeddings

    def latent(texts: list[str]) -> _Encoded:
        start = time.perf_counter()
        vectors = model.encode_query(
            texts, prompt=prompt, num_thinking_steps=mode.num_thinking_steps, batch_size=len(texts)
        )
        return _Encoded(vectors, 0.0, time.perf_counter() - start)

    def explicit(texts: list[str]) -> _Encoded:
        start = time.perf_counter()
        rationales = generator.generate(texts, show_progress_bar=show_progress_bar)
        generated = time.perf_counter()
        vectors = explicit_query_embeddings(model, texts, rationales, prompt=prompt, batch_size=len(texts))
        return _Encoded(vectors, generated - start, time.perf_counter() - start, rationales)

    return latent if mode.kind == "latent" else explicit


def _warm_up(
    model: SentenceTransformer,
    modes: Sequence[Mode],
    generator: RationaleGenerator | None,
    prompt: str | None,
    text: str,
) -> None:
    from laser_integrations.rewrite import explicit_query_embeddings

    for mode in modes:
        if mode.kind == "latent":
            model.encode_query([text], prompt=prompt, num_thinking_steps=mode.num_thinking_steps)
        elif generator is not None:
            rationale = generator.generate_texts(
                [generator.prompt_for(text)], show_progress_bar=False, max_new_tokens=2
            )
            explicit_query_embeddings(model, [text], rationale, prompt=prompt)


def _rotated(modes: Sequence[Mode], offset: int) -> list[Mode]:
    shift = offset % len(modes)
    return [*modes[shift:], *modes[:shift]]


@dataclass
class _ModeRecord:
    latencies: list[float] = field(default_factory=list)
    generate_seconds: float = 0.0
    encode_seconds: float = 0.0
    search_seconds: float = 0.0
    run: dict[str, dict[str, float]] = field(default_factory=dict)
    rationales: dict[str, str] = field(default_factory=dict)

    def add(self, batch: list[str], encoded: _Encoded, searcher: Searcher, top_k: int) -> None:
        start = time.perf_counter()
        hits = searcher.search(encoded.vectors, top_k)
        search_seconds = time.perf_counter() - start
        self.generate_seconds += encoded.generate_seconds
        self.encode_seconds += encoded.encode_seconds
        self.search_seconds += search_seconds
        self.latencies.extend([encoded.encode_seconds + search_seconds] * len(batch))
        self.run.update(zip(batch, hits, strict=True))
        if encoded.rationales is not None:
            self.rationales.update(zip(batch, encoded.rationales, strict=True))

    def result(self, mode: Mode, qrels: Mapping[str, Mapping[str, int]], metrics: Sequence[str]) -> ModeResult:
        judged = {query_id: qrels[query_id] for query_id in self.run if query_id in qrels}
        return ModeResult(
            mode=mode.name,
            kind=mode.kind,
            num_thinking_steps=mode.num_thinking_steps,
            metrics=evaluate_run(judged, self.run, metrics),
            latency_ms_median=1000 * _percentile(self.latencies, 50),
            latency_ms_p95=1000 * _percentile(self.latencies, 95),
            encode_seconds=self.encode_seconds,
            generate_seconds=self.generate_seconds,
            search_seconds=self.search_seconds,
            total_seconds=self.encode_seconds + self.search_seconds,
            num_queries=len(self.run),
            rationales=self.rationales,
            run=self.run,
        )


def _percentile(values: Sequence[float], percent: float) -> float:
    import numpy as np

    return float(np.percentile(values, percent))
