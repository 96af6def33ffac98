"""Evaluate LaSER retrieval: BEIR-format datasets, side-by-side modes (single / latent / explicit), MTEB tasks.

>>> from laser_integrations import load_model                                     # doctest: +SKIP
>>> from laser_integrations.evaluation import evaluate_dataset, load_beir, parse_modes
>>> model = load_model("smollm2")                                                 # doctest: +SKIP
>>> report = evaluate_dataset(model, load_beir("pyref"), parse_modes(["single", "latent"]))  # doctest: +SKIP
>>> report.mode("latent").metrics["ndcg@10"]                                      # doctest: +SKIP

The command line has the same: ``laser eval``, ``laser demo`` and ``laser eval-mteb``. Only the standard
library is imported here; torch, ir-measures and matplotlib load when a function needs them.
"""

from __future__ import annotations

from laser_integrations.evaluation.beir import BeirDataset, BeirFormatError, Passage, bundled_dataset_path, load_beir
from laser_integrations.evaluation.metrics import DEFAULT_METRICS, evaluate_run, per_query_scores
from laser_integrations.evaluation.report import format_table, plot, write_json
from laser_integrations.evaluation.runner import (
    EvaluationReport,
    ExactSearch,
    Mode,
    ModeResult,
    evaluate_dataset,
    parse_mode,
    parse_modes,
    run_modes,
)

__all__ = [
    "DEFAULT_METRICS",
    "BeirDataset",
    "BeirFormatError",
    "EvaluationReport",
    "ExactSearch",
    "Mode",
    "ModeResult",
    "Passage",
    "bundled_dataset_path",
    "evaluate_dataset",
    "evaluate_run",
    "format_table",
    "load_beir",
    "parse_mode",
    "parse_modes",
    "per_query_scores",
    "plot",
    "run_modes",
    "write_json",
]
