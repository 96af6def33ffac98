"""LangChain ``Embeddings`` for LaSER latent-thinking models: retrievers, vector stores, async chains.

Needs LangChain: ``pip install 'laser-integrations[langchain]'``.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Any, ClassVar

try:
    from langchain_core.embeddings import Embeddings
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "laser_integrations.langchain needs langchain-core: pip install 'laser-integrations[langchain]'"
    ) from error
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from laser_integrations.embedder import DEFAULT_MODEL, refuse_normalize
from laser_integrations.encoder import Encoder, EncoderAdapter
from laser_integrations.serving.client import as_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["LaSEREmbeddings"]


class LaSEREmbeddings(EncoderAdapter, BaseModel, Embeddings):
    """LaSER embeddings: queries think for K latent steps under an instruction, documents for K steps.

    Takes a model spec (anything :func:`~laser_integrations.load_model` takes), a ready LaSER
    ``SentenceTransformer`` (positionally or as ``client=``) or an :class:`~laser_integrations.encoder.Encoder`,
    so one loaded model can serve LangChain and LlamaIndex at once. ``aembed_query``/``aembed_documents``
    never block the event loop: concurrent calls are coalesced into shared forward passes run in a worker
    thread. With ``endpoint=`` (a ``laser serve`` URL) no model is loaded: the server embeds, with the same
    sides, K and instruction.

    Example:
        ```python
        from langchain_qdrant import QdrantVectorStore

        from laser_integrations.langchain import LaSEREmbeddings

        embeddings = LaSEREmbeddings("laser-qwen3", num_thinking_steps=3)  # "smollm2" runs offline
        store = QdrantVectorStore.from_texts(
            ["Rayleigh scattering makes the sky blue."], embeddings, location=":memory:", collection_name="docs"
        )
        store.as_retriever().invoke("why is the sky blue")
        ```
    """

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Model spec: an alias (``"laser-qwen3"``), a Hub id, a local directory, a ``.gguf`` file or ``"smollm2"``
    (offline demo model). With a ready model, its provenance name."""
    num_thinking_steps: int | None = Field(default=None, ge=1)
    """K latent thinking steps for queries and documents (``None``: the model's default, 3 when released)."""
    instruction: str | None = None
    """The query task, as in ``Instruct: {instruction}\\nQuery: {query}`` (``None``: the model's own; ``""``: none)."""
    batch_size: int = Field(default=32, gt=0)
    """Texts per forward pass; also how many concurrent async texts one coalesced pass waits for."""
    show_progress: bool = False
    """Show a progress bar while embedding documents."""
    device: str | None = None
    """Device to load the model on (``None``: sentence-transformers picks)."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other :func:`~laser_integrations.load_model` options: ``dtype``, ``max_seq_length``, ``cache_folder``,
    ``local_files_only``, ``revision``, ``trust_remote_code`` ..."""
    max_wait_ms: float = Field(default=2.0, ge=0)
    """How long concurrent async calls are collected before one forward pass runs them together."""
    endpoint: str | None = None
    """A ``laser serve`` URL (``"http://127.0.0.1:8080"``): embed there instead of loading a model (remote mode).
    ``model`` is then the served name (default: the server's model); queries and documents keep their sides."""
    api_key: SecretStr | None = None
    """The server's ``--api-key`` (remote mode)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), populate_by_name=True)

    OPTION_FIELDS: ClassVar[dict[str, str]] = {
        "num_thinking_steps": "num_thinking_steps",
        "instruction": "instruction",
        "batch_size": "batch_size",
        "show_progress_bar": "show_progress",
        "max_wait_ms": "max_wait_ms",
    }
    _encoder: Encoder = PrivateAttr()

    def __init__(
        self, model: str | os.PathLike[str] | SentenceTransformer | Encoder | None = None, /, **kwargs: Any
    ) -> None:
        """Validate the fields, then load the model (or adopt the model or encoder given)."""
        if "normalize" in kwargs:
            refuse_normalize("LaSEREmbeddings", kwargs.pop("normalize"))
        client = kwargs.pop("client", None)
        if client is not None:
            warnings.warn(
                "LaSEREmbeddings(client=...) is deprecated; pass the model positionally or as model=",
                DeprecationWarning,
                stacklevel=2,
            )
        if kwargs.get("model") is not None and not isinstance(kwargs["model"], (str, os.PathLike)):
            if model is not None:
                raise TypeError("a model was given twice (positionally and as model=)")
            model = kwargs.pop("model")  # a ready model or encoder given as model=
        if model is not None:
            if isinstance(model, (str, os.PathLike)):
                if "model" in kwargs or "model_name" in kwargs:
                    raise TypeError("the model spec was given twice (positionally and as model=)")
                kwargs["model"] = os.fspath(model)
            elif client is not None:
                raise TypeError("a model was given twice (positionally and as client=)")
            else:
                client = model
        super().__init__(**kwargs)
        named = self.model_name if "model_name" in self.model_fields_set else None
        api_key = self.api_key.get_secret_value() if self.api_key is not None else None
        self._encoder = as_encoder(
            named if client is None else client,
            endpoint=self.endpoint,
            api_key=api_key,
            device=self.device,
            load_options=self.model_kwargs,
        )
        if client is not None and named is None:
            self.model_name = self._encoder.model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (no instruction). ``[]`` for ``[]``; a non-string item raises ``TypeError``."""
        return self._encoder.embed_documents(texts, self._options())

    def embed_query(self, text: str) -> list[float]:
        """Embed one query under the instruction. ``None`` or a non-string raises ``TypeError``."""
        return self._encoder.embed_query(text, self._options())

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents off the event loop, coalesced with other pending calls."""
        return await self._encoder.aembed_documents(texts, self._options())

    async def aembed_query(self, text: str) -> list[float]:
        """Embed one query off the event loop, coalesced with other pending calls."""
        return await self._encoder.aembed_query(text, self._options())
