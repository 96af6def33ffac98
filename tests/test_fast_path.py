"""The static-cache fast path of the latent loop, against the plain loop and a slow reference from the spec.

No GPU here: the CUDA-graph capture itself is replaced by a stand-in that records the step function and
replays it on the same fixed buffers (what a graph replay does), or by one that raises (a failed capture).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from transformers import Qwen3Config, Qwen3ForCausalLM

from laser_integrations import fast_path
from laser_integrations.fast_path import (
    MAX_CACHED_ENTRIES,
    bucket_batch_size,
    bucket_length,
    cached_buckets,
    clear_fast_path_cache,
    fast_path_available,
    latent_thinking_static,
    unsupported_reason,
)
from laser_integrations.latent import latent_thinking

from tiny import MIXED_LENGTH_TEXTS as TEXTS
from tiny import build_qwen3, reference_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module", autouse=True)
def no_kept_fast_path_entries():
    """Free the static caches and graphs the fast path kept for this module's models once it is done."""
    yield
    clear_fast_path_cache()


@pytest.fixture(autouse=True)
def fresh_cache():
    clear_fast_path_cache()
    yield
    clear_fast_path_cache()


def encode(tokenizer, texts):
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def replaying_capture(captured: list):
    """Stand-in for the CUDA-graph capture: keeps the step function and reruns it into one fixed output
    buffer on each replay, so a stale input buffer or a missed rewind would show in the numbers."""

    def capture(function, device):
        output = function()  # a real capture records instead of running: the code must rewind either way
        captured.append(device)

        def replay() -> None:
            output.copy_(function())

        return replay, output

    return capture


class HostSyncSpy(TorchFunctionMode):
    """Records the calls that would make a CUDA stream wait for the host (forbidden inside graph capture)."""

    SYNCING = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "nonzero", "masked_select", "cpu"}

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device, self.calls = device, []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", str(func))
        targets = [torch.device(v) for v in (*args[1:], *kwargs.values()) if _is_device(v)]
        if name in self.SYNCING or (name == "to" and any(target != self.device for target in targets)):
            self.calls.append(name)
        return func(*args, **kwargs)


def _is_device(value) -> bool:
    if not isinstance(value, (torch.device, str)):
        return False
    try:
        torch.device(value)
    except (RuntimeError, TypeError):
        return False
    return True


@pytest.mark.parametrize("steps", [1, 3, 6])
def test_static_path_equals_the_plain_loop(causal_lm, tokenizer, steps):
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with torch.no_grad():
        plain = latent_thinking(causal_lm, input_ids, attention_mask, steps)
        static = latent_thinking_static(causal_lm, input_ids, attention_mask, steps)
    torch.testing.assert_close(static.embedding, plain.embedding, rtol=0, atol=1e-6)
    torch.testing.assert_close(static.states, plain.states, rtol=0, atol=1e-5)
    assert F.cosine_similarity(static.embedding, plain.embedding).min() >= 0.99999
    assert static.states.shape == (len(TEXTS), steps, causal_lm.config.hidden_size)
    assert not torch.is_inference(static.states) and not torch.is_inference(static.embedding)


@pytest.mark.parametrize("steps", [1, 3, 6])
def test_static_path_matches_the_slow_reference(causal_lm, tokenizer, steps):
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with torch.no_grad():
        static = latent_thinking_static(causal_lm, input_ids, attention_mask, steps)
    reference = torch.stack([reference_embedding(causal_lm, tokenizer(text)["input_ids"], steps) for text in TEXTS])
    torch.testing.assert_close(static.embedding, reference, rtol=0, atol=1e-5)


@pytest.mark.parametrize("steps", [3, 6])
def test_replayed_steps_equal_the_plain_loop_across_batches_of_one_bucket(causal_lm, tokenizer, steps, monkeypatch):
    captured: list = []
    monkeypatch.setattr(fast_path, "_capture_graph", replaying_capture(captured))
    # Batch 3, 4, 3 (one batch bucket, 4) and prompt lengths 73, 73, 86 (one length bucket, 128).
    batches = [TEXTS[:3], TEXTS, [TEXTS[2], TEXTS[1] + " " + TEXTS[0], TEXTS[3]]]
    for texts in batches:
        input_ids, attention_mask = encode(tokenizer, texts)
        assert 64 < input_ids.shape[1] <= 128
        with torch.no_grad():
            plain = latent_thinking(causal_lm, input_ids, attention_mask, steps)
            static = latent_thinking_static(causal_lm, input_ids, attention_mask, steps, capture=True)
        torch.testing.assert_close(static.embedding, plain.embedding, rtol=0, atol=1e-6)
        torch.testing.assert_close(static.states, plain.states, rtol=0, atol=1e-5)
    assert len(captured) == 1  # captured once, replayed for the later batches
    assert len(cached_buckets(causal_lm)) == 1


def test_the_captured_steps_never_wait_for_the_host(causal_lm, tokenizer, monkeypatch):
    spies = []

    def spying_capture(function, device):
        with HostSyncSpy(device) as spy:
            output = function()
        spies.append(spy)
        return (lambda: output.copy_(function())), output

    monkeypatch.setattr(fast_path, "_capture_graph", spying_capture)
    with HostSyncSpy(torch.device("cpu")) as check:  # the spy itself sees a host sync
        bool(torch.ones(2).sum() > 0)
    assert check.calls == ["__bool__"]
    with torch.no_grad():
        latent_thinking_static(causal_lm, *encode(tokenizer, TEXTS), 3, capture=True)
    assert len(spies) == 1 and spies[0].calls == []


def test_two_batch_sizes_in_one_bucket_share_one_entry(causal_lm, tokenizer):
    for texts in (TEXTS[:3], TEXTS):
        with torch.no_grad():
            latent_thinking_static(causal_lm, *encode(tokenizer, texts), 3)
    (entry,) = cached_buckets(causal_lm)
    batch_bucket, length_bucket, steps, dtype, device = entry
    assert (batch_bucket, steps, dtype, device.type) == (4, 3, torch.float32, "cpu")
    assert length_bucket == bucket_length(encode(tokenizer, TEXTS)[0].shape[1])


def test_the_cache_is_bounded_and_drops_the_oldest(causal_lm, tokenizer):
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    keys = []
    for steps in range(2, MAX_CACHED_ENTRIES + 4):
        with torch.no_grad():
            latent_thinking_static(causal_lm, input_ids, attention_mask, steps)
        keys.append(cached_buckets(causal_lm)[-1])
        assert len(cached_buckets(causal_lm)) <= MAX_CACHED_ENTRIES
    assert cached_buckets(causal_lm) == keys[-MAX_CACHED_ENTRIES:]
    clear_fast_path_cache(causal_lm)
    assert cached_buckets(causal_lm) == []


def test_failed_capture_falls_back_to_eager_steps(causal_lm, tokenizer, monkeypatch, caplog):
    def broken_capture(function, device):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(fast_path, "_capture_graph", broken_capture)
    monkeypatch.setattr(fast_path, "_LOGGED", set())
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with caplog.at_level(logging.INFO, logger="laser_integrations.fast_path"), torch.no_grad():
        plain = latent_thinking(causal_lm, input_ids, attention_mask, 3)
        first = latent_thinking_static(causal_lm, input_ids, attention_mask, 3, capture=True)
        again = latent_thinking_static(causal_lm, input_ids, attention_mask, 3, capture=True)
    torch.testing.assert_close(first.embedding, plain.embedding, rtol=0, atol=1e-6)
    torch.testing.assert_close(again.embedding, plain.embedding, rtol=0, atol=1e-6)
    failures = [record for record in caplog.records if "capture failed" in record.getMessage()]
    assert len(failures) == 1 and "operation not permitted" in failures[0].getMessage()


def test_capture_requested_on_cpu_falls_back_without_raising(causal_lm, tokenizer):
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with torch.no_grad():
        plain = latent_thinking(causal_lm, input_ids, attention_mask, 3)
        static = latent_thinking_static(causal_lm, input_ids, attention_mask, 3, capture=True)
    torch.testing.assert_close(static.embedding, plain.embedding, rtol=0, atol=1e-6)


def test_vector_does_not_depend_on_the_batch_it_rides_in(causal_lm, tokenizer):
    long_texts = [TEXTS[1] * 6, TEXTS[3] * 5]
    with torch.no_grad():
        alone = latent_thinking_static(causal_lm, *encode(tokenizer, [TEXTS[0]]), 3).embedding[0]
        input_ids, attention_mask = encode(tokenizer, [*long_texts, TEXTS[0]])
        assert attention_mask[-1].sum() < attention_mask.shape[1] // 4  # heavily left padded
        inside = latent_thinking_static(causal_lm, input_ids, attention_mask, 3).embedding[-1]
    assert F.cosine_similarity(alone, inside, dim=0) >= 0.99999


def test_bfloat16_on_cpu_stays_close(tokenizer):
    causal_lm = build_qwen3(len(tokenizer))
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with torch.no_grad():
        full = latent_thinking_static(causal_lm, input_ids, attention_mask, 3)
        causal_lm.to(torch.bfloat16)
        plain = latent_thinking(causal_lm, input_ids, attention_mask, 3)
        half = latent_thinking_static(causal_lm, input_ids, attention_mask, 3)
    assert half.states.dtype == torch.bfloat16 and half.embedding.dtype == torch.float32
    assert F.cosine_similarity(half.embedding, plain.embedding).min() >= 0.999
    assert F.cosine_similarity(half.embedding, full.embedding).min() >= 0.99
    assert [key[3] for key in cached_buckets(causal_lm)] == [torch.bfloat16]  # the float32 entry went with .to()


def test_autograd_goes_to_the_plain_loop(tokenizer):
    causal_lm = build_qwen3(len(tokenizer))
    input_ids, attention_mask = encode(tokenizer, TEXTS[:2])
    output = latent_thinking_static(causal_lm, input_ids, attention_mask, 3)
    output.embedding.sum().backward()
    assert causal_lm.get_input_embeddings().weight.grad.abs().sum() > 0
    assert cached_buckets(causal_lm) == []


def test_sliding_window_models_go_to_the_plain_loop(tokenizer):
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        use_sliding_window=True,
        sliding_window=8,
        max_window_layers=1,
        layer_types=["full_attention", "sliding_attention"],
    )
    causal_lm = Qwen3ForCausalLM(config).eval()
    assert "not plain static layers" in unsupported_reason(causal_lm)
    input_ids, attention_mask = encode(tokenizer, TEXTS)
    with torch.no_grad():
        plain = latent_thinking(causal_lm, input_ids, attention_mask, 3)
        static = latent_thinking_static(causal_lm, input_ids, attention_mask, 3)
    torch.testing.assert_close(static.embedding, plain.embedding, rtol=0, atol=0)
    assert cached_buckets(causal_lm) == []


def test_availability(causal_lm):
    assert unsupported_reason(causal_lm) is None
    assert not fast_path_available(causal_lm)  # CPU weights: same numbers, nothing to gain


def test_right_padding_is_refused(causal_lm, tokenizer):
    tokenizer.padding_side = "right"
    try:
        input_ids, attention_mask = encode(tokenizer, TEXTS[:2])
    finally:
        tokenizer.padding_side = "left"
    with pytest.raises(ValueError, match="left padding"):
        latent_thinking_static(causal_lm, input_ids, attention_mask, 3)


def test_concurrent_calls_on_one_model_stay_correct(causal_lm, tokenizer):
    batches = [encode(tokenizer, TEXTS[: size + 1]) for size in (0, 1, 2, 3, 2, 1)]

    def run(batch):
        with torch.no_grad():
            return latent_thinking_static(causal_lm, *batch, 3).embedding

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(run, batches))
    for batch, result in zip(batches, results, strict=True):
        with torch.no_grad():
            torch.testing.assert_close(result, latent_thinking(causal_lm, *batch, 3).embedding, rtol=0, atol=1e-6)


def test_buckets():
    assert [bucket_batch_size(b) for b in (1, 2, 3, 5, 8, 17, 32, 33)] == [1, 2, 4, 8, 8, 32, 32, 64]
    assert [bucket_length(n) for n in (1, 63, 64, 65, 1024, 1025)] == [64, 64, 64, 128, 1024, 1280]


def test_the_module_routes_through_the_fast_path_where_available(tiny_dirs, monkeypatch):
    """On CUDA ``fast_path_available`` is true; faking it on CPU shows the module's routing and its switch."""
    from laser_integrations import latent_loops, load_model

    model = load_model(str(tiny_dirs["qwen3"]), device="cpu")
    texts = ["why is the sky blue", "Photosynthesis converts light energy into chemical energy."]
    plain = model.encode_query(texts)
    calls: list[int] = []
    real_static = latent_loops.latent_thinking_static

    def counting_static(*args, **kwargs):
        calls.append(1)
        return real_static(*args, **kwargs)

    monkeypatch.setattr(latent_loops, "fast_path_available", lambda causal_lm: True)
    monkeypatch.setattr(latent_loops, "latent_thinking_static", counting_static)
    fast = model.encode_query(texts)
    assert calls, "the fast path was not used"
    assert float((fast * plain).sum(-1).min()) >= 0.99999

    calls.clear()
    model[0].fast_path = False
    model.encode_query(texts)
    assert not calls, "fast_path=False still used the fast path"
