"""LlamaIndex ``BaseEmbedding`` for LaSER latent-thinking models (``Settings.embed_model = LaSEREmbedding(...)``).

Needs LlamaIndex: ``pip install 'laser-integrations[llamaindex]'``.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

try:
    from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.callbacks import CallbackManager
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.llama_index needs llama-index-core: pip install 'laser-integrations[llamaindex]'"
    ) from error

from laser_integrations.embedder import DEFAULT_MODEL, refuse_normalize
from laser_integrations.encoder import Encoder, EncoderAdapter
from laser_integrations.serving.client import as_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["LaSEREmbedding"]


class LaSEREmbedding(EncoderAdapter, BaseEmbedding):
    """LaSER embeddings for LlamaIndex: queries think for K latent steps under an instruction, documents for K steps.

    Takes a model spec (anything :func:`~laser_integrations.load_model` takes), a ready LaSER
    ``SentenceTransformer`` or an :class:`~laser_integrations.encoder.Encoder`. The async methods never block
    the event loop: concurrent calls are coalesced into shared forward passes run in a worker thread. With
    ``endpoint=`` (a ``laser serve`` URL) no model is loaded: the server embeds, with the same sides, K and
    instruction.

    Args:
        model: A model spec (``"laser-qwen3"``, a Hub id, a directory, a ``.gguf`` file, ``"smollm2"``), a
            ``SentenceTransformer`` built by :func:`~laser_integrations.load_model`, or an ``Encoder``.
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

    OPTION_FIELDS: ClassVar[dict[str, str]] = {
        "num_thinking_steps": "num_thinking_steps",
        "instruction": "instruction",
        "batch_size": "embed_batch_size",
        "show_progress_bar": "show_progress_bar",
        "max_wait_ms": "max_wait_ms",
    }
    _encoder: Encoder = PrivateAttr()

    def __init__(
        self,
        model: str | os.PathLike[str] | SentenceTransformer | Encoder | None = None,
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
        connect = {"endpoint": endpoint, "api_key": api_key, "device": device, "load_options": model_kwargs}
        if model is None or isinstance(model, (str, os.PathLike)):
            spec = model_name if model is None else os.fspath(model)  # None: nothing named
            encoder = None  # loaded only after the fields validate
        else:  # a ready model or encoder: adopted now (cheap)
            spec, encoder = None, as_encoder(model, **connect)
        super().__init__(
            model_name=encoder.model_id if encoder is not None else spec or DEFAULT_MODEL,
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
        self._encoder = as_encoder(spec, **connect) if encoder is None else encoder

    @classmethod
    def class_name(cls) -> str:
        return "LaSEREmbedding"

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._encoder.embed_query(query, self._options())

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self._encoder.aembed_query(query, self._options())

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._encoder.embed_document(text, self._options())

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self._encoder.aembed_document(text, self._options())

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._encoder.embed_documents(texts, self._options())

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self._encoder.aembed_documents(texts, self._options())
