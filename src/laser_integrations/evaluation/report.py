"""Show an :class:`~laser_integrations.evaluation.runner.EvaluationReport`: a terminal table, JSON, and a PNG.

The PNG plots quality (nDCG@10) against per-query latency for each mode, next to where each
mode's query time went (generation, embedding, search). It is drawn with matplotlib's ``Agg``
backend, so it works on a machine without a display.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from laser_integrations.evaluation.runner import EvaluationReport

METRIC_LABELS = {"ndcg@10": "nDCG@10", "recall@10": "R@10", "recall@100": "R@100", "mrr@10": "MRR@10"}


def format_table(report: EvaluationReport) -> str:
    """A plain-text table of quality and cost per mode, then the latent-vs-rewrite ratio in words.

    Example:
        >>> print(format_table(report))                                 # doctest: +SKIP
        mode      K  nDCG@10  R@10   R@100  MRR@10  latency ms (median)  p95   query time  ...
        single    1  0.026    0.050  0.554  0.023   1209                 1364  6.1 s       ...
        ...
    """
    metric_names = list(report.modes[0].metrics) if report.modes else []
    ratios = report.cost_ratios()
    header = ["mode", "K", *(METRIC_LABELS.get(name, name) for name in metric_names)]
    header += ["latency ms (median)", "p95", "query time", "of which generation"]
    if ratios:
        header.append("time vs rewrite")
    rows = [header]
    for result in report.modes:
        row = [result.mode, "-" if result.num_thinking_steps is None else str(result.num_thinking_steps)]
        row += [f"{result.metrics[name]:.3f}" for name in metric_names]
        row += [
            f"{result.latency_ms_median:.0f}",
            f"{result.latency_ms_p95:.0f}",
            f"{result.total_seconds:.1f} s",
            f"{result.generate_seconds:.1f} s",
        ]
        if ratios:
            row.append(f"{100 * ratios[result.mode]:.1f}%")
        rows.append(row)
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(
        f"(a query's latency is the wall time of the batch of {report.batch_size} that carried it: "
        "generation + embedding + search; query time sums all batches)"
    )
    lines.extend(speedup_lines(report))
    return "\n".join(lines)


def speedup_lines(report: EvaluationReport) -> list[str]:
    """Sentences comparing each latent mode with the rewrite chain (empty without an explicit mode)."""
    explicit = report.mode("explicit")
    if explicit is None or explicit.total_seconds <= 0:
        return []
    lines = [""]
    for result in report.modes:
        if result.kind != "latent" or result.total_seconds <= 0:
            continue
        fraction = result.total_seconds / explicit.total_seconds
        lines.append(
            f"{result.mode} (K={result.num_thinking_steps}) answered the queries in {100 * fraction:.1f}% of the "
            f"rewrite chain's time: {1 / fraction:.1f}x faster ({result.total_seconds:.1f} s vs "
            f"{explicit.total_seconds:.1f} s, {report.max_new_tokens or '?'} new tokens per rationale)."
        )
    return lines


def report_dict(report: EvaluationReport, *, command: str | None = None, include_runs: bool = False) -> dict[str, Any]:
    """The report plus when, where and how it was made (JSON-ready)."""
    import sentence_transformers
    import torch
    import transformers

    data = report.to_dict(include_runs=include_runs)
    data["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data["command"] = command if command is not None else " ".join(sys.argv)
    data["environment"] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    return data


def write_json(report: EvaluationReport, path: str | Path, **options: Any) -> Path:
    """Write :func:`report_dict` to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_dict(report, **options), indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    return path


def plot(report: EvaluationReport, path: str | Path, *, metric: str = "ndcg@10", subtitle: str | None = None) -> Path:
    """Save a PNG: quality vs median per-query latency (log scale) per mode, and each mode's time split.

    Drawn on a bare ``Figure`` (Agg canvas), never through ``pyplot``: no display needed, and a caller's
    matplotlib backend and open figures are left alone.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colors = {"latent": "#1f77b4", "explicit": "#d62728"}
    figure = Figure(figsize=(11, 4.4))
    quality, cost = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    for number, result in enumerate(report.modes):
        color = "#7f7f7f" if result.mode == "single" else colors.get(result.kind, "#2ca02c")
        point = (result.latency_ms_median, result.metrics[metric])
        quality.scatter(*point, s=90, color=color, zorder=3)
        label = f"{result.mode} (K={result.num_thinking_steps})"
        if result.kind == "explicit":
            label = f"{result.mode} ({report.max_new_tokens or '?'} new tokens)"
        # Alternate above/below so neighbouring points (single and latent often are) keep readable labels.
        offset = (6, 8) if number % 2 == 0 else (6, -16)
        quality.annotate(label, point, textcoords="offset points", xytext=offset, fontsize=9)
    quality.set_xscale("log")
    latencies = [result.latency_ms_median for result in report.modes if result.latency_ms_median > 0]
    if latencies:
        quality.set_xlim(min(latencies) / 1.6, max(latencies) * 2.5)
    quality.set_xlabel(f"median latency per query, ms (batches of {report.batch_size}; log scale)")
    quality.set_ylabel(METRIC_LABELS.get(metric, metric))
    quality.set_title(f"{report.dataset}: quality vs latency")
    quality.grid(True, which="both", alpha=0.3)
    low, high = quality.get_ylim()
    quality.set_ylim(min(0.0, low), max(high, 1.05 * max((r.metrics[metric] for r in report.modes), default=1)))

    names = [result.mode for result in report.modes]
    generation = [result.generate_seconds for result in report.modes]
    embedding = [result.encode_seconds - result.generate_seconds for result in report.modes]
    search = [result.search_seconds for result in report.modes]
    cost.bar(names, generation, color="#d62728", label="rationale generation")
    cost.bar(names, embedding, bottom=generation, color="#1f77b4", label="query embedding")
    below_search = [g + e for g, e in zip(generation, embedding, strict=True)]
    cost.bar(names, search, bottom=below_search, color="#2ca02c", label="search")
    cost.set_ylabel(f"seconds for {report.num_queries} queries")
    cost.set_title("where the query time goes")
    cost.legend(loc="upper left", fontsize=8)
    cost.grid(True, axis="y", alpha=0.3)

    figure.suptitle(subtitle or f"model: {report.model}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path
