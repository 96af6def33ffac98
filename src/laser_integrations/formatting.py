"""Text formats the LaSER checkpoints expect (spec section 3).

Everything that turns a user's string into the exact text the model reads lives here, so the
training collator, the embedding module and the rewrite chain can never disagree about it.

>>> query_prompt("Given a math problem, retrieve useful theorems")
'Instruct: Given a math problem, retrieve useful theorems\\nQuery: '
"""

from __future__ import annotations

from typing import Any

DEFAULT_INSTRUCTION = "Given a query, retrieve relevant passages that answer the query"
"""The project's default query task. The released MTEB runner falls back to
``"Retrieval relevant passage for the given query."``; pass that to reproduce it exactly."""

QUERY_TEMPLATE = "Instruct: {instruction}\nQuery: "
"""A query is ``QUERY_TEMPLATE.format(instruction=...) + query`` (the released ``Instruct: {}\\nQuery: {}``)."""

EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"
"""Qwen3's empty thinking block, appended after the generation prompt (what ``enable_thinking=False`` emits)."""

RATIONALE_PROMPT = """Given a question, your mission is to follow the instructions below:
1. Identify the essential problem.
2. Think step by step to reason and describe what information could be relevant and helpful to address the questions in detail.
3. Draft an answer with as many thoughts as you have.
The given question:
[Begin of Question]
{query}
[End of Question]"""  # noqa: E501
"""The reasoning prompt of the LaSER paper (Table 1) that wrote the training rationales."""


def query_prompt(instruction: str | None = None) -> str:
    """Return the prefix that turns a query into ``Instruct: {instruction}\\nQuery: {query}``.

    It is a plain prefix, so it is what sentence-transformers calls a prompt: pass it as
    ``model.encode_query(texts, prompt=query_prompt("..."))`` for a per-task instruction.
    """
    instruction = DEFAULT_INSTRUCTION if instruction is None else instruction
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a string, got {type(instruction).__name__}")
    if not instruction.strip():
        return ""
    return QUERY_TEMPLATE.format(instruction=instruction)


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template (the automatic ``chat_template`` setting)."""
    return bool(getattr(tokenizer, "chat_template", None))


def template_knows_think(tokenizer: Any) -> bool:
    """Whether the chat template is Qwen3-style, i.e. mentions ``<think>`` (the automatic ``think_block``)."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # named templates: {"default": ..., "tool_use": ...}
        template = " ".join(str(value) for value in template.values())
    return bool(template) and "<think>" in template


def apply_chat_format(tokenizer: Any, text: str, *, think_block: bool) -> str:
    """Wrap ``text`` as one user turn with the generation prompt, then the empty think block if asked."""
    messages = [{"role": "user", "content": text}]
    wrapped = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return wrapped + EMPTY_THINK_BLOCK if think_block else wrapped


def passage_text(text: str, title: str | None = None) -> str:
    """What a document embeds as: ``title + " " + text``, as BEIR and MTEB join them (the text alone if untitled).

    >>> passage_text("Default values are evaluated once.", "Defaults")
    'Defaults Default values are evaluated once.'
    """
    return f"{title} {text}".strip() if title else text.strip()


def rationale_prompt(query: str) -> str:
    """The paper's Table 1 prompt for one query: what a rewriter is asked before retrieval."""
    return RATIONALE_PROMPT.format(query=query)


MAX_CHARS_PER_TOKEN = 32
"""No tokenizer we ship packs more than a few characters into a token on average, so a text longer than
``max_seq_length * 32`` characters is over ``max_seq_length`` tokens but for freaks (long runs of one repeated
character). ``laser serve`` refuses or cuts a text there before any tokenizer reads it; ``laser index`` counts
the tokens of at most that much of a text."""


def max_text_chars(max_seq_length: int) -> int:
    """The most characters of a text worth tokenizing for a ``max_seq_length``-token model.

    >>> max_text_chars(512)
    16384
    """
    return max_seq_length * MAX_CHARS_PER_TOKEN
