"""``LatentThinkingEmbedding``: the sentence-transformers input module that makes a causal LM a LaSER embedder.

A LaSER model is a plain :class:`~sentence_transformers.SentenceTransformer` whose only module is this
one: sentence-transformers brings batching, length sorting, prompts, progress bars, similarity,
saving, multi-process pools and training; this module owns the causal LM and tokenizer, formats
texts (spec section 3), and runs the latent loop of :mod:`laser_integrations.latent` in ``forward``.

Inputs are strings (latent view) or ``(query, rationale)`` pairs (explicit view, spec section 2):

>>> model.encode_query(["why is the sky blue"], num_thinking_steps=6)          # doctest: +SKIP
>>> model.encode_query([("why is the sky blue", "Sunlight scatters ...")])      # doctest: +SKIP

Pairs travel through ``encode``'s length sorting as one item, so a rationale can never be paired
with another query's text.

This file's import path is stored in every saved model's ``modules.json``: keep the class here.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import torch
from sentence_transformers.base.modules import InputModule
from torch import Tensor
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from laser_integrations.backbone import load_causal_lm
from laser_integrations.formatting import apply_chat_format, has_chat_template, template_knows_think
from laser_integrations.latent import (
    LatentThinkingOutput,
    check_num_thinking_steps,
    explicit_view,
    left_aligned,
    trajectory_positions,
)
from laser_integrations.latent_loops import LoopChoice, choose_latent_loop, run_latent_loop
from laser_integrations.prefix_cache import PrefixCache
from laser_integrations.validation import positive_int
from laser_integrations.version import __version__

LatentInput = str
ExplicitInput = tuple[str, str]

_TEXT_MARK = "\u2063laser-text\u2063"
"""Stands in for a text while formatting, to find where the shared prompt prefix ends."""


class LatentThinkingEmbedding(InputModule):
    """Latent-thinking embeddings (LaSER) from a causal LM, as a sentence-transformers input module.

    Args:
        model: The causal LM (``*ForCausalLM``). Use :func:`laser_integrations.load_model` to build one
            from an alias, Hub id, directory or ``.gguf`` file.
        tokenizer: Its tokenizer. Padding is set to the left and a missing pad token becomes EOS.
        num_thinking_steps: K, the default number of latent steps (>= 1; 3 is the released setting).
            ``encode(..., num_thinking_steps=K)`` overrides it per call.
        max_seq_length: Truncation length of a formatted text in tokens (512, the training length).
        max_explicit_length: Truncation length of an explicit-view ``query + rationale`` input, EOS
            included (1024, the training length).
        chat_template: Wrap every text as one user turn of the tokenizer's chat template. ``None``
            (default) turns it on when the tokenizer has a chat template.
        think_block: Append Qwen3's empty ``<think>\\n\\n</think>\\n\\n`` after the generation prompt.
            ``None`` (default) turns it on when the chat template mentions ``<think>``.
        base_model: Where the weights came from (alias target, Hub id, path), kept for provenance: a
            vector store can refuse vectors from a different model.
        prefix_cache: Compute the KV cache of the prompt prefix every text of a batch starts with (chat head +
            instruction) once, keep it in :attr:`prefix_kv` (a small LRU), and feed only the rest of each text
            (:func:`~laser_integrations.latent.latent_thinking_after_prefix`). Vectors equal the plain path's to
            float rounding; rows whose tokens do not start with the prefix's (a BPE merge across the boundary,
            truncation) take the plain path. Only inference uses it (eval mode, autograd off), and only on
            ``sdpa``/``eager`` attention without sliding windows. A runtime switch (``module.prefix_cache =
            False``), not saved with the model since it never changes a vector.
        fast_path: On CUDA, run the K-1 soft-token steps on a static KV cache captured once as a CUDA graph
            (:func:`~laser_integrations.fast_path.latent_thinking_static`; same vectors, falls back to eager
            steps where capture fails). Used when :func:`~laser_integrations.fast_path.fast_path_available`
            says so (CUDA weights, inference); it then takes precedence over the prefix cache. A runtime
            switch (``module.fast_path = False``), not saved with the model. :meth:`latent_loop` says which
            loop runs and why (:func:`~laser_integrations.latent_loops.choose_latent_loop`).

    Example:
        >>> from sentence_transformers import SentenceTransformer
        >>> module = LatentThinkingEmbedding(causal_lm, tokenizer, num_thinking_steps=3)  # doctest: +SKIP
        >>> model = SentenceTransformer(modules=[module])                                  # doctest: +SKIP
    """

    config_file_name = "laser_config.json"
    config_keys = [
        "num_thinking_steps",
        "max_seq_length",
        "max_explicit_length",
        "chat_template",
        "think_block",
        "base_model",
    ]
    forward_kwargs = {"num_thinking_steps"}

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        num_thinking_steps: int = 3,
        max_seq_length: int = 512,
        max_explicit_length: int = 1024,
        chat_template: bool | None = None,
        think_block: bool | None = None,
        base_model: str | None = None,
        prefix_cache: bool = True,
        fast_path: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.num_thinking_steps = check_num_thinking_steps(num_thinking_steps)
        self.max_seq_length = positive_int("max_seq_length", max_seq_length)
        self.max_explicit_length = positive_int("max_explicit_length", max_explicit_length)
        self.chat_template = chat_template
        self.think_block = think_block
        self.base_model = base_model
        self.prefix_cache = bool(prefix_cache)
        self.prefix_kv = PrefixCache()  # the cached prompt prefixes (laser_integrations.prefix_cache)
        self.fast_path = bool(fast_path)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.uses_chat_template and not has_chat_template(tokenizer):
            raise ValueError("chat_template=True but the tokenizer has no chat template; pass chat_template=False")

    @property
    def uses_chat_template(self) -> bool:
        """Whether texts are wrapped in the chat template (resolves ``chat_template=None``)."""
        return has_chat_template(self.tokenizer) if self.chat_template is None else bool(self.chat_template)

    @property
    def uses_think_block(self) -> bool:
        """Whether the empty think block follows the generation prompt (resolves ``think_block=None``)."""
        if not self.uses_chat_template:
            return False
        return template_knows_think(self.tokenizer) if self.think_block is None else bool(self.think_block)

    def format_text(self, text: str) -> str:
        """The exact string the model reads for ``text`` (prompt already prepended)."""
        if not self.uses_chat_template:
            return text
        return apply_chat_format(self.tokenizer, text, think_block=self.uses_think_block)

    def prompt_prefix(self, prompt: str = "") -> str:
        """The formatted text every input under ``prompt`` starts with: chat head + prompt (``""`` if none)."""
        formatted = self.format_text(prompt + _TEXT_MARK)
        end = formatted.find(_TEXT_MARK)
        return formatted[:end] if end >= 0 else ""

    def train(self, mode: bool = True) -> LatentThinkingEmbedding:
        if mode:  # training changes the weights: cached prefixes would only take memory
            self.prefix_kv.clear()
        return super().train(mode)

    # -- preprocessing ---------------------------------------------------------------------------------

    def preprocess(
        self,
        inputs: Sequence[LatentInput | ExplicitInput],
        prompt: str | None = None,
        num_thinking_steps: int | None = None,
        **kwargs: Any,
    ) -> dict[str, Tensor]:
        """Format and tokenize a batch (left padded). Strings take the latent view, pairs the explicit view.

        Features: ``input_ids``/``attention_mask`` for latent rows, ``explicit_input_ids``/
        ``explicit_attention_mask``/``explicit_trajectory_positions`` for explicit rows, and
        ``latent_rows``/``explicit_rows`` giving each group's places in the batch. With the prefix cache on
        (and not training), ``prefix_input_ids`` (P,) and ``prefix_rows`` (the latent rows whose ids start
        with exactly those P ids and hold more) let ``forward`` reuse the prefix's KV cache.
        """
        prompt = prompt or ""
        latent_rows, latent_texts, explicit_rows, explicit_pairs = [], [], [], []
        for index, item in enumerate(_validated(inputs)):
            if isinstance(item, str):
                latent_rows.append(index)
                latent_texts.append(self.format_text(prompt + item))
            else:
                explicit_rows.append(index)
                explicit_pairs.append((self.format_text(prompt + item[0]), item[1]))

        features: dict[str, Tensor] = {}
        if latent_texts:
            encoded = self.tokenizer(
                latent_texts, padding=True, truncation=True, max_length=self.max_seq_length, return_tensors="pt"
            )
            _reject_empty(encoded["attention_mask"], latent_rows)
            features.update(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"])
            features["latent_rows"] = torch.tensor(latent_rows, dtype=torch.long)
            if self.prefix_cache and not self.training:
                features.update(self._shared_prefix(prompt, encoded["input_ids"], encoded["attention_mask"]))
        if explicit_pairs:
            steps = check_num_thinking_steps(num_thinking_steps or self.num_thinking_steps)
            features.update(self._tokenize_explicit(explicit_pairs, steps))
            features["explicit_rows"] = torch.tensor(explicit_rows, dtype=torch.long)
        return features

    def _shared_prefix(self, prompt: str, input_ids: Tensor, attention_mask: Tensor) -> dict[str, Tensor]:
        """The prompt prefix's ids and the rows that start with them, checked row by row.

        The texts' own tokenization is never changed: a row takes the cached prefix only if its ids begin
        with exactly the prefix's ids. The prefix ends before its trailing whitespace (the space after
        ``Query:`` merges with the query's first word in BPE), so that boundary is stable; a row where a
        merge still crosses it (or that truncation cut inside the prefix) takes the plain path.
        """
        prefix_text = self.prompt_prefix(prompt).rstrip()
        if not prefix_text:
            return {}
        # The texts' exact call (special tokens, and padding/truncation settings: a fast tokenizer keeps those
        # as shared state, so a call with other settings would race with concurrent encodes).
        encoded = self.tokenizer([prefix_text], padding=True, truncation=True, max_length=self.max_seq_length)
        prefix_ids = encoded["input_ids"][0]
        if not prefix_ids:
            return {}
        expected = torch.tensor(prefix_ids, dtype=input_ids.dtype)
        rows = []
        for row, (ids, mask) in enumerate(zip(input_ids, attention_mask, strict=True)):
            tokens = ids[mask.bool()]
            if len(tokens) > len(expected) and torch.equal(tokens[: len(expected)], expected):
                rows.append(row)
        if not rows:
            return {}
        return {"prefix_input_ids": expected, "prefix_rows": torch.tensor(rows, dtype=torch.long)}

    def _tokenize_explicit(self, pairs: list[tuple[str, str]], steps: int) -> dict[str, Tensor]:
        """Tokenize ``formatted query + rationale``, append one EOS, and locate the K trajectory positions."""
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ValueError("the explicit view appends an EOS token, but this tokenizer defines none")
        break_id = self.tokenizer.encode("\n\n", add_special_tokens=False)[-1]
        sequences, positions = [], []
        for formatted_query, rationale in pairs:
            ids, rationale_start = self._ids_with_rationale_start(formatted_query, rationale)
            relative = trajectory_positions(ids[rationale_start:], break_id, steps)
            ids = ids + [eos]
            positions.append([rationale_start + p for p in relative] if relative else [len(ids) - 1] * steps)
            sequences.append(ids)
        padded = self.tokenizer.pad({"input_ids": sequences}, padding=True, return_tensors="pt")
        pad_lengths = padded["input_ids"].shape[1] - torch.tensor([len(ids) for ids in sequences])
        return {
            "explicit_input_ids": padded["input_ids"],
            "explicit_attention_mask": padded["attention_mask"],
            "explicit_trajectory_positions": torch.tensor(positions, dtype=torch.long) + pad_lengths.unsqueeze(1),
        }

    def _ids_with_rationale_start(self, formatted_query: str, rationale: str) -> tuple[list[int], int]:
        """Ids of ``formatted_query + rationale`` (truncated to leave room for EOS) and the rationale's first index."""
        text = formatted_query + rationale
        max_length = self.max_explicit_length - 1
        if self.tokenizer.is_fast:
            encoded = self.tokenizer(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
            ids, offsets = encoded["input_ids"], encoded["offset_mapping"]
            boundary = len(formatted_query)
            # The rationale starts at the first token that ends past the query text (special tokens have (0, 0)).
            start = next((i for i, (_, end) in enumerate(offsets) if end > boundary), len(ids))
            return ids, start
        ids = self.tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
        query_length = len(self.tokenizer(formatted_query, truncation=True, max_length=max_length)["input_ids"])
        return ids, min(query_length, len(ids))

    # -- forward ---------------------------------------------------------------------------------------

    def forward(self, features: dict[str, Tensor], num_thinking_steps: int | None = None, **kwargs: Any) -> dict:
        """Write ``sentence_embedding`` (B, H) float32, L2-normalized, for the batch.

        Latent rows also get ``thinking_states`` (their K states h_1..h_K); explicit rows get
        ``trajectory_states`` (their K trajectory features), both used by the training loss.
        """
        steps = check_num_thinking_steps(self.num_thinking_steps if num_thinking_steps is None else num_thinking_steps)
        parts: list[tuple[Tensor, Tensor]] = []
        if "input_ids" in features:
            input_ids, attention_mask = left_aligned(features["input_ids"], features["attention_mask"])
            latent = self._latent_view(features, input_ids, attention_mask, steps)
            features["thinking_states"] = latent.states
            parts.append((features.get("latent_rows"), latent.embedding))
        if "explicit_input_ids" in features:
            explicit = explicit_view(
                self.model,
                features["explicit_input_ids"],
                features["explicit_attention_mask"],
                features["explicit_trajectory_positions"],
            )
            features["trajectory_states"] = explicit.trajectory
            parts.append((features.get("explicit_rows"), explicit.embedding))
        if len(parts) == 1:
            features["sentence_embedding"] = parts[0][1]
        else:  # a batch that mixes strings and pairs: put each row back in its place
            rows = torch.cat([index for index, _ in parts]).to(parts[0][1].device)
            features["sentence_embedding"] = torch.cat([emb for _, emb in parts])[torch.argsort(rows)]
        return features

    def latent_loop(self, prefix_rows: bool = True) -> LoopChoice:
        """Which latent loop ``forward`` runs now, and why (see :mod:`laser_integrations.latent_loops`)."""
        return choose_latent_loop(
            self.model, fast_path=self.fast_path, prefix_cache=self.prefix_cache, prefix_rows=prefix_rows
        )

    def uses_prefix_cache(self) -> bool:
        """Whether ``forward`` would reuse cached prefixes now (for rows that start with the prefix)."""
        return self.latent_loop().loop == "prefix_cache"

    def _latent_view(
        self, features: dict[str, Tensor], input_ids: Tensor, attention_mask: Tensor, steps: int
    ) -> LatentThinkingOutput:
        choice = self.latent_loop(prefix_rows="prefix_rows" in features and "prefix_input_ids" in features)
        return run_latent_loop(
            choice,
            self.model,
            input_ids,
            attention_mask,
            steps,
            prefix_kv=self.prefix_kv,
            prefix_ids=features.get("prefix_input_ids"),
            prefix_rows=features.get("prefix_rows"),
        )

    # -- sentence-transformers plumbing -----------------------------------------------------------------

    def get_embedding_dimension(self) -> int:
        """The hidden size H, read from the config without running the model."""
        config = self.model.config
        text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
        return int(text_config.hidden_size)

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        self.model.save_pretrained(output_path, safe_serialization=safe_serialization)
        self.save_tokenizer(output_path)
        self.save_config(output_path)
        _write_requirement(output_path)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        subfolder: str = "",
        token: bool | str | None = None,
        cache_folder: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> LatentThinkingEmbedding:
        """Rebuild the module from a directory (or Hub repo) written by :meth:`save`.

        ``trust_remote_code`` here is sentence-transformers' permission to import this class; it does not
        let transformers run a backbone's Hub code. For that, pass ``model_kwargs={"trust_remote_code": True}``.
        """
        hub_kwargs = dict(token=token, cache_folder=cache_folder, revision=revision, local_files_only=local_files_only)
        config = cls.load_config(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        directory = cls.load_dir_path(model_name_or_path, subfolder=subfolder, **hub_kwargs)
        model, tokenizer = load_causal_lm(directory, **(model_kwargs or {}))
        return cls(model, tokenizer, **config)

    def __repr__(self) -> str:
        return f"LatentThinkingEmbedding({json.dumps(self.get_config_dict())}, backbone={type(self.model).__name__})"


def explicit_inputs(queries: Sequence[str], rationales: Sequence[str]) -> list[ExplicitInput]:
    """Pair each query with its rationale for the explicit view, refusing a count mismatch.

    >>> explicit_inputs(["why is the sky blue"], ["Sunlight scatters off air molecules ..."])
    [('why is the sky blue', 'Sunlight scatters off air molecules ...')]
    """
    if len(queries) != len(rationales):
        raise ValueError(f"got {len(queries)} queries but {len(rationales)} rationales; pass one rationale per query")
    for index, rationale in enumerate(rationales):
        if not isinstance(rationale, str):
            raise TypeError(f"rationale {index} is a {type(rationale).__name__}; rationales must be strings")
    return list(zip(queries, rationales, strict=True))


def _validated(inputs: Sequence[object]) -> list[LatentInput | ExplicitInput]:
    """Check every item is a string or a (query, rationale) pair of strings, naming the first bad one."""
    if isinstance(inputs, str) or not isinstance(inputs, Sequence):
        raise TypeError(f"expected a list of texts, got {type(inputs).__name__}")
    checked: list[LatentInput | ExplicitInput] = []
    for index, item in enumerate(inputs):
        if isinstance(item, str):
            checked.append(item)
        elif isinstance(item, (tuple, list)) and len(item) == 2 and all(isinstance(part, str) for part in item):
            checked.append((item[0], item[1]))
        elif item is None:
            raise TypeError(f"input {index} is None; every input must be a string or a (query, rationale) pair")
        else:
            raise TypeError(
                f"input {index} is a {type(item).__name__} ({item!r:.60}); "
                "every input must be a string or a (query, rationale) pair of strings"
            )
    return checked


def _reject_empty(attention_mask: Tensor, rows: list[int]) -> None:
    empty = (attention_mask.sum(dim=1) == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"input {rows[empty[0]]} has no tokens after formatting; embed a non-empty text")


def _write_requirement(output_path: str) -> None:
    """Record in ``config_sentence_transformers.json`` that loading needs this package (ST checks it first)."""
    path = os.path.join(output_path, "config_sentence_transformers.json")
    if not os.path.exists(path):  # saved as a bare module, outside a SentenceTransformer
        return
    with open(path, encoding="utf8") as handle:
        config = json.load(handle)
    config["requirements"] = {
        "laser-integrations": {
            "specifier": f">={__version__}",
            "reason": "the LatentThinkingEmbedding module and its latent-thinking loop",
        }
    }
    with open(path, "w", encoding="utf8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)


def laser_module(model: Any) -> LatentThinkingEmbedding:
    """The :class:`~laser_integrations.module.LatentThinkingEmbedding` of a LaSER model, or a ``TypeError``."""
    from sentence_transformers import SentenceTransformer

    if not isinstance(model, SentenceTransformer):
        raise TypeError(f"expected a LaSER SentenceTransformer (load_model(...)), got {type(model).__name__}")
    module = model[0] if len(model) else None
    if not isinstance(module, LatentThinkingEmbedding):
        raise TypeError(
            "the SentenceTransformer is not a LaSER model (its first module is "
            f"{type(module).__name__}, not LatentThinkingEmbedding); build it with laser_integrations.load_model"
        )
    return module
