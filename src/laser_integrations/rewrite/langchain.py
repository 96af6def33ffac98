"""The rewrite-then-retrieve chain in LangChain's terms: a rationale runnable, the LCEL chain, and a LangChain LLM
over the local :class:`~laser_integrations.rewrite.generator.RationaleGenerator`.

Needs LangChain: ``pip install 'laser-integrations[langchain]'``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

try:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseLLM
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.outputs import Generation, LLMResult
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.rewrite.langchain needs langchain-core: pip install 'laser-integrations[langchain]'"
    ) from error
from pydantic import ConfigDict

from laser_integrations.rewrite.completion import Completer, is_langchain_runnable
from laser_integrations.rewrite.explicit import explicit_query_embeddings, laser_query_side
from laser_integrations.rewrite.generator import PromptSpec, RationaleGenerator, default_prompt

if TYPE_CHECKING:
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever
    from sentence_transformers import SentenceTransformer

__all__ = ["TransformersRationaleLLM", "rationale_runnable", "rewrite_then_retrieve_chain"]

DEFAULT_SEPARATOR = "\n\n"
"""Joins query and rationale when a retriever embeds them as one text (not a LaSER explicit view)."""


class TransformersRationaleLLM(BaseLLM):
    """A :class:`RationaleGenerator` as a LangChain LLM: ``batch`` runs one batched ``generate``."""

    generator: Any
    """The :class:`RationaleGenerator` doing the work."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    @property
    def _llm_type(self) -> str:
        return "laser-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.generator.name, "max_new_tokens": self.generator.max_new_tokens}

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        if stop:
            kwargs.update(stop_strings=stop, tokenizer=self.generator.tokenizer)
        texts = self.generator.generate_texts(prompts, **kwargs)
        return LLMResult(generations=[[Generation(text=text)] for text in texts])


def rationale_runnable(llm: Any, prompt: PromptSpec | None = None) -> Runnable[str, str]:
    """``query -> rationale`` as a LangChain runnable: ``PromptTemplate | llm | StrOutputParser()``.

    Args:
        llm: A LangChain chat model or LLM (any runnable taking a prompt string), a
            :class:`RationaleGenerator` (batched through :meth:`RationaleGenerator.as_langchain_llm`),
            or a LlamaIndex LLM.
        prompt: ``{query}`` template or function of the query (default: a generator's own prompt, else
            the paper's Table 1 prompt).
    """
    prompt = default_prompt(llm, prompt)
    to_prompt = (
        PromptTemplate.from_template(prompt) if isinstance(prompt, str) else RunnableLambda(prompt, name="prompt")
    )
    if isinstance(llm, RationaleGenerator):  # batch() then runs one batched generate()
        llm = TransformersRationaleLLM(generator=llm)
    if is_langchain_runnable(llm):
        return (to_prompt | llm | StrOutputParser() | _strip).with_config(run_name="rationale")
    completer = Completer(llm)  # a LlamaIndex LLM, or a TypeError naming what is accepted

    def write(message: Any) -> str:
        return completer.complete([_as_text(message)])[0]

    async def awrite(message: Any) -> str:
        return (await completer.acomplete([_as_text(message)]))[0]

    return (to_prompt | RunnableLambda(write, afunc=awrite, name="llama_index_llm")).with_config(run_name="rationale")


def _as_text(message: Any) -> str:
    """A LangChain prompt value or a plain string, as the string an LLM completes."""
    return message if isinstance(message, str) else message.to_string()


def _strip(text: str) -> str:
    return text.strip()


def rewrite_then_retrieve_chain(
    llm: Any,
    retriever: BaseRetriever | Runnable[str, list[Document]],
    *,
    explicit_view: bool | None = None,
    prompt: PromptSpec | None = None,
    separator: str = DEFAULT_SEPARATOR,
) -> Runnable[str, list[Document]]:
    """The explicit baseline as one LCEL chain: ``query -> rationale -> retriever(query + rationale)``.

    The chain takes a query string and returns documents, like a retriever: ``invoke``, ``ainvoke``,
    ``batch`` (one batched generation for all queries with a local generator) and ``abatch``.

    Args:
        llm: Writes the rationale: a LangChain chat model/LLM/runnable, a :class:`RationaleGenerator`,
            or a LlamaIndex LLM.
        retriever: Any LangChain retriever. When it is a vector-store retriever over
            :class:`~laser_integrations.langchain.LaSEREmbeddings`, the query and rationale are embedded
            with LaSER's explicit view and searched by vector (``search_type`` ``"similarity"`` or
            ``"mmr"``, honouring ``search_kwargs``); otherwise the retriever receives the text
            ``query + separator + rationale``.
        explicit_view: ``None`` (default) decides as above; ``False`` always sends text; ``True``
            requires a LaSER vector-store retriever.
        prompt: ``{query}`` template or function of the query (default: a generator's own prompt, else the
            paper's Table 1 prompt).
        separator: Joins query and rationale in the text form.

    Example:
        ```python
        from langchain_qdrant import QdrantVectorStore

        from laser_integrations.langchain import LaSEREmbeddings
        from laser_integrations.rewrite import RationaleGenerator, rewrite_then_retrieve_chain

        embeddings = LaSEREmbeddings("smollm2")  # "laser-qwen3" for real use
        store = QdrantVectorStore.from_texts(texts, embeddings, location=":memory:", collection_name="docs")
        generator = RationaleGenerator.from_sentence_transformer(embeddings.client)  # one backbone for both
        chain = rewrite_then_retrieve_chain(generator, store.as_retriever(search_kwargs={"k": 5}))
        chain.invoke("why does my default list argument keep growing?")
        chain.batch(["first question", "second question"])  # one batched generation
        ```
    """
    gather = RunnableParallel(query=RunnablePassthrough(), rationale=rationale_runnable(llm, prompt))
    laser = _laser_vector_store_side(retriever)
    if explicit_view and laser is None:
        raise ValueError(
            "explicit_view=True needs a vector-store retriever over LaSEREmbeddings (store.as_retriever()); "
            f"got {type(retriever).__name__}"
        )
    if explicit_view is False or laser is None:
        join = RunnableLambda(lambda inputs: inputs["query"] + separator + inputs["rationale"], name="query_rationale")
        return (gather | join | retriever).with_config(run_name="rewrite_then_retrieve")
    search = _explicit_search(retriever, *laser)
    return (gather | search).with_config(run_name="rewrite_then_retrieve")


def _laser_vector_store_side(retriever: Any) -> tuple[SentenceTransformer, str | None] | None:
    store = getattr(retriever, "vectorstore", None)
    embeddings = getattr(store, "embeddings", None)
    return laser_query_side(embeddings) if embeddings is not None else None


def _explicit_search(retriever: Any, model: SentenceTransformer, prompt: str | None) -> Runnable:
    """A runnable ``{"query", "rationale"} -> documents``: explicit-view vector, then a search by vector."""
    store, search_type = retriever.vectorstore, getattr(retriever, "search_type", "similarity")
    search_kwargs = dict(getattr(retriever, "search_kwargs", {}) or {})
    searches = {
        "similarity": ("similarity_search_by_vector", "asimilarity_search_by_vector"),
        "mmr": ("max_marginal_relevance_search_by_vector", "amax_marginal_relevance_search_by_vector"),
    }
    if search_type not in searches:
        raise ValueError(f"the explicit view supports search_type 'similarity' or 'mmr', not {search_type!r}")
    sync_name, async_name = searches[search_type]

    def vector(inputs: dict[str, str]) -> list[float]:
        return explicit_query_embeddings(model, [inputs["query"]], [inputs["rationale"]], prompt=prompt)[0].tolist()

    def search(inputs: dict[str, str]) -> list[Document]:
        return getattr(store, sync_name)(vector(inputs), **search_kwargs)

    async def asearch(inputs: dict[str, str]) -> list[Document]:
        query_vector = await asyncio.to_thread(vector, inputs)
        return await getattr(store, async_name)(query_vector, **search_kwargs)

    return RunnableLambda(search, afunc=asearch, name="explicit_view_search")
