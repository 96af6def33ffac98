"""``smollm2-laser``: a LoRA adapter shipped as package data, merged onto its base at load, cached, offline."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

import laser_integrations.loading as loading
from laser_integrations import load_model
from laser_integrations import shipped as shipped_module
from laser_integrations.backbone import ModelLoadError
from laser_integrations.provenance import model_name
from laser_integrations.training import train
from test_training_run import tiny_config

TEXTS = ["why is the sky blue", "Python evaluates default arguments once.", "Photosynthesis stores light energy."]
ROWS = [
    {"query": f"about {topic}", "rationale": f"It is {topic}.\n\nSo {topic}.", "positive": text, "negative": ""}
    for topic, text in [("sky", TEXTS[0]), ("python", TEXTS[1]), ("plants", TEXTS[2]), ("digits", "0123456789")]
]
for index, row in enumerate(ROWS):
    row["negative"] = ROWS[(index + 1) % len(ROWS)]["positive"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LASER_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(shipped_module, "ADAPTERS_ROOT", tmp_path / "adapters")


def vectors(model):
    return np.concatenate([model.encode_query(TEXTS[:1]), model.encode_document(TEXTS[1:])])


def peft_merged(base, adapter, folder):
    """The reference: peft's own ``merge_and_unload`` of ``adapter`` onto ``base``, saved and loaded as a model."""
    merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(adapter)).merge_and_unload()
    merged.save_pretrained(folder)
    AutoTokenizer.from_pretrained(base).save_pretrained(folder)
    return load_model(str(folder), device="cpu")


def min_cosine(a, b):
    return float(min(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_an_unshipped_adapter_is_a_clear_error_naming_the_training_script(offline, monkeypatch):
    def no_base():
        raise AssertionError("the base must not be loaded (or dequantized) before the adapter is found")

    monkeypatch.setattr(loading, "demo_checkpoint", no_base)
    with pytest.raises(ModelLoadError, match=r"'smollm2-laser' has not been trained and shipped.*train_demo_model"):
        load_model("smollm2-laser", device="cpu")
    with pytest.raises(ModelLoadError, match="has not been trained"):
        load_model("SmolLM2-LaSER", device="cpu")


def test_the_shipped_adapter_loads_offline_and_equals_a_peft_merged_reference(
    tiny_dirs, tmp_path, offline, monkeypatch
):
    base = str(tiny_dirs["qwen3"])
    config = tiny_config(tiny_dirs, tmp_path, max_steps=2, merge=False, lora_r=4, lora_alpha=8)
    trained = train(config, train_dataset=ROWS)
    shipped = tmp_path / "adapters" / "smollm2-laser"
    shipped.mkdir(parents=True)
    for name in shipped_module.ADAPTER_FILES:  # what train_demo_model.sh copies into the package data
        shutil.copy(tmp_path / "trained" / name, shipped / name)
    monkeypatch.setattr(loading, "demo_checkpoint", lambda *args: base)

    model = load_model("smollm2-laser", device="cpu")
    assert model_name(model) == "smollm2-laser"

    reference = peft_merged(base, shipped, tmp_path / "reference")
    untrained = load_model(base, device="cpu")
    assert min_cosine(vectors(model), vectors(reference)) >= 0.99999
    assert min_cosine(vectors(model), vectors(trained)) >= 0.99999
    assert min_cosine(vectors(model), vectors(untrained)) < 0.9999  # the adapter did change the model

    def no_merge(*args, **kwargs):
        raise AssertionError("a cached merge must not load the base weights again")

    monkeypatch.setattr(shipped_module, "load_causal_lm", no_merge)
    again = load_model("smollm2-laser", device="cpu")  # from the cached merge (its load time: RESULTS.md)
    np.testing.assert_allclose(vectors(again), vectors(model), rtol=0, atol=1e-6)


def test_lora_variants_the_merge_does_not_reproduce_are_refused():
    import torch

    layer = torch.nn.Sequential(torch.nn.Linear(2, 2))
    weights = {"base_model.model.0.lora_A.weight": torch.ones(1, 2)}
    weights["base_model.model.0.lora_B.weight"] = torch.ones(2, 1)
    with pytest.raises(ModelLoadError, match="use_dora"):
        shipped_module.merge_lora(layer, weights, {"r": 1, "lora_alpha": 1, "use_dora": True})
    with pytest.raises(ModelLoadError, match="no LoRA weights"):
        shipped_module.merge_lora(layer, {}, {"r": 1, "lora_alpha": 1})


def test_an_adapter_of_the_real_shapes_merges_onto_smollm2_like_peft_in_the_callers_cache(
    smollm2_dir, tmp_path, monkeypatch
):
    """The merge on the real SmolLM2 (every projection of every layer, as ``laser train`` attaches LoRA), in the
    ``laser_cache_dir`` the caller names, gives the vectors of peft's own merge of the same adapter."""
    from peft import LoraConfig, get_peft_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(shipped_module, "ADAPTERS_ROOT", tmp_path / "adapters")
    monkeypatch.setattr(loading, "demo_checkpoint", lambda *args: str(smollm2_dir))
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)  # random A and B
    shipped = tmp_path / "adapters" / "smollm2-laser"
    get_peft_model(AutoModelForCausalLM.from_pretrained(smollm2_dir), config).save_pretrained(shipped)
    cache = tmp_path / "laser-cache"

    model = load_model("smollm2-laser", device="cpu", laser_cache_dir=str(cache))
    assert model_name(model) == "smollm2-laser"
    assert len(list((cache / "merged").iterdir())) == 1  # merged where the caller said, not in ~/.cache

    reference = peft_merged(smollm2_dir, shipped, tmp_path / "reference")
    assert min_cosine(vectors(model), vectors(reference)) >= 0.99999
    untrained = load_model(str(smollm2_dir), device="cpu")
    assert min_cosine(vectors(model), vectors(untrained)) < 0.999  # the adapter was applied
