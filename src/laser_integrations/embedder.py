"""What the LlamaIndex and LangChain adapters delegate to: one LaSER model's query side, document side and provenance.

The adapters only translate their framework's types; everything they share lives here: resolving
"a model spec or a ready ``SentenceTransformer``", validating inputs before anything is queued,
calling ``encode_query`` (instruction + K) and ``encode_document`` (K), micro-batching concurrent
async calls through one :class:`~laser_integrations.batching.MicroBatcher`, and describing what a
vector store must agree on (:class:`EmbeddingProvenance`).

>>> embedder = LocalEncoder.load("smollm2")                                        # doctest: +SKIP
>>> options = EncodeOptions(num_thinking_steps=3)
>>> embedder.embed_query("why is the sky blue", options)[:2]                         # doctest: +SKIP
[0.0123, -0.0456]
>>> embedder.provenance(options).to_dict()["num_thinking_steps"]                    # doctest: +SKIP
3
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from laser_integrations.batching import MicroBatcher
from laser_integrations.provenance import EmbeddingProvenance, model_name, model_provenance, model_query_prompt
from laser_integrations.validation import checked_string, checked_strings, non_negative_number, positive_int

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


__all__ = ["EmbeddingProvenance", "EncodeOptions", "LocalEncoder", "model_lock", "resolve_model"]

DEFAULT_MODEL = "laser-qwen3"
"""The adapters' default model spec (``Alibaba-NLP/LaSER-Qwen3-0.6B``); ``"smollm2"`` runs offline."""

Side = Literal["query", "document"]


@dataclass(frozen=True)
class EncodeOptions:
    """The per-call settings an adapter passes with every text (read from its fields at call time)."""

    num_thinking_steps: int | None = None
    """K latent steps for queries and documents (``None``: the model's own, 3 for released checkpoints)."""
    instruction: str | None = None
    """The query task, sent as the ``Instruct: ...\\nQuery: `` prompt (``None``: the model's ``query`` prompt;
    ``""``: no instruction)."""
    batch_size: int = 32
    """Texts per forward pass, and how many concurrent texts the micro-batcher waits for."""
    show_progress_bar: bool = False
    max_wait_ms: float = 2.0
    """How long the micro-batcher collects concurrent async calls before it runs a forward pass."""


class _BatchKey(NamedTuple):
    """Everything besides the texts that shapes a forward pass: requests differing here never share one."""

    side: Side
    num_thinking_steps: int
    prompt: str | None
    batch_size: int
    show_progress_bar: bool


def resolve_model(model: str | os.PathLike[str] | SentenceTransformer, **load_options: Any) -> SentenceTransformer:
    """Return ``model`` if it is a LaSER ``SentenceTransformer``, else load the spec with :func:`load_model`.

    Args:
        model: A spec :func:`~laser_integrations.load_model` takes (``"laser-qwen3"``, a Hub id, a directory,
            a ``.gguf`` file, ``"smollm2"``) or a ``SentenceTransformer`` built by it.
        **load_options: :func:`~laser_integrations.load_model` options (``device``, ``dtype``, ``max_seq_length``
            ...); ``None`` values are skipped; only valid with a spec, since a built model is already loaded.

    Raises:
        TypeError: ``model`` is neither a spec nor a LaSER ``SentenceTransformer``.
        ValueError: Load options were given with a built model.
    """
    from sentence_transformers import SentenceTransformer

    from laser_integrations.module import laser_module

    load_options = {key: value for key, value in load_options.items() if value is not None}
    if isinstance(model, SentenceTransformer):
        if load_options:
            raise ValueError(
                f"load options {sorted(load_options)} only apply when loading a model spec; "
                "this SentenceTransformer is already loaded"
            )
        laser_module(model)
        return model
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a model spec (alias, Hub id, path) or a SentenceTransformer, got {type(model).__name__}"
        )
    from laser_integrations.loading import load_model

    return load_model(os.fspath(model), **load_options)


_model_locks: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def model_lock(model: SentenceTransformer) -> threading.Lock:
    """The one lock serializing forward passes on ``model``, shared by every embedder built on it."""
    with _model_locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.Lock()
        return lock


class LocalEncoder:
    """One LaSER model seen from a retrieval framework: query side, document side, provenance.

    Sync calls run in the caller's thread; async calls are coalesced by a micro-batcher that runs
    shared forward passes in one worker thread. Both hold the model's lock, so threads, event loops
    and several embedders on one model can call at once safely.

    Args:
        model: A LaSER ``SentenceTransformer`` (see :meth:`load` for a spec).

    Example:
        >>> embedder = LocalEncoder.load("smollm2")                                  # doctest: +SKIP
        >>> vectors = embedder.embed_documents(["Rayleigh scattering ..."], EncodeOptions())  # doctest: +SKIP
    """

    def __init__(self, model: SentenceTransformer) -> None:
        from laser_integrations.module import laser_module

        self.model = resolve_model(model)
        self.module = laser_module(self.model)
        self.batcher: MicroBatcher[str, list[float]] = MicroBatcher(
            self._run_batch, lock=model_lock(self.model), name="laser-embedder"
        )

    @classmethod
    def load(cls, model: str | os.PathLike[str] | SentenceTransformer, **load_options: Any) -> LocalEncoder:
        """Build from a spec and :func:`~laser_integrations.load_model` options, or from a ready model.

        ``None`` options are skipped; with a ready model, setting any other option raises ``ValueError``.
        """
        return cls(resolve_model(model, **load_options))

    @property
    def dimension(self) -> int:
        """Vector size, known without running the model."""
        return self.module.get_embedding_dimension()

    @property
    def model_id(self) -> str:
        """The provenance name of the weights: alias target, Hub id or path."""
        return model_name(self.model)

    def provenance(self, options: EncodeOptions) -> EmbeddingProvenance:
        """What a collection filled with these settings must record (see :mod:`laser_integrations.provenance`)."""
        return model_provenance(
            self.model, num_thinking_steps=options.num_thinking_steps, instruction=options.instruction
        )

    # -- sync ------------------------------------------------------------------------------------------

    def embed_query(self, text: str, options: EncodeOptions) -> list[float]:
        """One query vector (instruction + K), as plain Python floats."""
        return self.embed_queries([checked_string(text, "query")], options)[0]

    def embed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """Query vectors for ``texts``; ``[]`` for an empty list."""
        texts = checked_strings(texts, "text")
        return self.batcher.run(self._key("query", options), texts)

    def embed_document(self, text: str, options: EncodeOptions) -> list[float]:
        """One document vector (no instruction, K), as plain Python floats."""
        return self.embed_documents([checked_string(text, "document")], options)[0]

    def embed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """Document vectors (no instruction, K) for ``texts``; ``[]`` for an empty list."""
        texts = checked_strings(texts, "text")
        return self.batcher.run(self._key("document", options), texts)

    # -- async: coalesced with every other pending call --------------------------------------------------

    async def aembed_query(self, text: str, options: EncodeOptions) -> list[float]:
        """:meth:`embed_query` without blocking the event loop."""
        return (await self.aembed_queries([checked_string(text, "query")], options))[0]

    async def aembed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """:meth:`embed_queries` without blocking the event loop."""
        return await self._arun("query", texts, options)

    async def aembed_document(self, text: str, options: EncodeOptions) -> list[float]:
        """:meth:`embed_document` without blocking the event loop."""
        return (await self.aembed_documents([checked_string(text, "document")], options))[0]

    async def aembed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        """:meth:`embed_documents` without blocking the event loop."""
        return await self._arun("document", texts, options)

    def close(self) -> None:
        """Stop the micro-batcher's worker thread now (it also stops by itself when idle)."""
        self.batcher.close()

    # -- internals -------------------------------------------------------------------------------------

    async def _arun(self, side: Side, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]:
        texts = checked_strings(texts, "text")
        key = self._key(side, options)
        wait_ms = non_negative_number("max_wait_ms", options.max_wait_ms)
        return await self.batcher.arun(key, texts, max_batch_size=key.batch_size, max_wait=wait_ms / 1000)

    def _steps(self, options: EncodeOptions) -> int:
        from laser_integrations.latent import check_num_thinking_steps

        steps = self.module.num_thinking_steps if options.num_thinking_steps is None else options.num_thinking_steps
        return check_num_thinking_steps(steps)

    def _query_prompt(self, options: EncodeOptions) -> str:
        return model_query_prompt(self.model, options.instruction)

    def _key(self, side: Side, options: EncodeOptions) -> _BatchKey:
        """Validate the options here, in the caller, so a bad setting fails only its own call."""
        batch_size = positive_int("batch_size", options.batch_size)
        prompt = self._query_prompt(options) if side == "query" else None
        return _BatchKey(side, self._steps(options), prompt, batch_size, bool(options.show_progress_bar))

    def _run_batch(self, key: _BatchKey, texts: list[str]) -> list[list[float]]:
        encode = self.model.encode_query if key.side == "query" else self.model.encode_document
        vectors = encode(
            texts,
            prompt=key.prompt,
            num_thinking_steps=key.num_thinking_steps,
            batch_size=key.batch_size,
            show_progress_bar=key.show_progress_bar,
            convert_to_numpy=True,
        )
        return vectors.tolist()


def refuse_normalize(adapter: str, value: object) -> None:
    """The 0.1 adapters' ``normalize`` option, which could not do anything: LaSER vectors are always unit length
    (``normalize(mean(h_1..h_K))``). Accepted with a ``DeprecationWarning`` until 0.3; ``False`` is refused."""
    import warnings

    if value is False:
        raise ValueError(f"{adapter}: LaSER vectors are always L2-normalized; normalize=False cannot be honoured")
    warnings.warn(f"{adapter}(normalize=...) is deprecated and does nothing", DeprecationWarning, stacklevel=3)


def __getattr__(name: str) -> Any:
    if name == "LaSEREmbedder":  # the 0.1 name; removed in 0.3
        import warnings

        warnings.warn("LaSEREmbedder is now LocalEncoder", DeprecationWarning, stacklevel=2)
        return LocalEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
