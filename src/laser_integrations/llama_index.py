"""LlamaIndex ``BaseEmbedding`` for LaSER latent-thinking models (``Settings.embed_model = LaSEREmbedding(...)``).

Needs LlamaIndex: ``pip install 'laser-integrations[llamaindex]'``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.llama_index needs llama-index-core: pip install 'laser-integrations[llamaindex]'"
    ) from error

from laser_integrations.embedder import (
    DEFAULT_MODEL,
    EmbeddingProvenance,
    EncodeOptions,
    LocalEncoder,
    refuse_normalize,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from laser_integrations.serving.client import RemoteEncoder

__all__ = ["LaSEREmbedding"]


class LaSEREmbedding(BaseEmbedding):
    """LaSER embeddings for LlamaIndex: queries think for K latent steps under an instruction, documents for K steps.

    Takes a model spec (anything :func:`~laser_integrations.load_model` takes) or a ready LaSER
    ``SentenceTransformer``. The async methods never block the event loop: concurrent calls are
    coalesced into shared forward passes run in a worker thread. With ``endpoint=`` (a ``laser serve``
    URL) no model is loaded: the server embeds, with the same sides, K and instruction.

    Args:
        model: A model spec (``"laser-qwen3"``, a Hub id, a directory, a ``.gguf`` file, ``"smollm2"``) or a
            ``SentenceTransformer`` built by :func:`~laser_integrations.load_model`.
        model_name: The same as a spec ``model`` (the serialized field, so ``from_dict(to_dict())`` works).
        num_thinking_steps: K latent steps (``None``: the model's default, 3 for the released checkpoints).
        instruction: Query task (``None``: the model's own; ``""``: none).
        embed_batch_size: Texts per forward pass.
        show_progress_bar: Show a progress bar while embedding documents.
        max_wait_ms: How long concurrent async calls are collected before one forward pass.
        device: Device to load a spec on.
        model_kwargs: Other :func:`~laser_integrations.load_model` options (``dtype``, ``max_seq_length`` ...).
        endpoint: A ``laser serve`` URL (``"http://127.0.0.1:8080"``): embed there (remote mode); ``model`` /
            ``model_name`` is then the served name (default: the server's model).
        api_key: The server's ``--api-key`` (remote mode; never serialized).

    Example:
        ```python
        from llama_index.core import Settings

        from laser_integrations.llama_index import LaSEREmbedding

        Settings.embed_model = LaSEREmbedding("laser-qwen3", num_thinking_steps=3)  # "smollm2" runs offline
        ```
    """

    num_thinking_steps: int | None = Field(
        default=None, ge=1, description="K latent thinking steps for queries and documents (None: model default)."
    )
    instruction: str | None = Field(
        default=None, description="Query task, sent as 'Instruct: {instruction}\\nQuery: ' (None: the model's own)."
    )
    show_progress_bar: bool = Field(default=False, description="Show a progress bar while embedding documents.")
    max_wait_ms: float = Field(
        default=2.0, ge=0, description="How long concurrent async calls are collected before one forward pass."
    )
    device: str | None = Field(default=None, description="Device the model spec is loaded on (None: automatic).")
    model_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Other laser_integrations.load_model options (dtype, max_seq_length ...)."
    )
    endpoint: str | None = Field(default=None, description="A laser serve URL: embed there instead of loading.")
    api_key: str | None = Field(default=None, exclude=True, repr=False, description="The server's --api-key.")

    _client: SentenceTransformer | None = PrivateAttr()
    _embedder: LocalEncoder | RemoteEncoder = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | SentenceTransformer | None = None,
        *,
        model_name: str | None = None,
        num_thinking_steps: int | None = None,
        instruction: str | None = None,
        embed_batch_size: int = 32,
        show_progress_bar: bool = False,
        max_wait_ms: float = 2.0,
        device: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        endpoint: str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        if "normalize" in kwargs:
            refuse_normalize("LaSEREmbedding", kwargs.pop("normalize"))
        if model is not None and model_name is not None:
            raise TypeError("pass the model once: as `model` or as `model_name`")
        source = model if model is not None else (model_name or DEFAULT_MODEL)
        remote = endpoint is not None
        if remote and (not isinstance(source, (str, os.PathLike)) or device is not None or model_kwargs):
            raise ValueError("with endpoint= the server holds the model: drop the model object, device, model_kwargs")
        # A ready model is adopted now (cheap); a spec is loaded only after the fields validate.
        deferred = remote or isinstance(source, (str, os.PathLike))
        embedder = None if deferred else LocalEncoder.load(source, device=device)
        if embedder is not None and model_kwargs:
            raise ValueError("model_kwargs only apply when loading a model spec; this model is already loaded")
        super().__init__(
            model_name=os.fspath(source) if embedder is None else embedder.model_id,
            embed_batch_size=embed_batch_size,
            num_thinking_steps=num_thinking_steps,
            instruction=instruction,
            show_progress_bar=show_progress_bar,
            max_wait_ms=max_wait_ms,
            device=device,
            model_kwargs=model_kwargs or {},
            callback_manager=callback_manager,
            endpoint=endpoint,
            api_key=api_key,
            **kwargs,
        )
        if remote:
            from laser_integrations.serving.client import RemoteEncoder

            named = None if model is None and model_name is None else self.model_name
            self._embedder, self._client = RemoteEncoder(endpoint, model=named, api_key=api_key), None
            return
        if embedder is None:
            embedder = LocalEncoder.load(self.model_name, device=self.device, **self.model_kwargs)
        self._embedder = embedder
        self._client = embedder.model

    @classmethod
    def class_name(cls) -> str:
        return "LaSEREmbedding"

    @property
    def client(self) -> SentenceTransformer | None:
        """The underlying LaSER ``SentenceTransformer`` (share it with other adapters); ``None`` in remote mode."""
        return self._client

    @property
    def provenance(self) -> EmbeddingProvenance:
        """What a vector store filled by this model must agree on (model, K, instruction, dimension)."""
        return self._embedder.provenance(self._options())

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embedder.embed_query(query, self._options())

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._embedder.aembed_query(query, self._options())

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embedder.embed_document(text, self._options())

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._embedder.aembed_document(text, self._options())

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embedder.embed_documents(texts, self._options())

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._embedder.aembed_documents(texts, self._options())

    def _options(self) -> EncodeOptions:
        return EncodeOptions(
            num_thinking_steps=self.num_thinking_steps,
            instruction=self.instruction,
            batch_size=self.embed_batch_size,
            show_progress_bar=self.show_progress_bar,
            max_wait_ms=self.max_wait_ms,
        )
