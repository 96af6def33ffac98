"""Explicit rewrite-then-retrieve: the baseline LaSER's latent thinking replaces, built as users build it.

An LLM first writes a reasoning rationale for the query with the LaSER paper's prompt (Table 1,
:func:`~laser_integrations.formatting.rationale_prompt`); the retriever then embeds the query
together with that rationale. With a LaSER model the pair is embedded with the explicit view
(spec section 2: formatted query + rationale + EOS), the paper's rewrite baseline and its
"hybrid" mode. One module per job:

- :mod:`~laser_integrations.rewrite.generator`: :class:`RationaleGenerator`, the project's one rationale
  generator (a local causal LM through transformers ``generate``), also used by ``laser rationales``;
- :mod:`~laser_integrations.rewrite.explicit`: :func:`explicit_query_embeddings`, ``(query, rationale)``
  pairs to explicit-view vectors;
- :mod:`~laser_integrations.rewrite.completion`: any LLM a user already has, as one completer;
- :mod:`~laser_integrations.rewrite.langchain`: :func:`rewrite_then_retrieve_chain` (LCEL), a rationale
  runnable and a LangChain LLM over the local generator (needs ``[langchain]``);
- :mod:`~laser_integrations.rewrite.llama_index`: :class:`RationaleQueryTransform` (needs ``[llamaindex]``).

The framework pieces are importable from here too; their framework is imported when first used.

>>> from laser_integrations.rewrite import RationaleGenerator                       # doctest: +SKIP
>>> generator = RationaleGenerator.from_pretrained("smollm2", max_new_tokens=128)    # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser_integrations.lazy import lazy_exports
from laser_integrations.rewrite.explicit import explicit_query_embeddings
from laser_integrations.rewrite.generator import (
    DEFAULT_MAX_NEW_TOKENS,
    PromptSpec,
    RationaleGenerator,
    generate_rationales,
    generate_texts,
)

_FRAMEWORK_EXPORTS = {
    "TransformersRationaleLLM": "laser_integrations.rewrite.langchain",
    "rationale_runnable": "laser_integrations.rewrite.langchain",
    "rewrite_then_retrieve_chain": "laser_integrations.rewrite.langchain",
    "RationaleQueryTransform": "laser_integrations.rewrite.llama_index",
}

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "PromptSpec",
    "RationaleGenerator",
    "RationaleQueryTransform",
    "TransformersRationaleLLM",
    "explicit_query_embeddings",
    "generate_rationales",
    "generate_texts",
    "rationale_runnable",
    "rewrite_then_retrieve_chain",
]

if TYPE_CHECKING:
    from laser_integrations.rewrite.langchain import (
        TransformersRationaleLLM,
        rationale_runnable,
        rewrite_then_retrieve_chain,
    )
    from laser_integrations.rewrite.llama_index import RationaleQueryTransform


__getattr__ = lazy_exports(__name__, _FRAMEWORK_EXPORTS, globals())
