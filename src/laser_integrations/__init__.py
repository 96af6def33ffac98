"""LaSER latent-thinking embeddings as a drop-in for sentence-transformers, LlamaIndex, LangChain and Qdrant.

>>> from laser_integrations import load_model                          # doctest: +SKIP
>>> model = load_model("laser-qwen3")                                   # doctest: +SKIP
>>> model.encode_query(["why is the sky blue"]).shape                  # doctest: +SKIP
(1, 1024)

Heavy dependencies (torch, transformers) are imported on first use of a name, not at import time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser_integrations.lazy import lazy_exports
from laser_integrations.version import __version__

_EXPORTS = {
    "load_model": "laser_integrations.loading",
    "load_causal_lm": "laser_integrations.loading",
    "MODEL_ALIASES": "laser_integrations.loading",
    "LatentThinkingEmbedding": "laser_integrations.module",
    "latent_thinking": "laser_integrations.latent",
    "explicit_view": "laser_integrations.latent",
    "query_prompt": "laser_integrations.formatting",
    "DEFAULT_INSTRUCTION": "laser_integrations.formatting",
}

__all__ = [
    "DEFAULT_INSTRUCTION",
    "MODEL_ALIASES",
    "LatentThinkingEmbedding",
    "__version__",
    "explicit_view",
    "latent_thinking",
    "load_causal_lm",
    "load_model",
    "query_prompt",
]

if TYPE_CHECKING:
    from laser_integrations.formatting import DEFAULT_INSTRUCTION, query_prompt
    from laser_integrations.latent import explicit_view, latent_thinking
    from laser_integrations.loading import MODEL_ALIASES, load_causal_lm, load_model
    from laser_integrations.module import LatentThinkingEmbedding


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
