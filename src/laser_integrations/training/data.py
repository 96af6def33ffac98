"""LaSER training data: raw rows -> the column layout ``SentenceTransformerTrainer`` feeds :class:`LaSERLoss`.

A LaSER row holds a ``query``, its reasoning ``rationale``, a ``positive`` passage, one or more hard
negatives (``negative*`` columns) and optionally a per-row ``instruction``. The stock sentence-transformers
collator preprocesses one column at a time with ``model.preprocess``, and the LaSER module reads a plain
string as the latent view and a ``(query, rationale)`` pair as the explicit view (spec section 2). So
:func:`prepare_laser_dataset` only has to lay the row out as columns::

    query        "Instruct: {instruction}\\nQuery: {query}"            latent view (student)
    positive     the positive passage                                  latent view, no instruction
    negative_1.. the hard negatives                                    latent view, no instruction
    explicit     ["Instruct: ...\\nQuery: {query}", "{rationale}"]     explicit view (teacher)

The instruction is written into the query text itself because sentence-transformers prompts are per
column, while LaSER's instruction is per row; leave ``SentenceTransformerTrainingArguments.prompts``
unset. All validation happens here, before training starts, with the row number in every error.

>>> rows = [{"query": "why is the sky blue", "rationale": "Light scatters.", "positive": "Rayleigh ...",
...          "negative": "Mie ..."}]
>>> prepare_laser_dataset(rows).column_names                                    # doctest: +SKIP
['query', 'positive', 'negative_1', 'explicit']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from laser_integrations.formatting import query_prompt

logger = logging.getLogger(__name__)

QUERY_COLUMN = "query"
POSITIVE_COLUMN = "positive"
EXPLICIT_COLUMN = "explicit"
"""The prepared column holding ``[formatted query, rationale]`` pairs (the explicit view)."""
RAW_FIELDS = ("query", "rationale", "positive", "negative", "instruction")
"""The raw fields :func:`prepare_laser_dataset` reads; ``columns=`` maps them to other column names."""


def prepare_laser_dataset(
    dataset: Any,
    *,
    num_negatives: int | None = None,
    instruction: str | None = None,
    explicit_view: bool = True,
    columns: Mapping[str, str] | None = None,
) -> Any:
    """Turn raw LaSER rows into the columns :class:`~laser_integrations.training.LaSERLoss` trains on.

    Args:
        dataset: A ``datasets.Dataset`` (or a list of dicts) with ``query``, ``rationale``, ``positive`` and
            ``negative*`` columns and an optional ``instruction`` column. ``positive`` may hold a string or a
            list (its first passage is used); each ``negative*`` column a string or a list; a row's negatives
            are all of them, in column order.
        num_negatives: Hard negatives per query, i.e. group size G - 1 (the released recipe uses G = 2, one
            negative). Rows with more keep their first ``num_negatives``; a row with fewer is an error.
            ``None``: as many as the first row has. ``0``: in-batch negatives only.
        instruction: The query task for rows without an ``instruction`` value (``None``: the project default,
            ``""``: no instruction prefix).
        explicit_view: Add the ``explicit`` column. Not needed for the "no explicit view" ablation, which then
            needs no rationales either.
        columns: Where each raw field lives, e.g. ``{"rationale": "reasoning_path", "negative":
            "negative_passages"}``. A mapped ``negative`` names one column instead of every ``negative*`` one.

    Returns:
        A ``datasets.Dataset`` with columns ``query, positive, negative_1 .. negative_n[, explicit]``.

    Raises:
        ValueError: A required column is missing, or a row has an empty query or passage, or fewer negatives
            than ``num_negatives``. An empty (or missing) rationale is not an error: that row's teacher sees
            the query alone (the explicit view of ``(query, "")``, whose trajectory is the EOS state K times).
    """
    from datasets import Dataset

    if not isinstance(dataset, Dataset):
        dataset = _dataset_from_rows(list(dataset))
    names = _resolve_columns(dataset.column_names, columns or {}, needs_rationale=explicit_view)
    if len(dataset) == 0:
        raise ValueError("the training dataset has no rows")
    if num_negatives is None:
        num_negatives = len(_negatives(dataset[0], names["negative"], 0))
    if isinstance(num_negatives, bool) or not isinstance(num_negatives, int) or num_negatives < 0:
        raise ValueError(f"num_negatives must be an integer >= 0, got {num_negatives!r}")

    def layout(batch: dict[str, list[Any]], indices: list[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {QUERY_COLUMN: [], POSITIVE_COLUMN: []}
        out.update({f"negative_{n}": [] for n in range(1, num_negatives + 1)})
        if explicit_view:
            out[EXPLICIT_COLUMN] = []
        for offset, row_number in enumerate(indices):
            row = {key: values[offset] for key, values in batch.items()}
            query = query_prompt(_row_instruction(row, names["instruction"], instruction)) + _text(
                row, names["query"], row_number
            )
            out[QUERY_COLUMN].append(query)
            out[POSITIVE_COLUMN].append(_positive(row, names["positive"], row_number))
            negatives = _negatives(row, names["negative"], row_number)
            if len(negatives) < num_negatives:
                raise ValueError(
                    f"row {row_number} has {len(negatives)} negative passage(s) but {num_negatives} are configured "
                    "(group size - 1); drop the row, add negatives, or lower num_negatives / --group-size"
                )
            for n in range(num_negatives):
                out[f"negative_{n + 1}"].append(negatives[n])
            if explicit_view:
                out[EXPLICIT_COLUMN].append([query, _rationale(row, names["rationale"])])
        return out

    prepared = dataset.map(
        layout, batched=True, with_indices=True, remove_columns=dataset.column_names, desc="LaSER columns"
    )
    if explicit_view:
        empty = sum(1 for _, rationale in prepared[EXPLICIT_COLUMN] if not rationale)
        if empty:
            logger.warning(
                "%d of %d rows have an empty rationale; their explicit view is the query alone", empty, len(prepared)
            )
    return prepared


def _dataset_from_rows(rows: list[Mapping[str, Any]]) -> Any:
    """A Dataset with the union of the rows' keys (``Dataset.from_list`` keeps only the first row's)."""
    from datasets import Dataset

    keys = list(dict.fromkeys(key for row in rows for key in row))
    return Dataset.from_dict({key: [row.get(key) for row in rows] for key in keys})


def _resolve_columns(present: Sequence[str], mapping: Mapping[str, str], *, needs_rationale: bool) -> dict[str, Any]:
    """Map each raw field to its column name (``negative``: a list of columns), or name every missing one."""
    unknown = set(mapping) - set(RAW_FIELDS)
    if unknown:
        raise ValueError(f"columns= maps unknown fields {sorted(unknown)}; known fields: {list(RAW_FIELDS)}")
    names: dict[str, Any] = {field: mapping.get(field, field) for field in RAW_FIELDS}
    required = ["query", "positive"] + (["rationale"] if needs_rationale else [])
    missing = [_label(field, names[field]) for field in required if names[field] not in present]
    if "negative" in mapping:
        names["negative"] = [mapping["negative"]] if mapping["negative"] in present else []
        if not names["negative"]:
            missing.append(_label("negative", mapping["negative"]))
    else:
        names["negative"] = [name for name in present if name.startswith("negative")]
    if missing:
        hint = " (the explicit view needs one rationale per query: see `laser rationales`)" if needs_rationale else ""
        raise ValueError(
            f"the training dataset lacks column(s) {', '.join(missing)}{hint}; it has {list(present)}. "
            "Map differently named columns with columns={'rationale': 'reasoning_path', ...}"
        )
    if names["instruction"] not in present:
        names["instruction"] = None
    return names


def _label(field: str, column: str) -> str:
    return repr(field) if field == column else f"{field!r} (as {column!r})"


def _text(row: Mapping[str, Any], column: str, row_number: int) -> str:
    value = row[column]
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"row {row_number}: column {column!r} must be a non-empty string, got {value!r:.80}")
    return value


def _positive(row: Mapping[str, Any], column: str, row_number: int) -> str:
    value = row[column]
    if isinstance(value, (list, tuple)):
        value = next((item for item in value if isinstance(item, str) and item.strip()), None)
    return _text({column: value}, column, row_number)


def _negatives(row: Mapping[str, Any], columns: Iterable[str], row_number: int) -> list[str]:
    negatives: list[str] = []
    for column in columns:
        value = row[column]
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item is None:
                continue
            negatives.append(_text({column: item}, column, row_number))
    return negatives


def _rationale(row: Mapping[str, Any], column: str) -> str:
    """The rationale text, stripped as the released data loader does; missing or blank becomes ``""``."""
    value = row[column]
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"column {column!r} must hold strings, got {type(value).__name__} {value!r:.80}")
    return value.strip()


def _row_instruction(row: Mapping[str, Any], column: str | None, default: str | None) -> str | None:
    value = row[column] if column is not None else None
    return default if value is None else value


# -- batch plumbing used by the loss ----------------------------------------------------------------------


def concat_left_padded(features_list: Sequence[dict[str, Tensor]], pad_token_id: int) -> dict[str, Tensor]:
    """One latent-view batch from several preprocessed columns (column-major), re-padded on the LEFT.

    sentence-transformers' own column merging pads on the right, which the latent loop cannot use.
    """
    width = max(features["input_ids"].shape[1] for features in features_list)
    input_ids, attention_mask = [], []
    for features in features_list:
        missing = width - features["input_ids"].shape[1]
        input_ids.append(F.pad(features["input_ids"], (missing, 0), value=pad_token_id))
        attention_mask.append(F.pad(features["attention_mask"], (missing, 0), value=0))
    merged = {"input_ids": torch.cat(input_ids), "attention_mask": torch.cat(attention_mask)}
    merged["latent_rows"] = torch.arange(merged["input_ids"].shape[0], device=merged["input_ids"].device)
    return merged


def is_explicit(features: Mapping[str, Any]) -> bool:
    """Whether a column's features hold the explicit view (pairs), in the module's or the trainer's naming."""
    return "explicit_input_ids" in features or "trajectory_positions" in features


def as_explicit_features(features: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Explicit-view features under the module's key names.

    The trainer finds each column's features by the ``_input_ids`` suffix, so a pair column's
    ``{col}_explicit_input_ids`` loses its ``explicit_`` prefix on the way to the loss; put it back.
    """
    if "explicit_input_ids" in features:
        return dict(features)
    return {f"explicit_{key}": value for key, value in features.items()}


def split_columns(
    features_list: Sequence[dict[str, Tensor]], *, needs_explicit: bool
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]], dict[str, Tensor] | None]:
    """Split the trainer's per-column features into (query, passage columns, explicit view or None)."""
    features_list = without_prefix_cache(features_list)
    latent = [features for features in features_list if not is_explicit(features)]
    explicit = [as_explicit_features(features) for features in features_list if is_explicit(features)]
    if len(latent) < 2:
        raise ValueError(
            f"LaSERLoss needs a query column and at least one passage column, got {len(latent)} text column(s); "
            "prepare the dataset with laser_integrations.training.prepare_laser_dataset"
        )
    if len(explicit) > 1:
        raise ValueError(f"LaSERLoss expects one (query, rationale) pair column, got {len(explicit)}")
    if needs_explicit and not explicit:
        raise ValueError(
            "LaSERLoss with the explicit view needs a column of (query, rationale) pairs, and the batch has none: "
            "prepare the dataset with laser_integrations.training.prepare_laser_dataset (it adds the 'explicit' "
            "column), or pass explicit_view=False for the pure latent contrastive ablation"
        )
    return latent[0], latent[1:], explicit[0] if explicit else None


PREFIX_CACHE_KEYS = ("prefix_input_ids", "prefix_rows")


def without_prefix_cache(features_list: Sequence[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """The columns without the inference-only prefix-cache features.

    The collator tokenizes with the module's mode at that moment, and the trainer's checkpoint save (its model
    card encodes examples) leaves the module in eval mode, so batches collated right after a save carry
    ``prefix_input_ids``. The trainer then mistakes that key for a column of its own (``*_input_ids``).
    """
    cleaned = []
    for features in features_list:
        if features.get("input_ids") is not None and features["input_ids"].dim() == 1:
            continue  # the phantom "<column>_prefix_" column
        cleaned.append({key: value for key, value in features.items() if key not in PREFIX_CACHE_KEYS})
    return cleaned
