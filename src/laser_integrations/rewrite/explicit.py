"""Embed a query together with its rationale: LaSER's explicit view (spec section 2), as the rewrite chain uses it.

>>> vectors = explicit_query_embeddings(model, ["why is the sky blue"], ["Sunlight scatters ..."])  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from laser_integrations.embedder import model_lock
from laser_integrations.formatting import query_prompt
from laser_integrations.module import laser_module
from laser_integrations.validation import checked_strings

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import SentenceTransformer

__all__ = ["explicit_query_embeddings", "laser_query_side"]


def explicit_query_embeddings(
    model: SentenceTransformer,
    queries: Sequence[str],
    rationales: Sequence[str],
    *,
    prompt: str | None = None,
    batch_size: int = 32,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Embed each ``(query, rationale)`` with the explicit view of a LaSER model: (N, H) float32, normalized.

    This is ``model.encode_query(list(zip(queries, rationales)))`` (the query gets the instruction
    prompt, the rationale follows it, then one EOS), holding the model's lock so that adapters
    sharing the model never run at the same time.

    Args:
        model: A LaSER ``SentenceTransformer``.
        queries: The queries.
        rationales: One rationale per query.
        prompt: The query prompt (``None``: the model's ``"query"`` prompt).
        batch_size: Pairs per forward pass.
        show_progress_bar: Show sentence-transformers' progress bar.
    """
    laser_module(model)
    queries = checked_strings(queries, "query")
    rationales = checked_strings(rationales, "rationale")
    if len(queries) != len(rationales):
        raise ValueError(f"got {len(queries)} queries but {len(rationales)} rationales; pass one rationale per query")
    with model_lock(model):
        return model.encode_query(
            list(zip(queries, rationales, strict=True)),
            prompt=prompt,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
        )


def laser_query_side(embeddings: Any) -> tuple[SentenceTransformer, str | None] | None:
    """``(model, query prompt)`` when ``embeddings`` is LaSER (adapter or model), else ``None``."""
    client = getattr(embeddings, "client", embeddings)
    try:
        laser_module(client)
    except TypeError:
        return None
    instruction = getattr(embeddings, "instruction", None)
    return client, (query_prompt(instruction) if instruction is not None else None)
