"""Request and response bodies of ``laser serve``: OpenAI's embeddings API, TEI's ``/embed``, and their errors.

Requests refuse unknown fields (as OpenAI does), so a misspelt extension field fails loudly instead of
being ignored. Inputs are checked here with messages that name the bad item; the app turns every
validation failure into a ``400`` with an OpenAI error body (:func:`error_body`).

>>> EmbeddingsRequest.model_validate({"input": "why is the sky blue", "model": "laser-qwen3:query"}).input
['why is the sky blue']
>>> EmbedRequest.model_validate({"inputs": ["a", "b"], "prompt_name": "query"}).prompt_name
'query'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
)

Side = Literal["query", "document"]
SIDES: tuple[Side, ...] = ("query", "document")

TOKEN_IDS_HINT = (
    "this server embeds text, not token ids: send strings "
    "(LangChain's OpenAIEmbeddings: pass check_embedding_ctx_length=False)"
)


def checked_inputs(value: Any, field: str) -> list[str]:
    """One string or a non-empty list of strings, as a list; a ``ValueError`` naming the bad item otherwise.

    >>> checked_inputs("one text", "input")
    ['one text']
    >>> checked_inputs([], "input")
    Traceback (most recent call last):
    ...
    ValueError: input is an empty list: send a string or a non-empty list of strings
    """
    if isinstance(value, str):
        return [valid_unicode(value, f"{field}[0]")]
    if not isinstance(value, list):
        raise ValueError(f"{field} must be a string or a list of strings, got {_json_type(value)}")
    if not value:
        raise ValueError(f"{field} is an empty list: send a string or a non-empty list of strings")
    for index, item in enumerate(value):
        if isinstance(item, str):
            valid_unicode(item, f"{field}[{index}]")
            continue
        if (isinstance(item, int) and not isinstance(item, bool)) or isinstance(item, list):
            raise ValueError(f"{field}[{index}] is {_json_type(item)}; {TOKEN_IDS_HINT}")
        raise ValueError(f"{field}[{index}] is {_json_type(item)} ({item!r:.60}), not a string")
    return list(value)


def valid_unicode(text: str, field: str) -> str:
    """``text`` if it is valid Unicode, else a ``ValueError`` naming the lone surrogate and where it is.

    JSON's ``\\ud800`` escapes can spell half of a UTF-16 pair, which no tokenizer can read.

    >>> valid_unicode("fine", "input[0]")
    'fine'
    >>> valid_unicode("ab\\ud800", "input[2]")
    Traceback (most recent call last):
    ...
    ValueError: input[2] holds a lone surrogate (U+D800) at character 2, which is not valid Unicode: send \
whole characters (a UTF-16 pair escapes as two \\u escapes)
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        code = ord(text[error.start])
        raise ValueError(
            f"{field} holds a lone surrogate (U+{code:04X}) at character {error.start}, which is not valid "
            "Unicode: send whole characters (a UTF-16 pair escapes as two \\u escapes)"
        ) from None
    return text


def _unicode_field(value: str, info: ValidationInfo) -> str:
    return valid_unicode(value, info.field_name or "text")


Text = Annotated[StrictStr, AfterValidator(_unicode_field)]
"""A string field that must be valid Unicode (400 naming the field otherwise)."""


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", dict: "an object", list: "a list"}
    if value is None:
        return "null"
    return names.get(type(value), f"a {type(value).__name__}")


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_type: Side | None = Field(
        default=None,
        description="Extension: embed as queries (instruction + K latent steps) or documents (K steps). "
        "Default: a ':query'/':document' suffix on the model name, else the server's default side.",
    )
    num_thinking_steps: StrictInt | None = Field(
        default=None, ge=1, description="Extension: K latent thinking steps (>= 1; default: the model's)."
    )
    instruction: Text | None = Field(
        default=None,
        description="Extension, queries only: the task, sent as 'Instruct: {instruction}\\nQuery: ' "
        "(default: the model's query prompt; '' for none).",
    )
    truncate: StrictBool | None = Field(
        default=None,
        description="Cut inputs longer than the model's max_seq_length tokens instead of refusing them with 413 "
        "(default: the server's --auto-truncate setting).",
    )


class EmbeddingsRequest(_Request):
    """``POST /v1/embeddings`` (OpenAI's create-embeddings body, plus the LaSER extension fields)."""

    input: list[str] = Field(description="A string or a list of strings.")
    model: Text | None = Field(
        default=None, description="The served model name, optionally with ':query' or ':document' (default: it)."
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = Field(default=None, description="Accepted only if it equals the model's.")
    user: Text | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> list[str]:
        return checked_inputs(value, "input")


class EmbedRequest(_Request):
    """``POST /embed`` (TEI's body, plus the LaSER extension fields)."""

    inputs: list[str] = Field(description="A string or a list of strings.")
    normalize: StrictBool = Field(
        default=True, description="Accepted for TEI clients; LaSER vectors are unit-length either way."
    )
    truncation_direction: Literal["right", "Right", "left", "Left"] = "Right"
    prompt_name: Text | None = Field(
        default=None, description="TEI's way to pick a side: 'query' or 'document' (the model's prompt names)."
    )
    dimensions: StrictInt | None = None
    encoding_format: Literal["float"] | None = Field(
        default=None, description="Only 'float' here; base64 is served by /v1/embeddings."
    )

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, value: Any) -> list[str]:
        return checked_inputs(value, "inputs")


class Embedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Floats, or base64 of little-endian float32 bytes.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens of the formatted texts (prompt and chat template included).")
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage


class LaserMetadata(BaseModel):
    """What a client needs to know the vectors' provenance (see ``EmbeddingProvenance``) and the server's limits."""

    served_model_name: str
    model: str
    num_thinking_steps: int
    query_prompt: str
    dimension: int
    text_format: str
    max_seq_length: int | None
    dtype: str | None = None
    """The weights' dtype (recorded in the provenance, not checked)."""
    document_prompt: str = ""
    default_side: Side
    max_inputs: int
    max_thinking_steps: int
    max_batch_size: int
    auto_truncate: bool
    version: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "laser-integrations"
    laser: LaserMetadata


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error, on every route: OpenAI's shape."""

    error: ErrorDetail


def error_body(
    message: str, type: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error response.

    >>> error_body("input is an empty list", param="input")["error"]["param"]
    'input'
    """
    return {"error": {"message": message, "type": type, "param": param, "code": code}}
