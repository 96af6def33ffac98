"""The project's one rationale generator: a local causal LM writes the paper's reasoning rationale.

The rewrite step of rewrite-then-retrieve (the baseline LaSER's latent thinking replaces), and how
``laser rationales`` writes LaSER training data. Batched, left padded, greedy by default, the chat
template when the model has one, Qwen3 thinking off (``enable_thinking=False``), so no ``<think>``
text ever reaches a rationale.

>>> generator = RationaleGenerator.from_pretrained("smollm2", max_new_tokens=128)    # doctest: +SKIP
>>> generator.generate(["why does my default list argument keep growing?"])[0][:60]  # doctest: +SKIP
'The essential problem is that default arguments are evaluate'
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from laser_integrations.formatting import RATIONALE_PROMPT, has_chat_template, template_knows_think
from laser_integrations.validation import checked_strings, positive_int

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "PromptSpec",
    "RationaleGenerator",
    "default_prompt",
    "generate_rationales",
    "generate_texts",
]

DEFAULT_MAX_NEW_TOKENS = 128
"""Rationale length bound of the rewrite chain (``laser rationales`` asks for 512: training rationales run long)."""
PromptSpec = str | Callable[[str], str]
"""A ``{query}`` template (``str.format``) or a function from query to user message."""


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

    prompts = checked_strings(prompts, "prompt")
    positive_int("max_new_tokens", max_new_tokens)
    positive_int("batch_size", batch_size)
    if not prompts:
        return []
    use_chat = has_chat_template(tokenizer) if chat_template is None else bool(chat_template)
    texts = [_as_chat_turn(tokenizer, prompt) if use_chat else prompt for prompt in prompts]
    with lock or contextlib.nullcontext():  # the tokenizer may be shared with an embedder
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
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
    queries = checked_strings(queries, "query")
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
        self.max_new_tokens = positive_int("max_new_tokens", max_new_tokens)
        self.batch_size = positive_int("batch_size", batch_size)
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
        trust_remote_code: bool = False,
        local_files_only: bool = False,
        cache_folder: str | None = None,
        **options: Any,
    ) -> RationaleGenerator:
        """Load a causal LM from anything :func:`~laser_integrations.load_model` takes (alias, Hub id, folder,
        ``.gguf`` file, ``"smollm2"``, a saved LaSER folder) and wrap it; ``options`` are the constructor's keywords.

        Only the causal LM is loaded (no embedding module); offline, a Hub id fails with a message saying how to
        load locally, as :func:`~laser_integrations.load_model` does.
        """
        from laser_integrations.loading import load_backbone

        model, tokenizer = load_backbone(
            spec,
            device=device,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            local_files_only=local_files_only,
            cache_folder=cache_folder,
        )
        return cls(model, tokenizer, **options)

    @classmethod
    def from_sentence_transformer(cls, model: SentenceTransformer, **options: Any) -> RationaleGenerator:
        """Generate with the backbone of a LaSER ``SentenceTransformer``: one model in memory for both jobs.

        The generator holds the same lock as the LangChain/LlamaIndex adapters built on ``model``.
        """
        from laser_integrations.embedder import model_lock
        from laser_integrations.module import laser_module

        module = laser_module(model)
        return cls(module.model, module.tokenizer, lock=model_lock(model), **options)

    @classmethod
    def for_embedder(
        cls, embedder: SentenceTransformer, spec: str | None = None, *, device: str | None = None, dtype: Any = None,
        **options: Any,
    ) -> RationaleGenerator:  # fmt: skip
        """The rewrite LLM of an evaluation: ``embedder``'s own backbone (one copy in memory) unless ``spec``
        names another model, which is then loaded with ``device`` and ``dtype``.

        A shipped adapter model (``smollm2-laser``) rewrites with its untrained chat base instead: the adapter
        was trained to embed, not to write, and rewrite-then-retrieve pairs a chat LLM with the retriever.
        """
        from laser_integrations.provenance import model_name
        from laser_integrations.shipped import is_shipped, shipped_base

        if spec is None and is_shipped(model_name(embedder)):
            spec = shipped_base(model_name(embedder))
        if spec is None:
            return cls.from_sentence_transformer(embedder, **options)
        return cls.from_pretrained(spec, device=device, dtype=dtype, **options)

    @property
    def name(self) -> str:
        """Where the weights came from (``config.name_or_path``)."""
        return str(getattr(self.model.config, "name_or_path", "") or type(self.model).__name__)

    def generate(self, queries: Sequence[str], *, show_progress_bar: bool | None = None) -> list[str]:
        """One rationale per query, in order."""
        queries = checked_strings(queries, "query")
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

    def __repr__(self) -> str:
        return f"RationaleGenerator({self.name!r}, max_new_tokens={self.max_new_tokens}, batch_size={self.batch_size})"


def default_prompt(llm: Any, prompt: PromptSpec | None) -> PromptSpec:
    """The prompt a rewrite piece uses: the caller's, else a generator's own, else the paper's Table 1 prompt."""
    if prompt is not None:
        return prompt
    return llm.prompt if isinstance(llm, RationaleGenerator) else RATIONALE_PROMPT


def _prompt_for(prompt: PromptSpec, query: str) -> str:
    return prompt(query) if callable(prompt) else prompt.format(query=query)


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
