"""The rule that picks a latent loop, and every loop it can pick against the spec's slow reference."""

from __future__ import annotations

import pytest
import torch

from laser_integrations import latent_loops
from laser_integrations.fast_path import clear_fast_path_cache, latent_thinking_static
from laser_integrations.latent import latent_thinking, latent_thinking_after_prefix
from laser_integrations.latent_loops import LoopChoice, choose_latent_loop, run_latent_loop
from laser_integrations.prefix_cache import PrefixCache, compute_prefix_kv

from tiny import MIXED_LENGTH_TEXTS as TEXTS
from tiny import build_qwen3, reference_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PREFIX = "Instruct: Given a query\nQuery:"


def choose(causal_lm, **switches) -> LoopChoice:
    return choose_latent_loop(causal_lm, **{"fast_path": True, "prefix_cache": True, "prefix_rows": True, **switches})


def test_the_rule_picks_each_loop_for_its_documented_reason(causal_lm, monkeypatch):
    with torch.no_grad():
        assert choose(causal_lm).loop == "prefix_cache"  # CPU weights: the fast path is not available
        assert choose(causal_lm, prefix_rows=False) == LoopChoice("plain", "no row starts with the prompt prefix")
        assert choose(causal_lm, prefix_cache=False) == LoopChoice("plain", "the prefix cache is switched off")
        monkeypatch.setattr(latent_loops, "fast_path_available", lambda model: True)
        assert choose(causal_lm).loop == "fast_path"  # rule 1 wins over the prefix cache
        assert choose(causal_lm, prefix_cache=False, prefix_rows=False).loop == "fast_path"
        assert choose(causal_lm, fast_path=False).loop == "prefix_cache"  # the switch turns it off
        monkeypatch.undo()
        causal_lm.train()
        try:
            training = choose(causal_lm)
        finally:
            causal_lm.eval()
        assert training.loop == "plain" and "training" in training.reason
    autograd = choose(causal_lm)  # eval mode, but autograd on
    assert autograd.loop == "plain" and "autograd" in autograd.reason


def test_models_that_cannot_take_a_cached_prefix_get_the_plain_loop():
    causal_lm = build_qwen3(300)
    causal_lm.config.layer_types = ["sliding_attention"] * causal_lm.config.num_hidden_layers
    causal_lm.config.sliding_window = 8
    with torch.no_grad():
        choice = choose(causal_lm)
    assert choice.loop == "plain" and "cannot take a cached prefix" in choice.reason


def test_the_module_reports_the_loop_it_runs(tiny_model):
    module = tiny_model[0]
    with torch.no_grad():
        assert module.latent_loop().loop == "prefix_cache" and module.uses_prefix_cache()
        module.prefix_cache = False
        try:
            assert module.latent_loop() == LoopChoice("plain", "the prefix cache is switched off")
            assert not module.uses_prefix_cache()
        finally:
            module.prefix_cache = True


@pytest.mark.parametrize("loop", ["plain", "prefix_cache", "fast_path"])
@pytest.mark.parametrize("steps", [1, 3, 5])
def test_every_loop_equals_the_slow_reference(causal_lm, tokenizer, loop, steps):
    prefix = tokenizer(PREFIX)["input_ids"]
    texts = [prefix + tokenizer(" " + text)["input_ids"] for text in TEXTS]
    texts.append(tokenizer("no prefix here at all")["input_ids"])  # the prefix loop sends this row to plain
    batch = tokenizer.pad({"input_ids": texts}, return_tensors="pt")
    with torch.no_grad():
        got = run_latent_loop(
            LoopChoice(loop, "under test"),
            causal_lm,
            batch["input_ids"],
            batch["attention_mask"],
            steps,
            prefix_kv=PrefixCache(),
            prefix_ids=torch.tensor(prefix),
            prefix_rows=torch.arange(len(TEXTS)),
        )
    clear_fast_path_cache(causal_lm)
    reference = torch.stack([reference_embedding(causal_lm, ids, steps) for ids in texts])
    torch.testing.assert_close(got.embedding, reference, rtol=0, atol=1e-5)
    assert got.states.shape == (len(texts), steps, causal_lm.config.hidden_size)


def test_the_prefix_loop_needs_its_prefix(causal_lm, tokenizer):
    batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    with pytest.raises(ValueError, match="needs prefix_kv, prefix_ids and prefix_rows"):
        run_latent_loop(LoopChoice("prefix_cache", "x"), causal_lm, batch["input_ids"], batch["attention_mask"], 3)


def test_all_three_loops_refuse_right_padding_with_one_message(causal_lm, tokenizer):
    tokenizer.padding_side = "right"
    try:
        batch = tokenizer(TEXTS[:2], padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "left"
    ids, mask = batch["input_ids"], batch["attention_mask"]
    prefix = compute_prefix_kv(causal_lm, tokenizer(PREFIX)["input_ids"]).for_batch(2, causal_lm.config)
    loops = {
        "plain": lambda: latent_thinking(causal_lm, ids, mask, 3),
        "prefix_cache": lambda: latent_thinking_after_prefix(causal_lm, prefix, ids, mask, 3),
        "fast_path": lambda: latent_thinking_static(causal_lm, ids, mask, 3),
    }
    for name, run in loops.items():
        with torch.no_grad(), pytest.raises(ValueError, match="latent_thinking needs left padding") as raised:
            run()
        assert "last column of attention_mask must be all ones" in str(raised.value), name
