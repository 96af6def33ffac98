"""What a vector store must agree on: the embedding provenance of a LaSER model, built from the model once.

A vector store cannot tell vectors of one model from another's. Every store this package writes to
(Qdrant collections, Qdrant Edge shards, a server's ``/info``) records an :class:`EmbeddingProvenance`
and refuses, before any write, vectors whose checked fields differ.

>>> a = EmbeddingProvenance("smollm2", 3, "Instruct: t\\nQuery: ", 576, "chat-template", max_seq_length=128)
>>> b = EmbeddingProvenance("smollm2", 3, "Instruct: t\\nQuery: ", 576, "chat-template", max_seq_length=256)
>>> a.differences(b)
{'max_seq_length': (128, 256)}
>>> EmbeddingProvenance.from_dict(a.to_dict()) == a
True
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from laser_integrations.formatting import query_prompt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "EmbeddingProvenance",
    "ProvenanceMismatchError",
    "check_provenance",
    "model_name",
    "model_provenance",
    "model_query_prompt",
]


@dataclass(frozen=True)
class EmbeddingProvenance:
    """What every vector in one collection must share; mixing any of the checked fields mixes vector spaces.

    Example:
        >>> a = EmbeddingProvenance("smollm2", 3, "Instruct: t\\nQuery: ", 576, "chat-template")
        >>> b = EmbeddingProvenance("smollm2", 6, "Instruct: t\\nQuery: ", 576, "chat-template")
        >>> a.differences(b)
        {'num_thinking_steps': (3, 6)}
    """

    model: str
    """Where the weights came from: alias target, Hub id or path (``LatentThinkingEmbedding.base_model``)."""
    num_thinking_steps: int
    query_prompt: str
    """The instruction prefix queries are encoded with (``""`` for none)."""
    dimension: int
    text_format: str
    """How texts are wrapped: ``"chat-template+think"``, ``"chat-template"`` or ``"plain"``."""
    max_seq_length: int | None = None
    """The token limit texts were cut at: another limit changes the vectors of every text it cuts.
    ``None`` (records written before 0.3) matches any limit."""
    dtype: str | None = None
    """The floating-point type the model computed in (``"float32"``, ``"bfloat16"`` ...). Recorded, not
    checked: the vector spaces agree to within rounding (see the README's dtype section)."""

    CHECKED = ("model", "num_thinking_steps", "query_prompt", "dimension", "text_format", "max_seq_length")
    REQUIRED = ("model", "num_thinking_steps", "query_prompt", "dimension", "text_format")
    """The keys a stored record must have; the rest default for records written by older versions."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields, as stored in a vector store's collection metadata."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EmbeddingProvenance:
        """Rebuild from :meth:`to_dict` output (unknown keys from newer versions are ignored)."""
        if not isinstance(data, dict):
            raise ValueError(f"stored embedding provenance is not a mapping: {data!r}")
        known = {f.name for f in fields(cls)}
        missing = [name for name in cls.REQUIRED if name not in data]
        if missing:
            raise ValueError(f"stored embedding provenance lacks {missing}: {data!r}")
        return cls(**{key: value for key, value in data.items() if key in known})

    def differences(self, other: EmbeddingProvenance) -> dict[str, tuple[Any, Any]]:
        """The checked fields that differ, as ``{field: (self's value, other's value)}``.

        ``max_seq_length`` counts only where both records know it.
        """
        found = {}
        for name in self.CHECKED:
            mine, theirs = getattr(self, name), getattr(other, name)
            if name == "max_seq_length" and (mine is None or theirs is None):
                continue
            if mine != theirs:
                found[name] = (mine, theirs)
        return found


def model_name(model: SentenceTransformer) -> str:
    """The provenance name of a LaSER model's weights: alias target, Hub id or path."""
    from laser_integrations.module import laser_module

    module = laser_module(model)
    config = getattr(module.model, "config", None)
    return module.base_model or getattr(config, "name_or_path", "") or "unknown"


def model_query_prompt(model: SentenceTransformer, instruction: str | None = None) -> str:
    """The prompt queries get: the model's ``query`` prompt, or ``instruction`` formatted (``""``: none)."""
    if instruction is None:
        return model.prompts.get("query") or ""
    return query_prompt(instruction)


def model_provenance(
    model: SentenceTransformer, *, num_thinking_steps: int | None = None, instruction: str | None = None
) -> EmbeddingProvenance:
    """What a store filled by ``model`` must record: its K (or ``num_thinking_steps``) and its query prompt
    (or ``instruction``'s).

    Example:
        >>> from laser_integrations import load_model                                 # doctest: +SKIP
        >>> model_provenance(load_model("smollm2")).num_thinking_steps                # doctest: +SKIP
        3
    """
    from laser_integrations.latent import check_num_thinking_steps
    from laser_integrations.module import laser_module

    module = laser_module(model)
    text_format = "plain"
    if module.uses_chat_template:
        text_format = "chat-template+think" if module.uses_think_block else "chat-template"
    steps = module.num_thinking_steps if num_thinking_steps is None else num_thinking_steps
    dtype = getattr(module.model, "dtype", None)
    return EmbeddingProvenance(
        model=model_name(model),
        num_thinking_steps=check_num_thinking_steps(steps),
        query_prompt=model_query_prompt(model, instruction),
        dimension=module.get_embedding_dimension(),
        text_format=text_format,
        max_seq_length=module.max_seq_length,
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
    )


class ProvenanceMismatchError(ValueError):
    """The store holds vectors made with other embedding settings than the ones about to write to it."""


def check_provenance(stored: EmbeddingProvenance, wanted: EmbeddingProvenance, where: str) -> None:
    """Raise :class:`ProvenanceMismatchError` naming every checked field in which ``stored`` and ``wanted`` differ.

    Example:
        >>> stored = EmbeddingProvenance("smollm2", 3, "", 576, "plain")
        >>> check_provenance(stored, EmbeddingProvenance("smollm2", 6, "", 576, "plain"), "collection 'docs'")
        Traceback (most recent call last):
        ...
        laser_integrations.provenance.ProvenanceMismatchError: collection 'docs' holds vectors made with num_thinking_steps=3; these embeddings use num_thinking_steps=6. Mixing them would silently return wrong neighbours: embed with the recorded settings, or index into a new collection.
    """  # noqa: E501
    differences = stored.differences(wanted)
    if differences:
        held = ", ".join(f"{name}={old!r}" for name, (old, _) in differences.items())
        asked = ", ".join(f"{name}={new!r}" for name, (_, new) in differences.items())
        raise ProvenanceMismatchError(
            f"{where} holds vectors made with {held}; these embeddings use {asked}. Mixing them would "
            "silently return wrong neighbours: embed with the recorded settings, or index into a new collection."
        )
