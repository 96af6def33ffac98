"""The one contract the adapters and stores depend on: an :class:`Encoder` embeds queries and documents.

:class:`~laser_integrations.embedder.LocalEncoder` (a model in this process) and
:class:`~laser_integrations.serving.client.RemoteEncoder` (a ``laser serve`` endpoint) both implement it,
so the LangChain and LlamaIndex adapters only convert their framework's types (:class:`EncoderAdapter`)
and never ask which one they hold. :func:`~laser_integrations.serving.client.as_encoder` turns what a user
gives an adapter into one.

>>> from laser_integrations.embedder import LocalEncoder
>>> isinstance(LocalEncoder.load("smollm2"), Encoder)                                  # doctest: +SKIP
True
>>> isinstance("smollm2", Encoder)
False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from laser_integrations.embedder import EncodeOptions, LocalEncoder
from laser_integrations.provenance import EmbeddingProvenance

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = ["Encoder", "EncoderAdapter", "is_encoder", "loaded_model"]


@runtime_checkable
class Encoder(Protocol):
    """Query side, document side and provenance of one LaSER model, wherever it runs.

    Every method takes the per-call :class:`~laser_integrations.embedder.EncodeOptions` (K, instruction,
    batch size ...); vectors are lists of Python floats, one per text, in order. Bad input raises
    ``TypeError``/``ValueError`` in the caller, before anything is sent or queued.

    Before Python 3.12, ``isinstance(x, Encoder)`` reads ``x``'s properties (a ``RemoteEncoder`` then asks
    its server); :func:`is_encoder` checks the class only.
    """

    @property
    def dimension(self) -> int:
        """Vector size."""
        ...

    @property
    def model_id(self) -> str:
        """The provenance name of the weights: alias target, Hub id or path."""
        ...

    def provenance(self, options: EncodeOptions) -> EmbeddingProvenance:
        """What a store filled through this encoder with ``options`` must record."""
        ...

    def embed_query(self, text: str, options: EncodeOptions) -> list[float]: ...

    def embed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]: ...

    def embed_document(self, text: str, options: EncodeOptions) -> list[float]: ...

    def embed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]: ...

    async def aembed_query(self, text: str, options: EncodeOptions) -> list[float]: ...

    async def aembed_queries(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]: ...

    async def aembed_document(self, text: str, options: EncodeOptions) -> list[float]: ...

    async def aembed_documents(self, texts: Sequence[str], options: EncodeOptions) -> list[list[float]]: ...

    def close(self) -> None:
        """Release threads or connections (a later call opens them again)."""
        ...


_MEMBERS = tuple(name for name in vars(Encoder) if not name.startswith("_"))


def is_encoder(value: object) -> bool:
    """Whether ``value``'s class has every :class:`Encoder` member (no property is run, no server asked).

    >>> is_encoder("smollm2")
    False
    """
    return all(hasattr(type(value), name) for name in _MEMBERS)


def loaded_model(encoder: Encoder) -> SentenceTransformer | None:
    """The ``SentenceTransformer`` behind a local encoder, to share with other adapters (``None`` for a remote one).

    >>> loaded_model(object()) is None
    True
    """
    return encoder.model if isinstance(encoder, LocalEncoder) else None


class EncoderAdapter:
    """What both framework adapters share besides type conversion: an :class:`Encoder` and per-call options.

    A subclass stores its encoder in ``_encoder`` and names, in ``OPTION_FIELDS``, the field that holds each
    :class:`~laser_integrations.embedder.EncodeOptions` setting; the options are read from the fields at every
    call, so changing a field changes the next call.
    """

    OPTION_FIELDS: ClassVar[dict[str, str]]
    """``{EncodeOptions field: adapter field}``."""
    _encoder: Encoder

    @property
    def encoder(self) -> Encoder:
        """The :class:`Encoder` this adapter delegates to (a local model or a ``laser serve`` endpoint)."""
        return self._encoder

    @property
    def client(self) -> SentenceTransformer | None:
        """The underlying LaSER ``SentenceTransformer`` (share it with other adapters); ``None`` in remote mode."""
        return loaded_model(self._encoder)

    @property
    def provenance(self) -> EmbeddingProvenance:
        """What a vector store filled by this adapter must agree on (model, K, instruction, dimension ...)."""
        return self._encoder.provenance(self._options())

    def _options(self) -> EncodeOptions:
        values: dict[str, Any] = {option: getattr(self, name) for option, name in self.OPTION_FIELDS.items()}
        return EncodeOptions(**values)
