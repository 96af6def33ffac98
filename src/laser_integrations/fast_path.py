"""The latent loop's GPU fast path: the K-1 soft-token steps on a static KV cache, captured once and replayed.

:func:`latent_thinking_static` computes what :func:`laser_integrations.latent.latent_thinking` computes (spec
section 1). The prefill is the plain loop's own call, so ``h_1`` is bit-identical; its keys and values are
copied into a ``StaticCache`` preallocated for the batch's **bucket** (:func:`bucket_batch_size` rows by
:func:`cache_columns` columns, bucket padding masked out), and the K-1 steps read and write fixed buffers, so
every shape depends only on the bucket and one ``torch.cuda.CUDAGraph`` capture per ``(B_b, L_b, K, dtype,
device)`` serves every batch in it. A graph (not ``torch.compile``): capturing costs milliseconds where
compiling costs tens of seconds per bucket, and it replays the plain loop's own eager kernels.

Fallbacks (one log line per reason, never an exception): ``capture=None`` captures on CUDA only; on CPU or
after a failed capture the steps run eagerly on the static cache. Models the static path does not cover
(:func:`unsupported_reason`), autograd through the call and K = 1 go to the plain loop.
:mod:`laser_integrations.latent_loops` decides when the module uses this path. Graphs and static caches stay
allocated between calls, at most :data:`MAX_CACHED_ENTRIES` per model; :func:`clear_fast_path_cache` frees them.
"""

from __future__ import annotations

import inspect
import logging
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedModel, StaticCache
from transformers.cache_utils import StaticLayer

from laser_integrations.latent import (
    LatentThinkingOutput,
    cache_keyword,
    check_num_thinking_steps,
    decodes_on_cache,
    latent_thinking,
    next_token_distribution,
    positions_from_mask,
    require_left_padding,
    soft_token,
)

logger = logging.getLogger(__name__)

MAX_CACHED_ENTRIES = 4
"""Static caches (and captured graphs) kept per model; each holds a KV cache of its bucket's size."""
SUPPORTED_ATTENTION = ("sdpa", "eager")
"""Attention implementations that take the explicit 4D additive mask the static steps pass."""

BucketKey = tuple[int, int, int, torch.dtype, torch.device]


def bucket_batch_size(batch_size: int) -> int:
    """Batch bucket: the next power of two up to 32, then the next multiple of 32.

    >>> [bucket_batch_size(b) for b in (1, 3, 8, 9, 32, 33, 70)]
    [1, 4, 8, 16, 32, 64, 96]
    """
    if batch_size <= 32:
        return 1 << (batch_size - 1).bit_length()
    return -(-batch_size // 32) * 32


def bucket_length(length: int) -> int:
    """Prompt-length bucket (the static cache holds this plus K-1): a multiple of 64, of 256 past 1024.

    >>> [bucket_length(n) for n in (1, 30, 64, 65, 512, 1025)]
    [64, 64, 64, 128, 512, 1280]
    """
    step = 64 if length <= 1024 else 256
    return max(1, -(-length // step)) * step


def cache_columns(length_bucket: int, steps: int) -> int:
    """Static cache length: the length bucket plus room for the K-1 soft tokens, rounded up to 16 columns
    (aligned rows suit the attention kernels; the spare columns are masked like any padding).

    >>> cache_columns(64, 3), cache_columns(64, 1), cache_columns(512, 18)
    (80, 64, 544)
    """
    return length_bucket + -(-(steps - 1) // 16) * 16


def unsupported_reason(causal_lm: PreTrainedModel) -> str | None:
    """Why the static path cannot run this model, or ``None`` when it can (on any device)."""
    config = causal_lm.config
    attention = getattr(config, "_attn_implementation", None)
    if attention not in SUPPORTED_ATTENTION:
        return f"attention implementation {attention!r} is not one of {SUPPORTED_ATTENTION}"
    if not decodes_on_cache(causal_lm):
        return "training with activation checkpointing (transformers drops the KV cache)"
    backbone = causal_lm.base_model
    parameters = set(inspect.signature(backbone.forward).parameters)
    needed = {"inputs_embeds", "position_ids", "attention_mask", cache_keyword(backbone)}
    if not needed <= parameters:
        return f"{type(backbone).__name__}.forward lacks {sorted(needed - parameters)}"
    if causal_lm not in _LAYER_CHECKS:  # the layer structure is fixed by the config: check it once per model
        _LAYER_CHECKS[causal_lm] = _static_layers_reason(config)
    return _LAYER_CHECKS[causal_lm]


def _static_layers_reason(config: object) -> str | None:
    try:
        layers = StaticCache(config=config, max_cache_len=1).layers
    except Exception as error:  # an exotic config transformers cannot build a static cache for
        return f"no StaticCache for this config ({type(error).__name__}: {error})"
    kinds = {type(layer).__name__ for layer in layers if type(layer) is not StaticLayer}
    if kinds:
        return f"cache layers {sorted(kinds)} (sliding-window or linear attention) are not plain static layers"
    return None


def fast_path_available(causal_lm: PreTrainedModel) -> bool:
    """Whether :func:`latent_thinking_static` should replace the plain loop for this model right now.

    True for a supported model (:func:`unsupported_reason` is ``None``) whose weights are on a CUDA
    device, when no gradient has to flow through the call. On CPU the static path gives the same
    numbers but no speed-up, so this says False there.
    """
    if causal_lm.get_input_embeddings().weight.device.type != "cuda":
        return False
    return not _needs_autograd(causal_lm) and unsupported_reason(causal_lm) is None


def latent_thinking_static(
    causal_lm: PreTrainedModel,
    input_ids: Tensor,
    attention_mask: Tensor,
    num_thinking_steps: int,
    *,
    capture: bool | None = None,
) -> LatentThinkingOutput:
    """Embed a left-padded batch with K latent thinking steps, the steps on a static KV cache (module doc).

    Args:
        causal_lm: A ``*ForCausalLM`` model.
        input_ids: (B, T) token ids, padded on the left.
        attention_mask: (B, T) 1 for tokens, 0 for padding.
        num_thinking_steps: K >= 1.
        capture: Capture the K-1 steps as a CUDA graph and replay it. ``None`` (default): on CUDA only.
            When capture is impossible or fails, the steps run eagerly on the static cache instead.

    Returns:
        A :class:`~laser_integrations.latent.LatentThinkingOutput` (``embedding`` and ``states``; no top
        tokens), equal to :func:`~laser_integrations.latent.latent_thinking`'s up to float rounding.
    """
    steps = check_num_thinking_steps(num_thinking_steps)
    require_left_padding(attention_mask)
    reason = "K = 1 has no thinking steps" if steps == 1 else None
    reason = reason or ("autograd through the call" if _needs_autograd(causal_lm) else unsupported_reason(causal_lm))
    if reason is not None:
        _log_once(("plain", reason), logging.DEBUG, "latent fast path not used (%s): plain loop", reason)
        return latent_thinking(causal_lm, input_ids, attention_mask, steps)

    state = _state_for(causal_lm)
    with state.lock, torch.inference_mode():
        states = _think_static(causal_lm, state, input_ids, attention_mask, steps, capture)
    states = states.clone()  # a normal tensor again, usable outside inference mode
    embedding = F.normalize(states.float().mean(dim=1), p=2, dim=-1)
    return LatentThinkingOutput(embedding=embedding, states=states)


def clear_fast_path_cache(causal_lm: PreTrainedModel | None = None) -> None:
    """Free the static caches and captured graphs kept for ``causal_lm`` (or for every model)."""
    with _STATES_LOCK:
        models = [causal_lm] if causal_lm is not None else list(_STATES.keys())
        for model in models:
            state = _STATES.pop(model, None)
            if state is not None:
                with state.lock:  # waits for a call in flight on this model
                    state.entries.clear()


def cached_buckets(causal_lm: PreTrainedModel) -> list[BucketKey]:
    """The ``(batch bucket, length bucket, K, dtype, device)`` entries kept for ``causal_lm``, oldest first."""
    state = _STATES.get(causal_lm)
    return [] if state is None else list(state.entries)


def fast_path_report(causal_lm: PreTrainedModel) -> list[dict[str, object]]:
    """One dict per kept entry: its bucket, whether its steps were captured as a graph, whether capture failed."""
    state = _STATES.get(causal_lm)
    if state is None:
        return []
    return [
        {
            "batch_bucket": key[0],
            "length_bucket": key[1],
            "steps": key[2],
            "dtype": str(key[3]).removeprefix("torch."),
            "device": str(key[4]),
            "cache_columns": entry.masks.shape[-1],
            "captured": entry.replay is not None,
            "capture_failed": entry.capture_failed,
        }
        for key, entry in list(state.entries.items())
    ]


# -- internals ------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    """One bucket's static cache, step buffers and (once captured) graph."""

    cache: StaticCache
    counters: Tensor  # (layers,): every layer's write position (its ``cumulative_length`` is a view of one entry)
    hidden: Tensor  # (B_b, H): h_1 going in
    positions: Tensor  # (K-1, B_b, 1): the position id of each step
    masks: Tensor  # (K-1, B_b, 1, 1, cache columns): additive attention mask of each step
    prompt_length: int = 0
    replay: Callable[[], None] | None = None
    output: Tensor | None = None  # (B_b, K-1, H): h_2 .. h_K, written by each replay
    capture_failed: bool = False

    def rewind(self) -> None:
        """Point every layer's write position back at the first soft-token column (one kernel for all layers)."""
        self.counters.fill_(self.prompt_length)


@dataclass
class _ModelState:
    lock: threading.Lock = field(default_factory=threading.Lock)
    entries: OrderedDict[BucketKey, _Entry] = field(default_factory=OrderedDict)
    weights: tuple[int, ...] = ()
    capture_broken: bool = False


_STATES: weakref.WeakKeyDictionary[PreTrainedModel, _ModelState] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()
_LAYER_CHECKS: weakref.WeakKeyDictionary[PreTrainedModel, str | None] = weakref.WeakKeyDictionary()
_LOGGED: set[tuple] = set()


def _state_for(causal_lm: PreTrainedModel) -> _ModelState:
    with _STATES_LOCK:
        state = _STATES.get(causal_lm)
        if state is None:
            state = _STATES[causal_lm] = _ModelState()
        return state


def _log_once(key: tuple, level: int, message: str, *args: object) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        logger.log(level, message, *args)


def _needs_autograd(causal_lm: PreTrainedModel) -> bool:
    return torch.is_grad_enabled() and any(parameter.requires_grad for parameter in causal_lm.parameters())


def _weights_fingerprint(causal_lm: PreTrainedModel) -> tuple[int, ...]:
    """Addresses a captured graph reads; if they move (``.to()``, reloaded weights) the graphs are stale."""
    head = causal_lm.get_output_embeddings()
    tensors = [causal_lm.get_input_embeddings().weight, next(causal_lm.base_model.parameters())]
    tensors += [head.weight] if head is not None else []
    return tuple(tensor.data_ptr() for tensor in tensors)


def _think_static(
    causal_lm: PreTrainedModel,
    state: _ModelState,
    input_ids: Tensor,
    attention_mask: Tensor,
    steps: int,
    capture: bool | None,
) -> Tensor:
    """(B, K, H) states ``h_1 .. h_K``; runs under the model's lock, in inference mode."""
    backbone = causal_lm.base_model
    cache_name = cache_keyword(backbone)
    batch, length = input_ids.shape
    positions = positions_from_mask(attention_mask)
    prefill = backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    first = prefill.last_hidden_state[:, -1]
    dynamic = getattr(prefill, cache_name)
    del prefill

    entry = _entry_for(causal_lm, state, batch, length, steps, first, dynamic)
    _load(entry, dynamic, first, attention_mask, positions)
    del dynamic

    run = _steps_function(causal_lm, entry, steps, cache_name)
    want_capture = first.device.type == "cuda" if capture is None else bool(capture)
    if want_capture and entry.replay is None and not entry.capture_failed and not state.capture_broken:
        try:
            entry.replay, entry.output = _capture_graph(run, first.device)
        except Exception as error:  # any capture failure: run the same steps eagerly instead
            entry.capture_failed = True
            # Out of memory is this bucket's problem; anything else (a host sync, an op) is the model's.
            state.capture_broken = state.capture_broken or not isinstance(error, torch.cuda.OutOfMemoryError)
            entry.replay = entry.output = None
            _recover_from_failed_capture(first.device)
            _log_once(
                ("capture", type(causal_lm).__name__, type(error).__name__),
                logging.INFO,
                "latent fast path: graph capture failed (%s: %s); running the static-cache steps eagerly",
                type(error).__name__,
                str(error).splitlines()[0] if str(error) else "",
            )
        entry.rewind()  # warm-up and capture advanced the write positions
    if want_capture and entry.replay is not None:
        entry.replay()
        later = entry.output
    else:
        if want_capture:
            _log_once(("eager", type(causal_lm).__name__), logging.DEBUG, "latent fast path: eager steps")
        later = run()
    return torch.cat([first.unsqueeze(1), later[:batch]], dim=1)


def _entry_for(
    causal_lm: PreTrainedModel,
    state: _ModelState,
    batch: int,
    length: int,
    steps: int,
    first: Tensor,
    dynamic: object,
) -> _Entry:
    """The bucket's entry, built on first use (the static cache sized from the prefill's own KV tensors)."""
    weights = _weights_fingerprint(causal_lm)
    if weights != state.weights:  # weights moved or changed dtype: every captured graph reads stale memory
        state.entries.clear()
        state.weights = weights
        state.capture_broken = False  # a capture that failed on another device may work on this one
    key: BucketKey = (bucket_batch_size(batch), bucket_length(length), steps, first.dtype, first.device)
    entry = state.entries.get(key)
    if entry is not None:
        state.entries.move_to_end(key)
        return entry

    while len(state.entries) >= MAX_CACHED_ENTRIES:
        state.entries.popitem(last=False)
    batch_bucket, length_bucket = key[0], key[1]
    columns = cache_columns(length_bucket, steps)
    cache = StaticCache(config=causal_lm.config, max_cache_len=columns)
    for static_layer, layer in zip(cache.layers, dynamic.layers, strict=True):
        # Allocate the (B_b, heads, columns, head_dim) buffers now, shaped like the prefill's own KV tensors.
        keys, values = layer.keys, layer.values
        static_layer.lazy_initialization(
            keys.new_empty(batch_bucket, keys.shape[1], 0, keys.shape[-1]),
            values.new_empty(batch_bucket, values.shape[1], 0, values.shape[-1]),
        )
    counters = torch.zeros(len(cache.layers), dtype=torch.long, device=first.device)
    for index, static_layer in enumerate(cache.layers):
        static_layer.cumulative_length = counters[index]  # a view: rewinding all layers is one fill_
    entry = _Entry(
        cache=cache,
        counters=counters,
        hidden=first.new_zeros(batch_bucket, first.shape[-1]),
        positions=torch.zeros(steps - 1, batch_bucket, 1, dtype=torch.long, device=first.device),
        masks=first.new_zeros(steps - 1, batch_bucket, 1, 1, columns),
    )
    state.entries[key] = entry
    return entry


def _load(entry: _Entry, dynamic: object, first: Tensor, attention_mask: Tensor, positions: Tensor) -> None:
    """Fill the entry for this batch: the prompt's KV, write positions, h_1, step positions and masks."""
    batch, length = attention_mask.shape
    steps_minus_one, _, _, _, columns = entry.masks.shape
    buffers = [tensor for layer in entry.cache.layers for tensor in (layer.keys, layer.values)]
    # Stale rows and columns are masked out, but a non-finite leftover would still poison the softmax.
    torch._foreach_zero_(buffers)
    for static_layer, layer in zip(entry.cache.layers, dynamic.layers, strict=True):
        static_layer.keys[:batch, :, :length].copy_(layer.keys)
        static_layer.values[:batch, :, :length].copy_(layer.values)
    entry.prompt_length = length
    entry.rewind()

    entry.hidden[:batch].copy_(first)
    entry.hidden[batch:].zero_()
    offsets = torch.arange(1, steps_minus_one + 1, device=positions.device)
    entry.positions.copy_(offsets.view(-1, 1, 1) - 1)  # padding rows: any valid position
    entry.positions[:, :batch].copy_(positions[:, -1:].unsqueeze(0) + offsets.view(-1, 1, 1))

    valid = torch.zeros(entry.hidden.shape[0], columns, dtype=torch.bool, device=attention_mask.device)
    valid[:batch, :length] = attention_mask.bool()
    valid[:, length : length + steps_minus_one] = True
    column = torch.arange(columns, device=attention_mask.device)
    seen = column.view(1, 1, -1) < (length + offsets).view(-1, 1, 1)  # step s sees columns < L + s
    allowed = (valid.unsqueeze(0) & seen).view(steps_minus_one, -1, 1, 1, columns)
    blocked = torch.finfo(entry.masks.dtype).min
    entry.masks.copy_(torch.where(allowed, 0.0, blocked).to(entry.masks.dtype))


def _steps_function(causal_lm: PreTrainedModel, entry: _Entry, steps: int, cache_name: str) -> Callable[[], Tensor]:
    """The K-1 soft-token steps over the entry's fixed buffers, as one argument-free (capturable) function:
    each is ``p = softmax(W h)`` (float32), ``e = p @ E``, the backbone at one position -> the next ``h``."""
    table = causal_lm.get_input_embeddings().weight

    def run() -> Tensor:
        hidden, outputs = entry.hidden, []
        for step in range(steps - 1):
            output = causal_lm.base_model(
                inputs_embeds=soft_token(next_token_distribution(causal_lm, hidden), table),
                attention_mask=entry.masks[step],
                position_ids=entry.positions[step],
                use_cache=True,
                **{cache_name: entry.cache},
            )
            hidden = output.last_hidden_state[:, -1]
            outputs.append(hidden)
        return torch.stack(outputs, dim=1)

    return run


def _capture_graph(function: Callable[[], Tensor], device: torch.device) -> tuple[Callable[[], None], Tensor]:
    """Capture ``function`` as a CUDA graph: returns ``(replay, output)``; each replay rewrites ``output``.

    One eager warm-up on a side stream first (cuBLAS handles, lazy allocations), as PyTorch requires.
    Raises for a non-CUDA device or on anything the capture cannot record.
    """
    if device.type != "cuda" or not torch.cuda.is_available():
        raise RuntimeError(f"CUDA graph capture needs a CUDA device, the model is on {device}")
    with torch.cuda.device(device):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            function()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            output = function()
    return graph.replay, output


def _recover_from_failed_capture(device: torch.device) -> None:
    if device.type == "cuda":
        try:
            torch.cuda.synchronize(device)
        except Exception:  # the failed capture's own error, already being handled
            logger.debug("synchronize after a failed capture raised", exc_info=True)
