"""Retrieval quality metrics, computed by ``ir-measures`` (trec_eval through ``pytrec_eval``, MS MARCO's MRR).

No metric is hand-written here: this module only names the measures, fills in queries a run
left empty, and averages over *every* judged query (trec_eval's ``-c``), so a system that
returns nothing for a query scores 0 on it instead of being silently skipped. ``pytrec_eval``
is what BEIR and MTEB score with, so numbers here are comparable with theirs.

>>> qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
>>> run = {"q1": {"d1": 0.9, "d3": 0.5}, "q2": {"d3": 0.9, "d2": 0.8}}
>>> evaluate_run(qrels, run)["mrr@10"]
0.75
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

Qrels = Mapping[str, Mapping[str, int]]
"""``{query_id: {doc_id: relevance}}``; relevance > 0 is relevant."""
Run = Mapping[str, Mapping[str, float]]
"""``{query_id: {doc_id: score}}``; higher scores rank first."""

DEFAULT_METRICS = ("ndcg@10", "recall@10", "recall@100", "mrr@10")
"""What ``laser eval`` and ``laser demo`` report."""

_MEASURE_NAMES = {"ndcg": "nDCG", "recall": "R", "mrr": "RR", "map": "AP", "precision": "P"}


def measure_for(name: str):
    """The ``ir_measures`` measure for a name like ``"ndcg@10"``, ``"recall@100"`` or ``"mrr@10"``."""
    import ir_measures

    family, _, cutoff = name.lower().partition("@")
    if family not in _MEASURE_NAMES or not cutoff.isdigit() or int(cutoff) < 1:
        known = ", ".join(f"{key}@K" for key in _MEASURE_NAMES)
        raise ValueError(f"unknown metric {name!r}; use one of {known} (K a positive integer)")
    return ir_measures.parse_measure(f"{_MEASURE_NAMES[family]}@{int(cutoff)}")


def per_query_scores(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, dict[str, float]]:
    """``{metric: {query_id: value}}`` for every query with a relevant document (0.0 where the run has none)."""
    import ir_measures

    measures = {measure_for(name): name for name in metrics}
    judged = {query_id: dict(docs) for query_id, docs in qrels.items() if any(rel > 0 for rel in docs.values())}
    scores = {name: dict.fromkeys(judged, 0.0) for name in metrics}
    ranked = {query_id: {doc: float(score) for doc, score in run.get(query_id, {}).items()} for query_id in judged}
    ranked = {query_id: docs for query_id, docs in ranked.items() if docs}
    if ranked:
        for metric in ir_measures.iter_calc(list(measures), judged, ranked):
            scores[measures[metric.measure]][metric.query_id] = float(metric.value)
    return scores


def evaluate_run(qrels: Qrels, run: Run, metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, float]:
    """Mean of each metric over all judged queries (a query missing from ``run`` counts as 0).

    Args:
        qrels: Relevance judgements, ``{query_id: {doc_id: relevance}}``.
        run: Retrieved documents with scores, ``{query_id: {doc_id: score}}``.
        metrics: Names such as ``"ndcg@10"``, ``"recall@100"``, ``"mrr@10"``, ``"map@100"``, ``"precision@5"``.

    Returns:
        ``{metric: mean}`` in the order of ``metrics``.

    Example:
        >>> evaluate_run({"q": {"a": 1, "b": 1}}, {"q": {"a": 2.0, "c": 1.0}}, ["recall@10"])
        {'recall@10': 0.5}
    """
    if not qrels:
        raise ValueError("qrels is empty: there is nothing to evaluate against")
    scores = per_query_scores(qrels, run, metrics)
    return {name: sum(values.values()) / len(values) for name, values in scores.items()}
