"""Explicit rewrite-then-retrieve: the baseline LaSER's latent thinking replaces, built as users build it.

An LLM first writes a reasoning rationale for the query with the LaSER paper's prompt (Table 1,
:func:`~laser_integrations.formatting.rationale_prompt`); the retriever then embeds the query
together with that rationale. With a LaSER model the pair is embedded with the explicit view
(spec section 2: formatted query + rationale + EOS), the paper's rewrite baseline and its
"hybrid" mode. The pieces:

- :class:`RationaleGenerator` / :func:`generate_rationales`: a local causal LM through
  transformers ``generate`` (batched, left padded, greedy by default, the chat template when the
  model has one, Qwen3 thinking off). This is the project's one rationale generator; training
  data preparation uses it too.
- :func:`rewrite_then_retrieve_chain`: a LangChain LCEL chain ``query -> rationale ->
  retriever(query + rationale)`` with ``invoke``/``ainvoke``/``batch``/``abatch``.
- :class:`RationaleQueryTransform`: a LlamaIndex query transform (like ``HyDEQueryTransform``)
  for ``TransformRetriever`` and ``TransformQueryEngine``.
- :func:`explicit_query_embeddings`: ``(query, rationale)`` pairs -> explicit-view vectors.

Every piece that takes an ``llm`` accepts a :class:`RationaleGenerator`, any LangChain chat model,
LLM or runnable (``prompt -> text``), or any LlamaIndex LLM. LangChain and LlamaIndex are imported
only when a piece that needs them is used.

>>> generator = RationaleGenerator.from_pretrained("smollm2", max_new_tokens=128)    # doctest: +SKIP
>>> generator.generate(["why does my default list argument keep growing?"])[0][:60]  # doctest: +SKIP
'The essential problem is that default arguments are evaluate'
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from laser_integrations.formatting import RATIONALE_PROMPT, has_chat_template, query_prompt, template_knows_think

if TYPE_CHECKING:
    import numpy as np
    from langchain_core.documents import Document
    from langchain_core.language_models import BaseLLM
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables import Runnable
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "RationaleGenerator",
    "explicit_query_embeddings",
    "generate_rationales",
    "generate_texts",
    "rationale_runnable",
    "rewrite_then_retrieve_chain",
]

DEFAULT_MAX_NEW_TOKENS = 128
PromptSpec = str | Callable[[str], str]
"""A ``{query}`` template (``str.format``) or a function from query to user message."""
DEFAULT_SEPARATOR = "\n\n"
"""Joins query and rationale when a retriever embeds them as one text (not a LaSER explicit view)."""


# -- transformers generation ------------------------------------------------------------------------------


def generate_texts(
    prompts: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    do_sample: bool = False,
    chat_template: bool | None = None,
    max_prompt_length: int | None = None,
    show_progress_bar: bool = False,
    lock: contextlib.AbstractContextManager[Any] | None = None,
    **generate_kwargs: Any,
) -> list[str]:
    """Continue each prompt with ``model.generate`` and return only the new text, in input order.

    Prompts are sorted by length and generated ``batch_size`` at a time, left padded, so each batch
    carries little padding and no prompt's answer depends on its neighbours beyond float rounding.

    Args:
        prompts: User messages (wrapped as one user turn of the chat template when it is used).
        model: A causal LM (``*ForCausalLM``).
        tokenizer: Its tokenizer. A missing pad token is set to the EOS token.
        max_new_tokens: Upper bound on generated tokens per prompt.
        batch_size: Prompts per ``generate`` call.
        do_sample: ``False`` (default) decodes greedily; pass ``temperature``/``top_p`` to sample.
        chat_template: Wrap each prompt in the tokenizer's chat template (``None``: when it has one).
            Qwen3-style templates get ``enable_thinking=False``, so no ``<think>`` text is written.
        max_prompt_length: Truncate longer prompts to this many tokens (``None``: never).
        show_progress_bar: Show a progress bar of decode steps.
        lock: Held around each batch (pass the lock of a model shared with an embedder).
        **generate_kwargs: Passed on to ``model.generate`` (``temperature``, ``repetition_penalty`` ...).

    Returns:
        The generated continuations, stripped, special tokens removed.
    """
    import torch
    from tqdm.auto import tqdm

    prompts = _checked_strings(prompts, "prompt")
    _check_positive("max_new_tokens", max_new_tokens)
    _check_positive("batch_size", batch_size)
    if not prompts:
        return []
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    use_chat = has_chat_template(tokenizer) if chat_template is None else bool(chat_template)
    texts = [_as_chat_turn(tokenizer, prompt) if use_chat else prompt for prompt in prompts]
    config = _generation_config(model, tokenizer, max_new_tokens, do_sample)
    # Generation settings (temperature, min_new_tokens ...) go into the config; the rest (stop-string
    # tokenizer, logits processors ...) to generate() itself.
    call_kwargs = config.update(**generate_kwargs)
    order = sorted(range(len(texts)), key=lambda index: -len(texts[index]))
    results: list[str] = [""] * len(texts)
    batches = range(0, len(order), batch_size)
    progress = tqdm(
        total=len(batches) * max_new_tokens,
        desc=f"Writing {len(texts)} rationale{'s' * (len(texts) > 1)}",
        unit="step",
        leave=False,
        disable=not show_progress_bar,
    )
    if show_progress_bar:
        call_kwargs["streamer"] = _DecodeProgress(progress)
    for number, start in enumerate(batches):
        rows = order[start : start + batch_size]
        # The tokenizer may be shared with an embedder, and fast tokenizers are not thread-safe: lock it too.
        with lock or contextlib.nullcontext(), torch.inference_mode():
            encoded = tokenizer(
                [texts[row] for row in rows],
                padding=True,
                padding_side="left",
                truncation=max_prompt_length is not None,
                max_length=max_prompt_length,
                add_special_tokens=not use_chat,  # the chat template already wrote any BOS it wants
                return_tensors="pt",
            ).to(model.device)
            output = model.generate(**encoded, generation_config=config, **call_kwargs)
        progress.update((number + 1) * max_new_tokens - progress.n)  # all rows may have stopped early
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for row, text in zip(rows, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
            results[row] = text.strip()
    progress.close()
    return results


class _DecodeProgress:
    """A ``generate`` streamer that ticks a progress bar once per decode step (the prompt's call is skipped)."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if self.prompt_seen:
            self.progress.update(1)
        self.prompt_seen = True

    def end(self) -> None:
        self.prompt_seen = False


def generate_rationales(
    queries: Sequence[str],
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = 8,
    prompt: PromptSpec = RATIONALE_PROMPT,
    **options: Any,
) -> list[str]:
    """Write the paper's reasoning rationale (Table 1 prompt) for each query with a local causal LM.

    Args:
        queries: The user queries.
        model, tokenizer: A causal LM and its tokenizer (see :func:`laser_integrations.load_causal_lm`).
        max_new_tokens: Length bound of each rationale in tokens.
        batch_size: Queries per ``generate`` call.
        prompt: The user message for a query: a ``str.format`` template with a ``{query}`` field, or a
            function of the query (default: the paper's Table 1 prompt).
        **options: :func:`generate_texts` options (``do_sample``, ``chat_template``, ``show_progress_bar``,
            ``lock``, ``temperature`` ...).

    Example:
        >>> model, tokenizer = load_causal_lm("Qwen/Qwen3-0.6B")                       # doctest: +SKIP
        >>> generate_rationales(["why is the sky blue?"], model, tokenizer, max_new_tokens=64)  # doctest: +SKIP
        ['1. The essential problem: why the daytime sky looks blue ...']
    """
    queries = _checked_strings(queries, "query")
    prompts = [_prompt_for(prompt, query) for query in queries]
    return generate_texts(prompts, model, tokenizer, max_new_tokens=max_new_tokens, batch_size=batch_size, **options)


class RationaleGenerator:
    """A loaded causal LM that writes rationales: the rewrite step of rewrite-then-retrieve.

    Args:
        model: A causal LM (``*ForCausalLM``).
        tokenizer: Its tokenizer.
        max_new_tokens: Length bound of each rationale (128 by default).
        batch_size: Queries per ``generate`` call.
        do_sample: Greedy decoding unless ``True``.
        chat_template: Use the chat template (``None``: when the tokenizer has one).
        prompt: ``{query}`` template or function of the query (default: the paper's Table 1 prompt).
        max_prompt_length: Truncate longer prompts (``None``: never).
        show_progress_bar: Show progress while generating.
        lock: Held around each ``generate`` call; :meth:`from_sentence_transformer` passes the lock its
            embedding model's adapters use, so the two never run the shared backbone at once.
        **generate_kwargs: Passed on to ``model.generate``.

    Example:
        >>> from laser_integrations import load_model
        >>> embedder = load_model("smollm2")                                            # doctest: +SKIP
        >>> generator = RationaleGenerator.from_sentence_transformer(embedder)          # doctest: +SKIP
        >>> rationales = generator.generate(["why does my default list keep growing?"])  # doctest: +SKIP
        >>> embedder.encode_query([("why does my default list keep growing?", rationales[0])])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        batch_size: int = 8,
        do_sample: bool = False,
        chat_template: bool | None = None,
        prompt: PromptSpec = RATIONALE_PROMPT,
        max_prompt_length: int | None = None,
        show_progress_bar: bool = False,
        lock: contextlib.AbstractContextManager[Any] | None = None,
        **generate_kwargs: Any,
    ) -> None:
        if not hasattr(model, "generate"):
            raise TypeError(f"model must be a causal LM with .generate(), got {type(model).__name__}")
        if isinstance(prompt, str) and "{query}" not in prompt:
            raise ValueError("a prompt template must contain a {query} field")
        if not isinstance(prompt, str) and not callable(prompt):
            raise TypeError(
                f"prompt must be a template string or a function of the query, got {type(prompt).__name__}"
            )
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = _check_positive("max_new_tokens", max_new_tokens)
        self.batch_size = _check_positive("batch_size", batch_size)
        self.do_sample = do_sample
        self.chat_template = chat_template
        self.prompt = prompt
        self.max_prompt_length = max_prompt_length
        self.show_progress_bar = show_progress_bar
        self.lock = lock if lock is not None else threading.Lock()
        self.generate_kwargs = generate_kwargs

    @classmethod
    def from_pretrained(
        cls,
        spec: str,
        *,
        device: str | None = None,
        dtype: Any = None,
        cache_folder: str | None = None,
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        **options: Any,
    ) -> RationaleGenerator:
        """Load a causal LM from anything :func:`~laser_integrations.load_model` takes (alias, Hub id, folder,
        ``.gguf`` file, ``"smollm2"``) and wrap it; ``options`` are the constructor's keywords."""
        from laser_integrations.loading import (
            DEMO_MODEL,
            _cached_demo_checkpoint,
            load_causal_lm,
            resolve_dtype,
            resolve_model_spec,
        )

        source = resolve_model_spec(spec, local_files_only=local_files_only, cache_folder=cache_folder)
        load = dict(dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code)
        if source.name == DEMO_MODEL:
            model, tokenizer = load_causal_lm(_cached_demo_checkpoint(source, cache_folder), **load)
        else:
            hub = dict(local_files_only=local_files_only, cache_folder=cache_folder)
            model, tokenizer = load_causal_lm(source.location, gguf_file=source.gguf_file, **load, **hub)
        if device is not None:
            model = model.to(device)
        return cls(model, tokenizer, **options)

    @classmethod
    def from_sentence_transformer(cls, model: SentenceTransformer, **options: Any) -> RationaleGenerator:
        """Generate with the backbone of a LaSER ``SentenceTransformer``: one model in memory for both jobs.

        The generator holds the same lock as the LangChain/LlamaIndex adapters built on ``model``.
        """
        from laser_integrations.embedder import model_lock

        module = _checked_laser_model(model)[0]
        return cls(module.model, module.tokenizer, lock=model_lock(model), **options)

    @property
    def name(self) -> str:
        """Where the weights came from (``config.name_or_path``)."""
        return str(getattr(self.model.config, "name_or_path", "") or type(self.model).__name__)

    def generate(self, queries: Sequence[str], *, show_progress_bar: bool | None = None) -> list[str]:
        """One rationale per query, in order."""
        queries = _checked_strings(queries, "query")
        return self.generate_texts([self.prompt_for(query) for query in queries], show_progress_bar)

    def prompt_for(self, query: str) -> str:
        """The user message this generator sends for ``query``."""
        return _prompt_for(self.prompt, query)

    def generate_texts(
        self, prompts: Sequence[str], show_progress_bar: bool | None = None, **overrides: Any
    ) -> list[str]:
        """Complete ready-made prompts (no template applied) with this generator's settings."""
        options = dict(
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
            do_sample=self.do_sample,
            chat_template=self.chat_template,
            max_prompt_length=self.max_prompt_length,
            show_progress_bar=self.show_progress_bar if show_progress_bar is None else show_progress_bar,
            lock=self.lock,
            **self.generate_kwargs,
        )
        options.update(overrides)
        return generate_texts(prompts, self.model, self.tokenizer, **options)

    async def agenerate(self, queries: Sequence[str]) -> list[str]:
        """:meth:`generate` in a worker thread, so an event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.generate, queries)

    def as_langchain_llm(self) -> BaseLLM:
        """This generator as a LangChain ``BaseLLM`` (``batch`` runs one batched ``generate``)."""
        return _framework_class("TransformersRationaleLLM")(generator=self)

    def __repr__(self) -> str:
        return f"RationaleGenerator({self.name!r}, max_new_tokens={self.max_new_tokens}, batch_size={self.batch_size})"


# -- explicit view ---------------------------------------------------------------------------------------


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
    from laser_integrations.embedder import model_lock

    _checked_laser_model(model)
    queries = _checked_strings(queries, "query")
    rationales = _checked_strings(rationales, "rationale")
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


def _checked_laser_model(model: Any) -> SentenceTransformer:
    """``model`` itself if it is a LaSER ``SentenceTransformer``, else a ``TypeError`` saying what it is."""
    from sentence_transformers import SentenceTransformer

    from laser_integrations.embedder import resolve_model

    if not isinstance(model, SentenceTransformer):
        raise TypeError(f"expected a LaSER SentenceTransformer (load_model(...)), got {type(model).__name__}")
    return resolve_model(model)


def _laser_query_side(embeddings: Any) -> tuple[SentenceTransformer, str | None] | None:
    """``(model, query prompt)`` when ``embeddings`` is LaSER (adapter or model), else ``None``."""
    from laser_integrations.module import LatentThinkingEmbedding

    client = getattr(embeddings, "client", embeddings)
    try:
        first = client[0]
    except (TypeError, IndexError, KeyError):
        return None
    if not isinstance(first, LatentThinkingEmbedding):
        return None
    instruction = getattr(embeddings, "instruction", None)
    return client, (query_prompt(instruction) if instruction is not None else None)


# -- any LLM a user already has ---------------------------------------------------------------------------


def _instance_of(obj: object, module: str, name: str) -> bool:
    """``isinstance`` against a framework class, without importing a framework the caller never loaded."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, getattr(loaded, name))


def _is_langchain_runnable(llm: object) -> bool:
    return _instance_of(llm, "langchain_core.runnables", "Runnable")


def _is_llama_index_llm(llm: object) -> bool:
    return _instance_of(llm, "llama_index.core.base.llms.base", "BaseLLM")


class _Completer:
    """Turns prompts into completions with whichever kind of LLM the user gave (sync and async)."""

    def __init__(self, llm: Any) -> None:
        if isinstance(llm, RationaleGenerator):
            self.kind = "local"
        elif _is_langchain_runnable(llm):
            from langchain_core.output_parsers import StrOutputParser

            self.kind, self.chain = "langchain", llm | StrOutputParser()
        elif _is_llama_index_llm(llm):
            from llama_index.core.prompts import PromptTemplate

            self.kind, self.template = "llama_index", PromptTemplate("{message}")
        else:
            raise TypeError(
                "llm must be a RationaleGenerator, a LangChain chat model / LLM / runnable, or a LlamaIndex LLM; "
                f"got {type(llm).__name__}"
            )
        self.llm = llm

    def complete(self, prompts: list[str]) -> list[str]:
        if self.kind == "local":
            return self.llm.generate_texts(prompts)
        if self.kind == "langchain":
            return [text.strip() for text in self.chain.batch(prompts)]
        return [self.llm.predict(self.template, message=prompt).strip() for prompt in prompts]

    async def acomplete(self, prompts: list[str]) -> list[str]:
        if self.kind == "local":
            return await asyncio.to_thread(self.llm.generate_texts, prompts)
        if self.kind == "langchain":
            return [text.strip() for text in await self.chain.abatch(prompts)]
        answers = await asyncio.gather(*(self.llm.apredict(self.template, message=prompt) for prompt in prompts))
        return [answer.strip() for answer in answers]


# -- LangChain --------------------------------------------------------------------------------------------


def rationale_runnable(llm: Any, prompt: PromptSpec | None = None) -> Runnable[str, str]:
    """``query -> rationale`` as a LangChain runnable: ``PromptTemplate | llm | StrOutputParser()``.

    Args:
        llm: A LangChain chat model or LLM (any runnable taking a prompt string), a
            :class:`RationaleGenerator` (batched through :meth:`RationaleGenerator.as_langchain_llm`),
            or a LlamaIndex LLM.
        prompt: ``{query}`` template or function of the query (default: a generator's own prompt, else
            the paper's Table 1 prompt).
    """
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import PromptTemplate
    from langchain_core.runnables import RunnableLambda

    prompt = _default_prompt(llm, prompt)
    to_prompt = (
        PromptTemplate.from_template(prompt) if isinstance(prompt, str) else RunnableLambda(prompt, name="prompt")
    )
    if isinstance(llm, RationaleGenerator):
        return (to_prompt | llm.as_langchain_llm() | StrOutputParser() | _strip).with_config(run_name="rationale")
    if _is_langchain_runnable(llm):
        return (to_prompt | llm | StrOutputParser() | _strip).with_config(run_name="rationale")
    completer = _Completer(llm)  # a LlamaIndex LLM, or a TypeError naming what is accepted

    def write(message: Any) -> str:
        return completer.complete([_as_text(message)])[0]

    async def awrite(message: Any) -> str:
        return (await completer.acomplete([_as_text(message)]))[0]

    return (to_prompt | RunnableLambda(write, afunc=awrite, name="llama_index_llm")).with_config(run_name="rationale")


def _default_prompt(llm: Any, prompt: PromptSpec | None) -> PromptSpec:
    if prompt is not None:
        return prompt
    return llm.prompt if isinstance(llm, RationaleGenerator) else RATIONALE_PROMPT


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
    from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

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
    return _laser_query_side(embeddings) if embeddings is not None else None


def _explicit_search(retriever: Any, model: SentenceTransformer, prompt: str | None) -> Runnable:
    """A runnable ``{"query", "rationale"} -> documents``: explicit-view vector, then a search by vector."""
    from langchain_core.runnables import RunnableLambda

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


def _build_langchain_llm_class() -> type:
    from langchain_core.callbacks import CallbackManagerForLLMRun
    from langchain_core.language_models import BaseLLM
    from langchain_core.outputs import Generation, LLMResult
    from pydantic import ConfigDict

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

    return TransformersRationaleLLM


# -- LlamaIndex -------------------------------------------------------------------------------------------


def _build_query_transform_class() -> type:
    from llama_index.core.indices.query.query_transform.base import BaseQueryTransform
    from llama_index.core.prompts import BasePromptTemplate, PromptTemplate
    from llama_index.core.prompts.mixin import PromptDictType
    from llama_index.core.schema import QueryBundle

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
            self._completer = _Completer(llm)
            self._laser = _laser_query_side(embed_model) if embed_model is not None else None
            if embed_model is not None and self._laser is None:
                raise TypeError(
                    f"embed_model must be a LaSER model or LaSEREmbedding, got {type(embed_model).__name__}"
                )
            prompt = _default_prompt(llm, rationale_prompt)
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

    return RationaleQueryTransform


_FRAMEWORK_CLASSES = {
    "TransformersRationaleLLM": _build_langchain_llm_class,
    "RationaleQueryTransform": _build_query_transform_class,
}
"""Classes that subclass a LangChain/LlamaIndex type: defined on first use, so importing this module needs neither."""


def _framework_class(name: str) -> type:
    cls = globals().get(name)
    if cls is None:
        cls = _FRAMEWORK_CLASSES[name]()
        cls.__module__ = __name__
        cls.__qualname__ = name
        globals()[name] = cls
    return cls


def __getattr__(name: str) -> Any:
    if name in _FRAMEWORK_CLASSES:
        return _framework_class(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- validation -------------------------------------------------------------------------------------------


def _checked_strings(values: object, what: str) -> list[str]:
    if isinstance(values, str):
        raise TypeError(f"expected a list of {what} strings, got one string; wrap it in a list")
    if not isinstance(values, Sequence):
        raise TypeError(f"expected a list of {what} strings, got {type(values).__name__}")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise TypeError(f"{what} {index} is {type(value).__name__} ({value!r:.60}), not a string")
    return list(values)


def _prompt_for(prompt: PromptSpec, query: str) -> str:
    return prompt(query) if callable(prompt) else prompt.format(query=query)


def _check_positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _as_chat_turn(tokenizer: PreTrainedTokenizerBase, prompt: str) -> str:
    """One user turn plus the generation prompt; Qwen3-style templates are told not to think aloud."""
    extra = {"enable_thinking": False} if template_knows_think(tokenizer) else {}
    messages = [{"role": "user", "content": prompt}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


def _generation_config(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, max_new_tokens: int, do_sample: bool
):
    """A fresh config: greedy must not inherit a checkpoint's sampling defaults (Qwen3 ships temperature 0.6 ...)."""
    from transformers import GenerationConfig

    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=eos if eos is not None else tokenizer.eos_token_id,
    )
