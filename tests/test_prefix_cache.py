"""The shared-prefix KV cache: vectors equal the plain path's, and the cache is bounded, shared and safe."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import laser_integrations.latent_loops as loops_code
from laser_integrations import load_model
from laser_integrations.latent import latent_thinking, latent_thinking_after_prefix, without_prefix
from laser_integrations.prefix_cache import PrefixCache, compute_prefix_kv, supports_prefix_cache

from tiny import build_qwen3, build_tokenizer, reference_embedding

pytestmark = [pytest.mark.usefixtures("one_torch_thread"), pytest.mark.filterwarnings("error")]

QUERIES = [
    "why is the sky blue",
    "a",
    "Photosynthesis converts light energy into chemical energy stored in glucose, which plants use to grow.",
    "Python is a programming language. Its default arguments are evaluated once.\n\nSo lists grow. " * 3,
]
DOCUMENTS = [
    "Rayleigh scattering of sunlight.",
    "Plants make glucose from light, water and carbon dioxide. " * 4,
    "x",
]
PYREF = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref"


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def assert_same_vectors(cached: np.ndarray, plain: np.ndarray, atol: float = 1e-5) -> None:
    assert cosine(cached, plain).min() >= 0.99999
    np.testing.assert_allclose(cached, plain, rtol=0, atol=atol)


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def models(request, tiny_dirs):
    """The same tiny checkpoint loaded twice: prefix cache on (default) and off."""
    folder = str(tiny_dirs[request.param])
    return load_model(folder, device="cpu"), load_model(folder, device="cpu", prefix_cache=False)


@pytest.fixture
def fresh(tiny_dirs):
    """A tiny Qwen3 model with an empty prefix cache, for tests that count entries."""
    return load_model(str(tiny_dirs["qwen3"]), device="cpu")


def count_paths(monkeypatch) -> dict[str, int]:
    """Count the module's calls into the plain loop and the cached-prefix loop."""
    calls = {"plain": 0, "prefix": 0}

    def plain(*args, **kwargs):
        calls["plain"] += 1
        return latent_thinking(*args, **kwargs)

    def prefixed(*args, **kwargs):
        calls["prefix"] += 1
        return latent_thinking_after_prefix(*args, **kwargs)

    monkeypatch.setattr(loops_code, "latent_thinking", plain)
    monkeypatch.setattr(loops_code, "latent_thinking_after_prefix", prefixed)
    return calls


# -- exactness -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_cached_prefix_gives_the_plain_vectors(models, steps, monkeypatch):
    cached, plain = models
    calls = count_paths(monkeypatch)
    queries = cached.encode_query(QUERIES, num_thinking_steps=steps, batch_size=4)
    documents = cached.encode_document(DOCUMENTS, num_thinking_steps=steps, batch_size=4)
    assert calls == {"plain": 0, "prefix": 2}
    assert_same_vectors(queries, plain.encode_query(QUERIES, num_thinking_steps=steps, batch_size=4))
    assert_same_vectors(documents, plain.encode_document(DOCUMENTS, num_thinking_steps=steps, batch_size=4))


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_cached_prefix_matches_the_slow_reference(models, steps):
    cached, _ = models
    module, prompt = cached[0], cached.prompts["query"]
    vectors = cached.encode_query(QUERIES, num_thinking_steps=steps, batch_size=4)
    for text, vector in zip(QUERIES, vectors, strict=True):
        ids = module.tokenizer(module.format_text(prompt + text))["input_ids"]
        expected = reference_embedding(module.model, ids, steps)
        np.testing.assert_allclose(vector, expected.numpy(), rtol=0, atol=1e-5)


def test_loop_after_prefix_equals_the_loop_over_whole_texts():
    tokenizer = build_tokenizer()
    tokenizer.padding_side = "left"
    causal_lm = build_qwen3(len(tokenizer))
    prefix_ids = tokenizer("Instruct: Given a query\nQuery:")["input_ids"]
    rests = [tokenizer(text)["input_ids"] for text in (" why is the sky blue", " a", " " + QUERIES[2])]
    whole = tokenizer.pad({"input_ids": [prefix_ids + rest for rest in rests]}, return_tensors="pt")
    with torch.no_grad():
        expected = latent_thinking(causal_lm, whole["input_ids"], whole["attention_mask"], 3, top_k=3)
        rest_ids, rest_mask = without_prefix(whole["input_ids"], whole["attention_mask"], len(prefix_ids))
        assert rest_ids.shape[1] == max(len(rest) for rest in rests)
        prefix = compute_prefix_kv(causal_lm, prefix_ids)
        got = latent_thinking_after_prefix(
            causal_lm, prefix.for_batch(3, causal_lm.config), rest_ids, rest_mask, 3, top_k=3
        )
    torch.testing.assert_close(got.embedding, expected.embedding, rtol=0, atol=1e-6)
    torch.testing.assert_close(got.states, expected.states, rtol=0, atol=1e-5)
    assert got.top_token_ids.tolist() == expected.top_token_ids.tolist()


def test_eager_attention_gives_the_same_vectors(tiny_dirs):
    folder = str(tiny_dirs["llama"])
    cached = load_model(folder, device="cpu", attn_implementation="eager")
    plain = load_model(folder, device="cpu", attn_implementation="eager", prefix_cache=False)
    assert supports_prefix_cache(cached[0].model)
    assert_same_vectors(cached.encode_query(QUERIES), plain.encode_query(QUERIES))
    assert len(cached[0].prefix_kv) == 1


@pytest.fixture(scope="module")
def smollm2_models(smollm2_dir):
    return load_model(str(smollm2_dir), device="cpu"), load_model(str(smollm2_dir), device="cpu", prefix_cache=False)


@pytest.mark.slow
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_smollm2_cached_prefix_gives_the_plain_vectors(smollm2_models, steps):
    cached, plain = smollm2_models
    queries = [json.loads(line)["text"] for line in (PYREF / "queries.jsonl").read_text().splitlines()][:12]
    passages = [json.loads(line)["text"] for line in (PYREF / "corpus.jsonl").read_text().splitlines()][:6]
    # Real padding: the 12 queries span about 20 to 40 tokens after the 41-token prefix.
    got_q = cached.encode_query(queries, num_thinking_steps=steps, batch_size=6)
    got_d = cached.encode_document(passages, num_thinking_steps=steps, batch_size=6)
    want_q = plain.encode_query(queries, num_thinking_steps=steps, batch_size=6)
    want_d = plain.encode_document(passages, num_thinking_steps=steps, batch_size=6)
    # Each soft token amplifies float rounding: the plain path's own difference between a query alone and
    # in a batch of 6 is 5e-7, 2e-5, 2e-4 and 2e-3 at K = 1, 2, 3, 5 on these queries. The cached prefix
    # differs from the plain path by about a tenth of that (3e-7, 1e-6, 1e-5, 2e-4).
    atol = {1: 1e-5, 2: 1e-5, 3: 1e-4, 5: 1e-3}[steps]
    assert_same_vectors(got_q, want_q, atol=atol)
    assert_same_vectors(got_d, want_d, atol=atol)
    assert len(cached[0].prefix_kv) == 2  # the query prefix and the document prefix


@pytest.mark.slow
def test_smollm2_query_prefix_is_the_chat_head_and_instruction(smollm2_models):
    cached, _ = smollm2_models
    module = cached[0]
    cached.eval()
    features = module.preprocess(["why is the sky blue", "a"], prompt=cached.prompts["query"])
    assert len(features["prefix_input_ids"]) == 41
    assert features["prefix_rows"].tolist() == [0, 1]
    decoded = module.tokenizer.decode(features["prefix_input_ids"])
    assert decoded.startswith("<|im_start|>system") and decoded.endswith("\nQuery:")


# -- batching and fallback -----------------------------------------------------------------------------


def test_batch_does_not_change_a_vector_with_the_cache(models):
    cached, _ = models
    alone = cached.encode_query(["a"])
    crowded = cached.encode_query(["a", DOCUMENTS[1] * 10, QUERIES[2] * 8], batch_size=3)[0]
    assert cosine(alone[0], crowded) >= 0.99999
    np.testing.assert_allclose(alone[0], crowded, rtol=0, atol=1e-5)


def test_a_row_whose_first_word_merges_across_the_boundary_takes_the_plain_path(models, monkeypatch):
    cached, plain = models
    module = cached[0]
    prompt = "Instruct: find it\nQuery: Photo"  # "Photo" + "synthesis" tokenizes differently from "Photo" alone
    texts = [" and light", "synthesis converts light", " why is the sky blue"]
    prefix_ids = module.tokenizer(module.prompt_prefix(prompt).rstrip())["input_ids"]
    merged = module.tokenizer(module.format_text(prompt + texts[1]))["input_ids"]
    assert merged[: len(prefix_ids)] != prefix_ids  # the fallback case really occurs

    cached.eval()
    features = module.preprocess(texts, prompt=prompt)
    assert features["prefix_rows"].tolist() == [0, 2]
    calls = count_paths(monkeypatch)
    vectors = cached.encode(texts, prompt=prompt, batch_size=3)
    assert calls == {"plain": 1, "prefix": 1}  # one batch, split into a prefix group and a plain group
    assert_same_vectors(vectors, plain.encode(texts, prompt=prompt, batch_size=3))
    alone = np.stack([cached.encode([text], prompt=prompt)[0] for text in texts])
    assert cosine(vectors, alone).min() >= 0.99999  # rows come back in their places


def test_rows_truncated_inside_the_prefix_take_the_plain_path(tiny_dirs, monkeypatch):
    folder = str(tiny_dirs["qwen3"])
    cached = load_model(folder, device="cpu", max_seq_length=8)
    plain = load_model(folder, device="cpu", max_seq_length=8, prefix_cache=False)
    calls = count_paths(monkeypatch)
    vectors = cached.encode_query(QUERIES[:2])
    assert calls == {"plain": 1, "prefix": 0}
    assert_same_vectors(vectors, plain.encode_query(QUERIES[:2]))


def test_pairs_keep_the_explicit_view(models):
    cached, plain = models
    mixed = [("short query", "A rationale.\n\nIt ends here."), "a plain latent query", ("why", "Sunlight scatters.")]
    assert_same_vectors(cached.encode_query(mixed, batch_size=3), plain.encode_query(mixed, batch_size=3))


def test_no_prompt_and_no_chat_template_means_no_prefix(tiny_dirs, monkeypatch):
    model = load_model(str(tiny_dirs["qwen3"]), chat_template=False, device="cpu")
    calls = count_paths(monkeypatch)
    model.encode_document(DOCUMENTS)
    assert calls == {"plain": 1, "prefix": 0}
    model.encode_query(QUERIES)  # the instruction alone is a prefix
    assert calls["prefix"] == 1


# -- switching off, training, unsupported models -------------------------------------------------------


def test_switched_off_takes_the_plain_path(tiny_dirs, monkeypatch):
    model = load_model(str(tiny_dirs["qwen3"]), device="cpu", prefix_cache=False)
    module = model[0]
    assert module.prefix_cache is False and "prefix_cache" not in module.get_config_dict()
    calls = count_paths(monkeypatch)
    model.encode_query(QUERIES)
    assert calls == {"plain": 1, "prefix": 0} and len(module.prefix_kv) == 0
    assert "prefix_rows" not in module.preprocess(QUERIES, prompt=model.prompts["query"])
    module.prefix_cache = True  # a runtime switch
    model.encode_query(QUERIES)
    assert calls["prefix"] == 1 and len(module.prefix_kv) == 1


def test_training_mode_and_autograd_take_the_plain_path(fresh, monkeypatch):
    module = fresh[0]
    fresh.eval()
    features = module.preprocess(QUERIES, prompt=fresh.prompts["query"])
    assert "prefix_rows" in features
    calls = count_paths(monkeypatch)
    with torch.enable_grad():  # eval mode, but autograd on (e.g. a loss evaluated in eval mode)
        output = module(dict(features))
    assert output["sentence_embedding"].requires_grad
    assert calls == {"plain": 1, "prefix": 0}
    fresh.train()
    try:
        assert "prefix_rows" not in module.preprocess(QUERIES, prompt=fresh.prompts["query"])
        with torch.no_grad():
            module(dict(features))
    finally:
        fresh.eval()
    assert calls == {"plain": 2, "prefix": 0} and len(module.prefix_kv) == 0


def test_sliding_window_models_take_the_plain_path():
    tokenizer = build_tokenizer()
    causal_lm = build_qwen3(len(tokenizer))
    assert supports_prefix_cache(causal_lm)
    causal_lm.config.layer_types = ["sliding_attention"] * causal_lm.config.num_hidden_layers
    causal_lm.config.sliding_window = 8
    assert not supports_prefix_cache(causal_lm)


def test_new_weights_are_a_new_key(fresh):
    module = fresh[0]
    before = fresh.encode_query(QUERIES[:1])
    with torch.no_grad():
        module.model.get_input_embeddings().weight.mul_(1.5)  # an in-place update bumps the version counter
    after = fresh.encode_query(QUERIES[:1])
    assert len(module.prefix_kv) == 2 and module.prefix_kv.misses == 2
    module.prefix_cache = False
    assert_same_vectors(after, fresh.encode_query(QUERIES[:1]))
    assert not np.allclose(before, after, atol=1e-3)


# -- the cache itself ----------------------------------------------------------------------------------


def test_cache_is_a_bounded_lru_with_documented_memory():
    tokenizer = build_tokenizer()
    causal_lm = build_qwen3(len(tokenizer))
    cache = PrefixCache(max_entries=2)
    a, b, c = [1, 2, 3], [4, 5], [6]
    first = cache.get(causal_lm, a)
    cache.get(causal_lm, b)
    assert cache.get(causal_lm, a) is first  # a hit, and now the most recent
    cache.get(causal_lm, c)  # evicts b, the least recently used
    assert len(cache) == 2 and (cache.hits, cache.misses) == (1, 3)
    assert cache.get(causal_lm, a) is first
    cache.get(causal_lm, b)
    assert cache.misses == 4 and len(cache) == 2
    config = causal_lm.config  # 2 x layers x kv_heads x head_dim x P x 4 bytes (float32)
    per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * 4
    assert cache.nbytes == per_token * (len(a) + len(b))
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0
    with pytest.raises(ValueError, match="max_entries"):
        PrefixCache(max_entries=0)


def test_cached_tensors_are_never_written(fresh):
    module = fresh[0]
    fresh.encode_query(QUERIES, batch_size=2)
    (entry,) = module.prefix_kv._entries.values()
    snapshot = [tensor.clone() for tensor in (*entry.prefix.keys, *entry.prefix.values)]
    fresh.encode_query(QUERIES, batch_size=4, num_thinking_steps=5)
    fresh.encode_query(QUERIES[:1])
    for kept, tensor in zip(snapshot, (*entry.prefix.keys, *entry.prefix.values), strict=True):
        assert torch.equal(kept, tensor) and tensor.shape[0] == 1


def test_threads_share_one_entry_and_get_identical_vectors(fresh):
    module = fresh[0]
    barrier, results, errors = threading.Barrier(8), [None] * 8, []

    def encode(index: int) -> None:
        try:
            barrier.wait()
            results[index] = fresh.encode_query(QUERIES, batch_size=2)
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=encode, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results[1:]:
        np.testing.assert_array_equal(result, results[0])
    assert len(module.prefix_kv) == 1 and module.prefix_kv.misses == 1
    module.prefix_cache = False
    assert_same_vectors(results[0], fresh.encode_query(QUERIES, batch_size=2))


def test_concurrent_async_calls_share_the_cache(fresh):
    from laser_integrations.langchain import LaSEREmbeddings

    embeddings = LaSEREmbeddings(fresh, batch_size=8)

    async def gather() -> list[list[float]]:
        return await asyncio.gather(*(embeddings.aembed_query(text) for text in QUERIES * 2))

    vectors = np.array(asyncio.run(gather()))
    expected = np.array([embeddings.embed_query(text) for text in QUERIES * 2])
    assert cosine(vectors, expected).min() >= 0.99999
    assert len(fresh[0].prefix_kv) == 1


def test_copies_and_pickles_start_with_an_empty_cache(fresh):
    fresh.encode_query(QUERIES[:1])
    module = fresh[0]
    assert len(module.prefix_kv) == 1
    copied = copy.deepcopy(module)
    assert len(copied.prefix_kv) == 0 and copied.prefix_cache
    restored = pickle.loads(pickle.dumps(module.prefix_kv))
    assert len(restored) == 0 and restored.max_entries == module.prefix_kv.max_entries


def test_without_prefix_keeps_each_remainder_left_padded():
    ids = torch.tensor([[0, 0, 7, 8, 9, 1], [7, 8, 9, 2, 3, 4]])
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    rest, rest_mask = without_prefix(ids, mask, 3)  # remainders [1] and [2, 3, 4]
    assert rest.tolist() == [[8, 9, 1], [2, 3, 4]]
    assert rest_mask.tolist() == [[0, 0, 1], [1, 1, 1]]
    with pytest.raises(ValueError, match="at least one token"):
        without_prefix(ids, mask, 4)


def test_prefix_needs_tokens():
    with pytest.raises(ValueError, match="at least one token"):
        compute_prefix_kv(build_qwen3(300), [])


def test_cached_vectors_equal_the_plain_path_text_by_text(models):
    """Each text alone and all together, queries and documents: unit vectors equal to the plain path's."""
    cached, plain = models
    texts = [*QUERIES, *DOCUMENTS, "why", "a longer question about why default list arguments keep growing"]
    for encode in ("encode_query", "encode_document"):
        together = getattr(cached, encode)(texts, batch_size=len(texts))
        alone = np.stack([getattr(cached, encode)([text])[0] for text in texts])
        expected = getattr(plain, encode)(texts, batch_size=len(texts))
        np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, rtol=0, atol=1e-6)
        assert cosine(together, expected).min() >= 0.99999
        assert cosine(alone, expected).min() >= 0.99999
    assert len(cached[0].prefix_kv) >= 1  # the cached path really ran
