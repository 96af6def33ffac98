"""Any LLM a user already has, as one thing that completes prompts: the rewrite chain's one dispatch on LLM kinds.

A :class:`~laser_integrations.rewrite.generator.RationaleGenerator`, a LangChain chat model / LLM /
runnable, or a LlamaIndex LLM; the frameworks are only looked at if the caller already imported them.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from laser_integrations.rewrite.generator import RationaleGenerator

__all__ = ["Completer", "is_langchain_runnable", "is_llama_index_llm"]


def _instance_of(obj: object, module: str, name: str) -> bool:
    """``isinstance`` against a framework class, without importing a framework the caller never loaded."""
    loaded = sys.modules.get(module)
    return loaded is not None and isinstance(obj, getattr(loaded, name))


def is_langchain_runnable(llm: object) -> bool:
    return _instance_of(llm, "langchain_core.runnables", "Runnable")


def is_llama_index_llm(llm: object) -> bool:
    return _instance_of(llm, "llama_index.core.base.llms.base", "BaseLLM")


class Completer:
    """Turns prompts into completions with whichever kind of LLM the user gave (sync and async)."""

    def __init__(self, llm: Any) -> None:
        if isinstance(llm, RationaleGenerator):
            self.kind = "local"
        elif is_langchain_runnable(llm):
            from langchain_core.output_parsers import StrOutputParser

            self.kind, self.chain = "langchain", llm | StrOutputParser()
        elif is_llama_index_llm(llm):
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
