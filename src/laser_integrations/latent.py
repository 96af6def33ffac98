"""The LaSER latent-thinking loop and the explicit view, as plain functions over tensors.

Spec section 1 (latent view), for a causal LM with input embedding table ``E`` and LM head ``W``::

    h_1       = last-layer hidden state at the last prompt position        (one prefill)
    p_k       = softmax(W h_k)                   (float32, full vocabulary)
    e_k       = p_k @ E                          (the soft token, fed at the next position)
    h_{k+1}   = last-layer hidden state at that position                   (one cached decode step)
    embedding = normalize(mean(h_1 .. h_K))

Only the last position's logits are ever computed, the backbone (not the LM wrapper) is called so
no full-sequence logits or per-layer hidden states exist, and the K-1 decode steps reuse the KV
cache. Positions are passed explicitly from the attention mask, so a left-padded text sees the
same positions it would see alone.

:func:`latent_thinking_after_prefix` is the same loop for texts that all start with one shared prefix
(chat head + instruction) whose KV cache was computed once (:mod:`laser_integrations.prefix_cache`).
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Cache, PreTrainedModel


@dataclass
class LatentThinkingOutput:
    """What one latent-thinking pass produces for a batch of B texts."""

    embedding: Tensor
    """(B, H) float32: ``normalize(mean(h_1 .. h_K))``, the retrieval vector."""
    states: Tensor
    """(B, K, H): the K last-layer states ``h_1 .. h_K`` (model dtype, not normalized)."""
    top_token_ids: Tensor | None = None
    """(B, K, top_k): most likely next tokens after each state; ``p_1 .. p_{K-1}`` became the soft tokens."""
    top_token_probs: Tensor | None = None
    """(B, K, top_k): their probabilities."""


@dataclass
class ExplicitViewOutput:
    """What one explicit-view pass (query + rationale + EOS, spec section 2) produces."""

    embedding: Tensor
    """(B, H) float32: ``normalize(h at the final EOS position)``."""
    trajectory: Tensor | None = None
    """(B, K, H): hidden states at the K downsampled segment ends of the rationale (not normalized)."""


def check_num_thinking_steps(value: object) -> int:
    """Return ``value`` as an int K >= 1, or raise a ``TypeError``/``ValueError`` that says what is wrong."""
    if isinstance(value, bool):
        raise TypeError(f"num_thinking_steps must be an integer >= 1, got {value!r}")
    try:
        steps = operator.index(value)
    except TypeError:
        raise TypeError(f"num_thinking_steps must be an integer >= 1, got {type(value).__name__} {value!r}") from None
    if steps < 1:
        raise ValueError(
            f"num_thinking_steps must be >= 1 (1 = plain last-token pooling, 3 = the released setting), got {steps}"
        )
    return steps


def left_aligned(input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Move every row's padding to the left (a no-op for left-padded input), keeping token order.

    Sentence-transformers pads on the right when it merges columns (e.g. in
    ``MultipleNegativesRankingLoss``); the latent loop needs the real tokens to end each row.
    """
    if bool(attention_mask[:, -1].all()):
        return input_ids, attention_mask
    order = torch.argsort(attention_mask.long(), dim=1, stable=True)  # padding (0) first, tokens in order
    return input_ids.gather(1, order), attention_mask.gather(1, order)


def require_left_padding(attention_mask: Tensor, caller: str = "latent_thinking") -> None:
    """Refuse a batch whose rows do not all end in a real token: every loop reads each row's last position.

    The one left-padding check of every latent loop (plain, after a cached prefix, static-cache fast path)
    and of the explicit view. :func:`left_aligned` turns a right-padded batch into an accepted one.
    """
    if not bool(attention_mask[:, -1].all()):
        raise ValueError(f"{caller} needs left padding: the last column of attention_mask must be all ones")


def positions_from_mask(attention_mask: Tensor) -> Tensor:
    """Position ids that count only real tokens, so left padding does not shift a text's positions."""
    return (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)


def without_prefix(input_ids: Tensor, attention_mask: Tensor, prefix_length: int) -> tuple[Tensor, Tensor]:
    """Drop the first ``prefix_length`` real tokens of every left-padded row, keeping the rest left padded.

    Every row must hold more than ``prefix_length`` tokens. Row ``r`` with ``n_r`` tokens keeps its last
    ``n_r - prefix_length``; the result is as wide as the longest remainder, and what lies left of a row's
    remainder is masked (its ids are never attended to).
    """
    lengths = attention_mask.long().sum(dim=1) - prefix_length
    if bool((lengths < 1).any()):
        raise ValueError(f"every row needs at least one token after its {prefix_length}-token prefix")
    width = int(lengths.max())
    columns = torch.arange(width, device=attention_mask.device)
    mask = (columns.unsqueeze(0) >= (width - lengths).unsqueeze(1)).to(attention_mask.dtype)
    return input_ids[:, -width:], mask


def next_token_distribution(causal_lm: PreTrainedModel, hidden: Tensor) -> Tensor:
    """``p = softmax(W h)`` in float32 for (B, H) states: the LM head applied to one row per text."""
    logits = causal_lm.get_output_embeddings()(hidden).float()
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    if softcap:  # Gemma-2-style models squash logits before the softmax
        logits = torch.tanh(logits / softcap) * softcap
    return torch.softmax(logits, dim=-1)


def soft_token(probs: Tensor, embedding_table: Tensor) -> Tensor:
    """``e = p @ E``: the probability-weighted mean of the input embeddings, as a (B, 1, H) input."""
    vocab = embedding_table.shape[0]
    # Some checkpoints pad the LM head beyond the embedding table; padded rows carry no embedding.
    return (probs[:, :vocab].to(embedding_table.dtype) @ embedding_table).unsqueeze(1)


def latent_thinking(
    causal_lm: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    num_thinking_steps: int = 3,
    *,
    top_k: int = 0,
) -> LatentThinkingOutput:
    """Embed a left-padded batch with K latent thinking steps (spec section 1).

    Args:
        causal_lm: A ``*ForCausalLM`` model (its backbone, LM head and input embeddings are used).
        input_ids: (B, T) token ids, padded on the left.
        attention_mask: (B, T) 1 for tokens, 0 for padding.
        num_thinking_steps: K >= 1. K=1 is plain last-token pooling; K=3 is the released setting.
        top_k: If > 0, also return the ``top_k`` most likely tokens after each of the K states.

    Returns:
        A :class:`LatentThinkingOutput`. Gradients flow through every step when autograd is on.
    """
    steps = check_num_thinking_steps(num_thinking_steps)
    require_left_padding(attention_mask)
    think = _think_on_cache if decodes_on_cache(causal_lm) else _think_by_recompute
    states, distributions = think(causal_lm, input_ids, attention_mask, steps)
    return _pooled(causal_lm, states, distributions, top_k)


def latent_thinking_after_prefix(
    causal_lm: PreTrainedModel,
    prefix: Cache,
    input_ids: Tensor,
    attention_mask: Tensor,
    num_thinking_steps: int = 3,
    *,
    top_k: int = 0,
) -> LatentThinkingOutput:
    """:func:`latent_thinking` for texts that all start with one prefix whose KV cache is already computed.

    Each text is ``prefix + rest``; only the rests are fed. With P the prefix length, T the width of the
    left-padded rests and K the thinking steps, the batch reads::

        columns    [ prefix (P) | padding | row tokens ][ soft tokens (K-1) ]
        mask       [ 1 ... 1    | 0 ... 0 | 1 ... 1    ][ 1 ... 1           ]
        positions  [ 0 .. P-1   | (unused)| P .. P+n-1 ][ P+n .. P+n+K-2    ]

    so row r (n tokens after the prefix) sees exactly the keys and positions it would see alone, unpadded:
    the prefill feeds the T rest columns on top of the prefix cache (attention mask over all P+T columns,
    position ids ``P + cumsum(mask) - 1``), then the K-1 soft tokens are decoded as in :func:`latent_thinking`.

    Args:
        causal_lm: A ``*ForCausalLM`` model in a mode that keeps its KV cache (see :func:`decodes_on_cache`).
        prefix: The prefix's KV cache, already holding B rows (e.g. ``PrefixKV.for_batch(B)``). It is consumed:
            the loop appends the rest and soft tokens to it in place, so build a fresh one per call.
        input_ids: (B, T) ids of what follows the prefix, padded on the left.
        attention_mask: (B, T) 1 for tokens, 0 for padding; every row needs at least one token.
        num_thinking_steps: K >= 1.
        top_k: As in :func:`latent_thinking`.
    """
    steps = check_num_thinking_steps(num_thinking_steps)
    require_left_padding(attention_mask)
    if not decodes_on_cache(causal_lm):
        raise ValueError("a prefix KV cache needs a model that keeps its cache: call .eval() or disable checkpointing")
    states, distributions = _think_on_cache(causal_lm, input_ids, attention_mask, steps, prefix=prefix)
    return _pooled(causal_lm, states, distributions, top_k)


def _pooled(
    causal_lm: PreTrainedModel, states: list[Tensor], distributions: list[Tensor], top_k: int
) -> LatentThinkingOutput:
    """``normalize(mean(h_1 .. h_K))``, plus the top tokens after each state when asked."""
    stacked = torch.stack(states, dim=1)
    embedding = F.normalize(stacked.float().mean(dim=1), p=2, dim=-1)
    result = LatentThinkingOutput(embedding=embedding, states=stacked)
    if top_k > 0:
        distributions.append(next_token_distribution(causal_lm, states[-1]))
        top = torch.stack(distributions, dim=1).topk(top_k, dim=-1)
        result.top_token_ids, result.top_token_probs = top.indices, top.values
    return result


def decodes_on_cache(causal_lm: PreTrainedModel) -> bool:
    """Whether the K-1 steps can reuse the KV cache. transformers drops the cache in training under
    activation checkpointing, so the loop then recomputes the whole sequence at each step instead
    (same numbers, K full passes: the price of checkpointing's memory savings)."""
    backbone = causal_lm.base_model
    if not backbone.training:
        return True
    return not any(getattr(module, "gradient_checkpointing", False) for module in backbone.modules())


def cache_keyword(backbone: torch.nn.Module) -> str:
    """The name under which this backbone takes and returns its KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in 5.40);
    earlier 5.x releases and remote-code models only know ``past_key_values``.
    """
    parameters = inspect.signature(backbone.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _think_on_cache(
    causal_lm: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, steps: int, prefix: Cache | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """One prefill (on top of a prefix's KV cache, if given), then each soft token as a single new position."""
    backbone = causal_lm.base_model
    embedding_table = causal_lm.get_input_embeddings().weight
    cache_name = cache_keyword(backbone)
    past = {}
    if prefix is not None:  # the prefix's columns come first: [prefix | padding | tokens], all prefix keys visible
        attention_mask = F.pad(attention_mask, (prefix.get_seq_length(), 0), value=1)
        past = {cache_name: prefix}
    prompt_length = attention_mask.shape[1]
    positions = positions_from_mask(attention_mask)[:, -input_ids.shape[1] :]
    thinking_mask = F.pad(attention_mask, (0, steps - 1), value=1)

    output = backbone(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        use_cache=steps > 1 or prefix is not None,
        **past,
    )
    hidden = output.last_hidden_state[:, -1]
    states, distributions = [hidden], []
    for step in range(1, steps):
        probs = next_token_distribution(causal_lm, hidden)
        distributions.append(probs)
        output = backbone(
            inputs_embeds=soft_token(probs, embedding_table),
            attention_mask=thinking_mask[:, : prompt_length + step],
            position_ids=positions[:, -1:] + step,
            use_cache=True,
            **{cache_name: getattr(output, cache_name)},
        )
        hidden = output.last_hidden_state[:, -1]
        states.append(hidden)
    return states, distributions


def _think_by_recompute(
    causal_lm: PreTrainedModel, input_ids: Tensor, attention_mask: Tensor, steps: int
) -> tuple[list[Tensor], list[Tensor]]:
    """The same steps without a cache: the prompt plus the soft tokens so far, recomputed each step."""
    backbone = causal_lm.base_model
    embedding_table = causal_lm.get_input_embeddings().weight
    inputs = causal_lm.get_input_embeddings()(input_ids)
    positions = positions_from_mask(attention_mask)
    thinking_positions = torch.cat([positions, positions[:, -1:] + torch.arange(1, steps, device=positions.device)], 1)
    thinking_mask = F.pad(attention_mask, (0, steps - 1), value=1)
    states, distributions = [], []
    for step in range(steps):
        length = inputs.shape[1]
        hidden = backbone(
            inputs_embeds=inputs,
            attention_mask=thinking_mask[:, :length],
            position_ids=thinking_positions[:, :length],
            use_cache=False,
        ).last_hidden_state[:, -1]
        states.append(hidden)
        if step < steps - 1:
            probs = next_token_distribution(causal_lm, hidden)
            distributions.append(probs)
            inputs = torch.cat([inputs, soft_token(probs, embedding_table)], dim=1)
    return states, distributions


def explicit_view(
    causal_lm: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    trajectory_positions: Tensor | None = None,
) -> ExplicitViewOutput:
    """Embed left-padded ``query + rationale + EOS`` inputs in one forward pass (spec section 2).

    Args:
        causal_lm: A ``*ForCausalLM`` model.
        input_ids: (B, T) ids ending with the EOS token, padded on the left.
        attention_mask: (B, T).
        trajectory_positions: Optional (B, K) column indices of the trajectory features (see
            :func:`trajectory_positions`, shifted by each row's left padding).
    """
    require_left_padding(attention_mask, "explicit_view")
    hidden = causal_lm.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions_from_mask(attention_mask),
        use_cache=False,
    ).last_hidden_state
    result = ExplicitViewOutput(embedding=F.normalize(hidden[:, -1].float(), p=2, dim=-1))
    if trajectory_positions is not None:
        index = trajectory_positions.to(hidden.device).unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
        result.trajectory = hidden.gather(1, index)
    return result


def trajectory_positions(rationale_ids: Sequence[int], break_token_id: int, num_steps: int) -> list[int]:
    """Pick the K rationale positions whose hidden states are the teacher's trajectory (spec section 2).

    Segments end at each paragraph-break token and at the rationale's last token; M segment ends are
    downsampled to K with ``floor(linspace(0, M-1, K))``, or the last one is repeated when M < K.
    Positions are relative to the rationale's first token; an empty rationale returns ``[]`` (the
    caller then uses the final EOS state K times).

    >>> trajectory_positions([5, 9, 7, 9, 8], break_token_id=9, num_steps=3)  # ends 1, 3, 4
    [1, 3, 4]
    >>> trajectory_positions([5, 9, 7, 9, 8, 9, 6], break_token_id=9, num_steps=2)  # ends 1, 3, 5, 6
    [1, 6]
    >>> trajectory_positions([5, 6], break_token_id=9, num_steps=3)
    [1, 1, 1]
    """
    steps = check_num_thinking_steps(num_steps)
    ends = [index for index, token in enumerate(rationale_ids) if token == break_token_id]
    if rationale_ids and rationale_ids[-1] != break_token_id:
        ends.append(len(rationale_ids) - 1)
    if not ends:
        return []
    if len(ends) < steps:
        return ends + [ends[-1]] * (steps - len(ends))
    if steps == 1:
        return [ends[0]]
    # Integer arithmetic gives the exact floor of linspace(0, M-1, K) with no float round-off.
    return [ends[(k * (len(ends) - 1)) // (steps - 1)] for k in range(steps)]
