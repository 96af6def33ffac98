"""Which of the three latent loops embeds a batch, by one documented rule, and running the one chosen.

The loops compute the same vectors (spec section 1) to float rounding and differ only in how:

- ``plain``: :func:`~laser_integrations.latent.latent_thinking`, one prefill and K-1 cached decode steps;
- ``prefix_cache``: :func:`~laser_integrations.latent.latent_thinking_after_prefix` on a copy of the prompt
  prefix's KV cache (:mod:`laser_integrations.prefix_cache`), feeding only the rest of each text;
- ``fast_path``: :func:`~laser_integrations.fast_path.latent_thinking_static`, the K-1 steps on a static KV
  cache captured once as a CUDA graph.

:func:`choose_latent_loop` is the rule (its docstring holds the table); :func:`run_latent_loop` runs the
choice. Each loop checks left padding with :func:`~laser_integrations.latent.require_left_padding`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from transformers import PreTrainedModel

from laser_integrations.fast_path import fast_path_available, latent_thinking_static
from laser_integrations.latent import (
    LatentThinkingOutput,
    decodes_on_cache,
    latent_thinking,
    latent_thinking_after_prefix,
    without_prefix,
)
from laser_integrations.prefix_cache import PrefixCache, supports_prefix_cache

LatentLoop = Literal["fast_path", "prefix_cache", "plain"]


@dataclass(frozen=True)
class LoopChoice:
    """Which latent loop embeds a batch, and the rule that picked it."""

    loop: LatentLoop
    reason: str


def choose_latent_loop(
    causal_lm: PreTrainedModel, *, fast_path: bool, prefix_cache: bool, prefix_rows: bool
) -> LoopChoice:
    """Pick the latent loop for one batch: the first rule that holds wins.

    ====  ==============================================================  ================
    rule  when                                                            loop
    ====  ==============================================================  ================
    1     ``fast_path`` is on and ``fast_path_available(causal_lm)``:     ``fast_path``
          CUDA weights, no autograd, ``sdpa``/``eager`` attention, plain
          static cache layers (the K-1 steps are launch-bound there)
    2     ``prefix_cache`` is off                                         ``plain``
    3     training mode or autograd on (the cache serves inference only)  ``plain``
    4     the model drops its KV cache (activation checkpointing) or      ``plain``
          fails ``supports_prefix_cache`` (sliding windows, attention
          other than ``sdpa``/``eager``)
    5     ``prefix_rows`` is false: no row starts with the prompt         ``plain``
          prefix's tokens (or there is no prefix)
    6     otherwise                                                       ``prefix_cache``
    ====  ==============================================================  ================

    Under ``prefix_cache`` the rows that do not start with the prefix still take ``plain``. Combining the
    fast path with the prefix cache is left until a GPU measures it.

    >>> choose_latent_loop(causal_lm, fast_path=True, prefix_cache=False, prefix_rows=True)  # doctest: +SKIP
    LoopChoice(loop='plain', reason='the prefix cache is switched off')
    """
    if fast_path and fast_path_available(causal_lm):
        return LoopChoice("fast_path", "the fast path is on and available (CUDA weights, inference)")
    if not prefix_cache:
        return LoopChoice("plain", "the prefix cache is switched off")
    if causal_lm.training or torch.is_grad_enabled():
        return LoopChoice("plain", "training or autograd: the prefix cache serves inference only")
    if not (decodes_on_cache(causal_lm) and supports_prefix_cache(causal_lm)):
        return LoopChoice("plain", "this model's cache layers or attention cannot take a cached prefix")
    if not prefix_rows:
        return LoopChoice("plain", "no row starts with the prompt prefix")
    return LoopChoice("prefix_cache", "inference on a supported model, and rows start with the prompt prefix")


def run_latent_loop(
    choice: LoopChoice,
    causal_lm: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    steps: int,
    *,
    prefix_kv: PrefixCache | None = None,
    prefix_ids: Tensor | None = None,
    prefix_rows: Tensor | None = None,
) -> LatentThinkingOutput:
    """Run the loop ``choice`` names over a left-padded batch.

    ``prefix_cache`` needs ``prefix_kv`` (where prefixes are cached), ``prefix_ids`` (P,) and ``prefix_rows``
    (the rows whose ids start with them); the other rows of the batch take the plain loop.
    """
    if choice.loop == "fast_path":
        return latent_thinking_static(causal_lm, input_ids, attention_mask, steps)
    if choice.loop == "plain":
        return latent_thinking(causal_lm, input_ids, attention_mask, steps)
    if prefix_kv is None or prefix_ids is None or prefix_rows is None:
        raise ValueError("the prefix_cache loop needs prefix_kv, prefix_ids and prefix_rows")
    return _after_prefix(causal_lm, prefix_kv, prefix_ids, prefix_rows, input_ids, attention_mask, steps)


def _after_prefix(
    causal_lm: PreTrainedModel,
    prefix_kv: PrefixCache,
    prefix_ids: Tensor,
    rows: Tensor,
    input_ids: Tensor,
    attention_mask: Tensor,
    steps: int,
) -> LatentThinkingOutput:
    """Rows starting with the cached prefix feed only their rest; the other rows take the plain loop."""
    prefix = prefix_kv.get(causal_lm, prefix_ids.tolist())
    rows = rows.to(input_ids.device)
    rest_ids, rest_mask = without_prefix(input_ids[rows], attention_mask[rows], prefix.length)
    cache = prefix.for_batch(len(rows), causal_lm.base_model.config)
    cached = latent_thinking_after_prefix(causal_lm, cache, rest_ids, rest_mask, steps)
    if len(rows) == len(input_ids):
        return cached
    plain_rows = torch.ones(len(input_ids), dtype=torch.bool, device=input_ids.device)
    plain_rows[rows] = False
    plain_ids, plain_mask = input_ids[plain_rows], attention_mask[plain_rows]
    width = int(plain_mask.sum(dim=1).max())  # drop the columns only the other group needed
    plain = latent_thinking(causal_lm, plain_ids[:, -width:], plain_mask[:, -width:], steps)
    embedding = cached.embedding.new_empty((len(input_ids), cached.embedding.shape[1]))
    states = cached.states.new_empty((len(input_ids), *cached.states.shape[1:]))
    embedding[rows], states[rows] = cached.embedding, cached.states
    embedding[plain_rows], states[plain_rows] = plain.embedding, plain.states
    return LatentThinkingOutput(embedding=embedding, states=states)
