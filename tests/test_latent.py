"""The fast latent loop against a slow reference written straight from the spec (section 1)."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F

from laser_integrations.latent import explicit_view, latent_thinking

from tiny import MIXED_LENGTH_TEXTS as TEXTS
from tiny import build_qwen3, reference_embedding


def encode_batch(tokenizer, texts):
    return tokenizer(texts, padding=True, return_tensors="pt")


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_fast_loop_matches_slow_reference_on_mixed_lengths(causal_lm, tokenizer, steps):
    batch = encode_batch(tokenizer, TEXTS)
    with torch.no_grad():
        fast = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], steps)
    reference = torch.stack([reference_embedding(causal_lm, tokenizer(text)["input_ids"], steps) for text in TEXTS])
    torch.testing.assert_close(fast.embedding, reference, rtol=0, atol=1e-5)
    assert fast.states.shape == (len(TEXTS), steps, causal_lm.config.hidden_size)
    assert torch.allclose(fast.embedding.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-6)


def test_one_step_is_plain_last_token_pooling(causal_lm, tokenizer):
    for text in TEXTS:
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            pooled = causal_lm(**ids, output_hidden_states=True).hidden_states[-1][:, -1]
            latent = latent_thinking(causal_lm, ids["input_ids"], ids["attention_mask"], 1)
        torch.testing.assert_close(latent.embedding, F.normalize(pooled, dim=-1), rtol=0, atol=1e-6)


def test_vector_does_not_depend_on_the_batch_it_rides_in(causal_lm, tokenizer):
    long_texts = [TEXTS[1] * 6, TEXTS[3] * 5]
    with torch.no_grad():
        alone = latent_thinking(causal_lm, *encode_batch(tokenizer, [TEXTS[0]]).values(), 3).embedding
        batch = encode_batch(tokenizer, [*long_texts, TEXTS[0]])
        assert batch["attention_mask"][-1].sum() < batch["attention_mask"].shape[1] // 4  # heavily left padded
        inside = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3).embedding[-1]
    assert F.cosine_similarity(alone[0], inside, dim=0) >= 0.99999


def test_more_steps_change_the_vector(causal_lm, tokenizer):
    batch = encode_batch(tokenizer, TEXTS[:2])
    with torch.no_grad():
        one = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 1).embedding
        three = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3).embedding
    assert (one - three).abs().max() > 1e-3


def test_top_tokens_are_the_reference_distributions(causal_lm, tokenizer):
    ids = tokenizer(TEXTS[0], return_tensors="pt")
    with torch.no_grad():
        output = latent_thinking(causal_lm, ids["input_ids"], ids["attention_mask"], 2, top_k=4)
        first = torch.softmax(causal_lm(**ids).logits[0, -1].float(), dim=-1).topk(4)
    assert output.top_token_ids.shape == (1, 2, 4)
    assert output.top_token_ids[0, 0].tolist() == first.indices.tolist()
    torch.testing.assert_close(output.top_token_probs[0, 0], first.values, rtol=0, atol=1e-6)


def test_gradients_flow_through_the_thinking_steps(tokenizer):
    causal_lm = build_qwen3(len(tokenizer)).train()
    batch = encode_batch(tokenizer, TEXTS[:2])
    latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3).embedding.sum().backward()
    assert causal_lm.get_input_embeddings().weight.grad.abs().sum() > 0


def test_right_padding_is_refused(causal_lm, tokenizer):
    tokenizer.padding_side = "right"
    try:
        batch = encode_batch(tokenizer, TEXTS[:2])
    finally:
        tokenizer.padding_side = "left"
    with pytest.raises(ValueError, match="left padding"):
        latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3)


@pytest.mark.parametrize("steps", [0, -2])
def test_bad_step_counts_are_refused(causal_lm, tokenizer, steps):
    batch = encode_batch(tokenizer, TEXTS[:1])
    with pytest.raises(ValueError, match="num_thinking_steps must be >= 1"):
        latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], steps)


def test_explicit_view_is_the_final_state_and_gathers_trajectory(causal_lm, tokenizer):
    texts = [TEXTS[0] + "<|endoftext|>", TEXTS[3] + "<|endoftext|>"]
    batch = encode_batch(tokenizer, texts)
    positions = torch.tensor([[-1, -2], [-3, -1]]) + batch["input_ids"].shape[1]
    with torch.no_grad():
        output = explicit_view(causal_lm, batch["input_ids"], batch["attention_mask"], positions)
        for row, text in enumerate(texts):
            ids = tokenizer(text, return_tensors="pt")
            hidden = causal_lm(**ids, output_hidden_states=True).hidden_states[-1][0]
            torch.testing.assert_close(output.embedding[row], F.normalize(hidden[-1], dim=-1), rtol=0, atol=1e-5)
            offset = ids["input_ids"].shape[1] - batch["input_ids"].shape[1]
            for k, column in enumerate(positions[row].tolist()):
                torch.testing.assert_close(output.trajectory[row, k], hidden[column + offset], rtol=0, atol=1e-5)


def test_half_precision_runs_unchanged_and_stays_close(causal_lm, tokenizer):
    batch = encode_batch(tokenizer, TEXTS)
    with torch.no_grad():
        full = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3)
        half = latent_thinking(causal_lm.to(torch.bfloat16), batch["input_ids"], batch["attention_mask"], 3)
    causal_lm.to(torch.float32)
    assert half.embedding.dtype == torch.float32 and half.states.dtype == torch.bfloat16
    assert F.cosine_similarity(full.embedding, half.embedding).min() > 0.99


def test_activation_checkpointing_recomputes_instead_of_caching(tokenizer):
    causal_lm = build_qwen3(len(tokenizer))
    batch = encode_batch(tokenizer, TEXTS)
    with torch.no_grad():
        cached = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3)
    enable = getattr(causal_lm, "activation_checkpointing_enable", None) or causal_lm.gradient_checkpointing_enable
    enable()
    causal_lm.train()  # transformers drops the KV cache here; the loop must still give the same vectors
    recomputed = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3, top_k=2)
    torch.testing.assert_close(recomputed.embedding, cached.embedding, rtol=0, atol=1e-5)
    recomputed.embedding.sum().backward()
    assert causal_lm.get_input_embeddings().weight.grad.abs().sum() > 0


class _RenamedCacheBackbone(torch.nn.Module):
    """A backbone with transformers 5.24's signature (``cache=`` in, ``.cache`` out) over an older one's, so both
    names of the KV-cache argument are exercised whichever transformers is installed."""

    def __init__(self, backbone: torch.nn.Module, old_name: str) -> None:
        super().__init__()
        self.inner, self.old_name = backbone, old_name
        self.seen: list[str] = []

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None, cache=None,
                use_cache=None):  # fmt: skip
        self.seen.append("cache" if cache is not None else "none")
        output = self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            inputs_embeds=inputs_embeds, use_cache=use_cache, **{self.old_name: cache})  # fmt: skip
        return types.SimpleNamespace(last_hidden_state=output.last_hidden_state, cache=getattr(output, self.old_name))


class _CausalLMWithBackbone(torch.nn.Module):
    def __init__(self, causal_lm, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.causal_lm, self.base_model, self.config = causal_lm, backbone, causal_lm.config

    def get_input_embeddings(self):
        return self.causal_lm.get_input_embeddings()

    def get_output_embeddings(self):
        return self.causal_lm.get_output_embeddings()


def test_the_loop_passes_the_kv_cache_under_the_name_the_backbone_takes(causal_lm, tokenizer):
    from laser_integrations.latent import cache_keyword

    installed = cache_keyword(causal_lm.base_model)
    renamed = _RenamedCacheBackbone(causal_lm.base_model, installed)
    wrapped = _CausalLMWithBackbone(causal_lm, renamed).eval()
    assert cache_keyword(renamed) == "cache"
    batch = encode_batch(tokenizer, TEXTS)
    with torch.no_grad():
        expected = latent_thinking(causal_lm, batch["input_ids"], batch["attention_mask"], 3).embedding
        got = latent_thinking(wrapped, batch["input_ids"], batch["attention_mask"], 3).embedding
    assert renamed.seen == ["none", "cache", "cache"]  # the prefill, then two steps on the cache
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
