"""An exact, bounded, thread-safe cache of the KV states of the prompt prefix every text starts with.

Every LaSER query reads ``chat head + system prompt + "Instruct: {task}\\nQuery: " + query (+ chat tail)``:
on SmolLM2 a 71-token query shares its first 41 tokens with every other query under the same task.
Causal attention makes the keys and values of those tokens independent of what follows, so they are
computed once (:func:`compute_prefix_kv`), kept here, and each batch starts from a fresh copy
(:meth:`PrefixKV.for_batch`) on which :func:`~laser_integrations.latent.latent_thinking_after_prefix` feeds
only the rest of each text. Vectors equal the plain path's to float rounding (about 1e-6).

What is cached is keyed by everything that changes the keys and values: the prefix token ids, the model
(its identity and a fingerprint of in-place weight updates), its dtype, device, training mode and
attention implementation. Entries are evicted least-recently-used beyond ``max_entries``.

Memory: one entry holds ``2 x layers x kv_heads x head_dim x P x itemsize`` bytes for a P-token prefix,
e.g. 45 KiB per token for SmolLM2-135M in float32 (1.8 MiB for its 41-token query prefix), 112 KiB per
token for Qwen3-0.6B and 144 KiB per token for Qwen3-8B in bfloat16. The default of 4 entries (a few
tasks' query prefixes and the document prefix) therefore stays within a few MiB for typical prompts;
:attr:`PrefixCache.nbytes` reports the total.

>>> cache = PrefixCache(max_entries=4)
>>> prefix = cache.get(causal_lm, prefix_ids)                              # doctest: +SKIP
>>> latent_thinking_after_prefix(causal_lm, prefix.for_batch(8), rest_ids, rest_mask, 3)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from transformers import DynamicCache, PreTrainedModel
from transformers.cache_utils import DynamicLayer

from laser_integrations.latent import cache_keyword
from laser_integrations.validation import positive_int

DEFAULT_MAX_ENTRIES = 4
"""Prefixes kept per cache (one per distinct prompt in use: each task's query prompt, the document prompt)."""

EXACT_ATTENTION = frozenset({"sdpa", "eager"})
"""Attention implementations whose masks take padding between a cached prefix and the new tokens."""


@dataclass(frozen=True)
class PrefixKV:
    """The keys and values of one prefix, computed alone (batch 1, no padding). Never modified in place."""

    ids: tuple[int, ...]
    """The prefix token ids."""
    keys: tuple[Tensor, ...]
    """One (1, kv_heads, P, head_dim) tensor per layer."""
    values: tuple[Tensor, ...]

    @property
    def length(self) -> int:
        """P, the number of prefix tokens."""
        return len(self.ids)

    @property
    def nbytes(self) -> int:
        """Memory held by the cached tensors."""
        return sum(t.numel() * t.element_size() for t in (*self.keys, *self.values))

    def for_batch(self, batch_size: int, config: object) -> DynamicCache:
        """A fresh ``DynamicCache`` holding the prefix for ``batch_size`` rows, for one forward loop to grow.

        transformers appends to a ``DynamicCache`` in place, so every batch gets its own: the cached
        tensors are expanded (a view) and copied into the new cache, and are never written.
        """
        cache = DynamicCache(config=config)
        for layer, (key, value) in enumerate(zip(self.keys, self.values, strict=True)):
            cache.update(key.expand(batch_size, -1, -1, -1), value.expand(batch_size, -1, -1, -1), layer)
        return cache


def supports_prefix_cache(causal_lm: PreTrainedModel) -> bool:
    """Whether a cached prefix gives exactly the plain path's vectors on this model.

    Needs a causal decoder whose every layer keeps a plain full-attention ``DynamicCache`` layer (sliding
    windows count columns, and the padding between prefix and tokens would shift them) and an attention
    implementation that builds its mask from the 2D mask with padding anywhere (``sdpa``, ``eager``).
    """
    backbone = causal_lm.base_model
    config = backbone.config
    if getattr(config, "is_causal", True) is False or getattr(config, "is_encoder_decoder", False):
        return False
    if getattr(config, "_attn_implementation", None) not in EXACT_ATTENTION:
        return False
    try:
        layers = DynamicCache(config=config).layers
    except Exception:  # an unusual config: take the plain path
        return False
    return bool(layers) and all(type(layer) is DynamicLayer for layer in layers)


def compute_prefix_kv(causal_lm: PreTrainedModel, prefix_ids: Sequence[int]) -> PrefixKV:
    """Run the backbone over the prefix alone and keep its per-layer keys and values.

    Runs without autograd and outside inference mode, so the tensors can serve later calls made under
    ``torch.no_grad()`` as well as under ``torch.inference_mode()``.
    """
    ids = tuple(int(token) for token in prefix_ids)
    if not ids:
        raise ValueError("a prefix needs at least one token")
    backbone = causal_lm.base_model
    device = causal_lm.get_input_embeddings().weight.device
    with torch.inference_mode(False), torch.no_grad():
        input_ids = torch.tensor([ids], device=device)
        cache = DynamicCache(config=backbone.config)
        backbone(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            position_ids=torch.arange(len(ids), device=device).unsqueeze(0),
            use_cache=True,
            **{cache_keyword(backbone): cache},
        )
    keys = tuple(layer.keys for layer in cache.layers)
    values = tuple(layer.values for layer in cache.layers)
    return PrefixKV(ids=ids, keys=keys, values=values)


def weights_version(causal_lm: torch.nn.Module) -> int:
    """A number that grows with every in-place update of the weights (optimizer steps, ``load_state_dict``).

    Sums PyTorch's per-tensor version counters. Writes through ``.data`` bypass them: call
    :meth:`PrefixCache.clear` after editing weights that way.
    """
    total = 0
    for parameter in causal_lm.parameters():
        try:
            total += parameter._version
        except RuntimeError:  # an inference tensor has no version counter; it cannot be updated in place either
            continue
    return total


def prefix_key(causal_lm: PreTrainedModel, prefix_ids: Sequence[int]) -> Hashable:
    """Everything that changes a prefix's keys and values."""
    weight = causal_lm.get_input_embeddings().weight
    return (
        id(causal_lm),
        tuple(int(token) for token in prefix_ids),
        weight.dtype,
        str(weight.device),
        causal_lm.training,
        getattr(causal_lm.config, "_attn_implementation", None),
        weights_version(causal_lm),
    )


@dataclass(frozen=True)
class _Entry:
    model: weakref.ref
    prefix: PrefixKV


class PrefixCache:
    """A least-recently-used map from prefix keys (:func:`prefix_key`) to :class:`PrefixKV`, safe across threads.

    Lookups and inserts hold one lock; a missing prefix is computed once while concurrent callers for the
    same key wait for it (callers for other keys are not blocked). Stored tensors are read-only by
    contract: :meth:`PrefixKV.for_batch` copies them for every batch.

    Args:
        max_entries: How many prefixes to keep (see the module docstring for their memory).
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = positive_int("max_entries", max_entries)
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, causal_lm: PreTrainedModel, prefix_ids: Sequence[int]) -> PrefixKV:
        """The prefix's KV states on ``causal_lm``, computed on first use."""
        key = prefix_key(causal_lm, prefix_ids)
        with self._lock:
            found = self._lookup(key, causal_lm)
            if found is not None:
                self.hits += 1
                return found
            compute_lock = self._computing.setdefault(key, threading.Lock())
        with compute_lock:
            with self._lock:
                found = self._lookup(key, causal_lm)
                if found is not None:  # another thread computed it while this one waited
                    self.hits += 1
                    return found
            try:
                prefix = compute_prefix_kv(causal_lm, prefix_ids)
            except BaseException:
                with self._lock:
                    self._computing.pop(key, None)
                raise
            with self._lock:  # insert before the compute lock goes, so no caller can miss both
                self.misses += 1
                self._entries[key] = _Entry(weakref.ref(causal_lm), prefix)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self._computing.pop(key, None)
            return prefix

    def _lookup(self, key: Hashable, causal_lm: PreTrainedModel) -> PrefixKV | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.model() is not causal_lm:  # a new model reusing a dead one's id
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.prefix

    def clear(self) -> None:
        """Drop every cached prefix."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Memory held by all cached prefixes."""
        with self._lock:
            return sum(entry.prefix.nbytes for entry in self._entries.values())

    # A module holding a cache must stay deep-copyable and picklable (multi-process pools, trainers):
    # copies start empty, with their own lock.
    def __getstate__(self) -> dict:
        return {"max_entries": self.max_entries}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_entries"])

    def __deepcopy__(self, memo: dict) -> PrefixCache:
        return PrefixCache(self.max_entries)

    def __repr__(self) -> str:
        return f"PrefixCache(entries={len(self)}/{self.max_entries}, hits={self.hits}, misses={self.misses})"
