"""The rewrite-then-retrieve baseline in LlamaIndex's terms: a query transform for ``TransformRetriever`` and
``TransformQueryEngine``, in the spirit of ``HyDEQueryTransform``.

Needs LlamaIndex: ``pip install 'laser-integrations[llamaindex]'``.
"""

from __future__ import annotations

from typing import Any

try:
    from llama_index.core.indices.query.query_transform.base import BaseQueryTransform
    from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
    from llama_index.core.prompts.mixin import PromptDictType
    from llama_index.core.schema import QueryBundle
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.rewrite.llama_index needs llama-index-core: pip install 'laser-integrations[llamaindex]'"
    ) from error

from laser_integrations.rewrite.completion import Completer
from laser_integrations.rewrite.explicit import explicit_query_embeddings, laser_query_side
from laser_integrations.rewrite.generator import PromptSpec, default_prompt

__all__ = ["RationaleQueryTransform"]

DEFAULT_SEPARATOR = "\n\n"
"""Joins query and rationale when the retriever's embedding model embeds them as one text."""


class RationaleQueryTransform(BaseQueryTransform):
    """Rewrite a query into query + reasoning rationale before retrieval (LaSER's explicit baseline).

    In the spirit of LlamaIndex's ``HyDEQueryTransform``: an LLM writes the paper's rationale (Table 1
    prompt, the ``"rationale_prompt"`` of ``get_prompts``/``update_prompts``), and the retriever embeds
    the query together with it. With a LaSER ``embed_model`` the pair is embedded right here with the
    explicit view and handed over as the bundle's ``embedding``; otherwise the retriever's embedding
    model embeds the text ``query + separator + rationale`` (``custom_embedding_strs``).

    Args:
        llm: A :class:`RationaleGenerator`, a LlamaIndex LLM, or a LangChain chat model/LLM.
        embed_model: The index's :class:`~laser_integrations.llama_index.LaSEREmbedding` (or LaSER
            ``SentenceTransformer``) to use the explicit view; ``None`` for the text form.
        rationale_prompt: A prompt template with a ``{query}`` variable, or a function of the query
            (default: a generator's own prompt, else the paper's Table 1 prompt).
        separator: Joins query and rationale in the text form.

    Example:
        >>> from llama_index.core.retrievers import TransformRetriever                # doctest: +SKIP
        >>> transform = RationaleQueryTransform(generator, embed_model=embed_model)   # doctest: +SKIP
        >>> retriever = TransformRetriever(index.as_retriever(similarity_top_k=5), transform)  # doctest: +SKIP
        >>> retriever.retrieve("why does my default list argument keep growing?")     # doctest: +SKIP
    """

    def __init__(
        self,
        llm: Any,
        *,
        embed_model: Any = None,
        rationale_prompt: BasePromptTemplate | PromptSpec | None = None,
        separator: str = DEFAULT_SEPARATOR,
    ) -> None:
        super().__init__()
        self._completer = Completer(llm)
        self._laser = laser_query_side(embed_model) if embed_model is not None else None
        if embed_model is not None and self._laser is None:
            raise TypeError(f"embed_model must be a LaSER model or LaSEREmbedding, got {type(embed_model).__name__}")
        prompt = default_prompt(llm, rationale_prompt)
        self._prompt = PromptTemplate(prompt) if isinstance(prompt, str) else prompt
        self._separator = separator

    def _get_prompts(self) -> PromptDictType:
        return {"rationale_prompt": self._prompt} if isinstance(self._prompt, BasePromptTemplate) else {}

    def _update_prompts(self, prompts: PromptDictType) -> None:
        if "rationale_prompt" in prompts:
            self._prompt = prompts["rationale_prompt"]

    def rationale(self, query: str) -> str:
        """The rationale the LLM writes for ``query``."""
        if isinstance(self._prompt, BasePromptTemplate):
            return self._completer.complete([self._prompt.format(query=query)])[0]
        return self._completer.complete([self._prompt(query)])[0]

    def _run(self, query_bundle: QueryBundle, metadata: dict) -> QueryBundle:
        query = query_bundle.query_str
        rationale = self.rationale(query)
        text = query + self._separator + rationale
        embedding = None
        if self._laser is not None:
            model, prompt = self._laser
            embedding = explicit_query_embeddings(model, [query], [rationale], prompt=prompt)[0].tolist()
        return QueryBundle(query_str=query, custom_embedding_strs=[text], embedding=embedding)
