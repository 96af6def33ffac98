"""End-to-end LaSER training on a tiny model: the loss goes down, the model saves, reloads, merges and encodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, TrainerCallback

from laser_integrations import load_model
from laser_integrations.backbone import cpu_bf16_features
from laser_integrations.cli import build_parser
from laser_integrations.training import TrainConfig, merge_adapters, train
from laser_integrations.training.recipe import last_checkpoint

TOPICS = [
    ("sky", "Rayleigh scattering makes the sky blue."),
    ("python", "Python evaluates default arguments once."),
    ("plants", "Photosynthesis stores light energy in glucose."),
    ("numbers", "0123456789 are the ten digits."),
    ("brackets", "Brackets ()[]{}<> group symbols."),
    ("letters", "abcdefghijklmnopqrstuvwxyz is the alphabet."),
    ("ideas", "First idea. Second idea. Third idea."),
    ("tokens", "user assistant system the a of and."),
]
QUERIES = ["why is the sky blue", "what does photosynthesis produce"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def synthetic_rows():
    rows = []
    for index, (topic, passage) in enumerate(TOPICS):
        other = TOPICS[(index + 3) % len(TOPICS)][1]
        rationale = f"The question is about {topic}.\n\nRecall: {passage}\n\nSo the answer is about {topic}."
        query = f"tell me about {topic}"
        rows.append({"query": query, "rationale": rationale, "positive": passage, "negative": other})
    return rows


def tiny_config(tiny_dirs, tmp_path, **overrides):
    values = dict(
        model=str(tiny_dirs["qwen3"]),
        output_dir=str(tmp_path / "trained"),
        lora_r=8,
        lora_alpha=16,
        lora_dropout=0.0,
        learning_rate=5e-3,
        warmup_ratio=0.0,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        logging_steps=1,
        save_steps=10_000,
        device="cpu",
    )
    return TrainConfig(**{**values, **overrides})


def embed(model):
    return model.encode_query(QUERIES), model.encode_document([passage for _, passage in TOPICS[:3]])


def test_thirty_steps_lower_the_loss_and_the_saved_model_reloads(tiny_dirs, tmp_path):
    # Full fine-tuning: a random 64-wide model first flattens its scores (the KL terms fall fastest), then learns.
    config = tiny_config(tiny_dirs, tmp_path, max_steps=30, lora=False, learning_rate=2e-3)
    model = train(config, train_dataset=synthetic_rows())

    history = json.loads((tmp_path / "trained" / "trainer_state.json").read_text())["log_history"]
    logs = [entry for entry in history if "loss" in entry]
    assert len(logs) == 30
    assert {"loss_latent", "loss_explicit", "loss_output_kl", "loss_trajectory_kl"} <= set(logs[0])

    def mean(term, entries):
        return np.mean([entry[term] for entry in entries])

    assert mean("loss", logs[-5:]) < 0.5 * mean("loss", logs[:5])
    assert mean("loss_output_kl", logs[-5:]) < 0.5 * mean("loss_output_kl", logs[:5])
    chance = np.log(4 * 2)  # InfoNCE of a uniform guess over the B*G = 8 candidates
    assert mean("loss_latent", logs[-5:]) < 0.8 * chance < mean("loss_latent", logs[:5])
    assert mean("loss_explicit", logs[-5:]) < 0.8 * chance

    saved = tmp_path / "trained"
    AutoModelForCausalLM.from_pretrained(saved)  # a plain causal-LM checkpoint, like the released ones
    reloaded = load_model(str(saved), device="cpu")
    for before, after in zip(embed(model), embed(reloaded), strict=True):
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    untrained = load_model(str(tiny_dirs["qwen3"]), device="cpu")
    assert not np.allclose(embed(untrained)[0], embed(reloaded)[0], atol=1e-3)


def test_adapters_save_reload_and_merge_to_the_same_vectors(tiny_dirs, tmp_path):
    config = tiny_config(tiny_dirs, tmp_path, max_steps=2, merge=False)
    model = train(config, train_dataset=synthetic_rows())
    saved = tmp_path / "trained"
    assert (saved / "adapter_config.json").is_file() and (saved / "laser_config.json").is_file()
    assert not (saved / "model.safetensors").exists()  # adapters only; the base comes from adapter_config.json
    trained = embed(model)

    reloaded = load_model(str(saved), device="cpu")
    for before, after in zip(trained, embed(reloaded), strict=True):
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)

    for name, source in (("merged-in-memory", model), ("merged-after-reload", reloaded)):
        merge_adapters(source).save(str(tmp_path / name))
        assert not (tmp_path / name / "adapter_config.json").exists()
        AutoModelForCausalLM.from_pretrained(tmp_path / name)
        for before, after in zip(trained, embed(load_model(str(tmp_path / name), device="cpu")), strict=True):
            np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="no adapters"):
        merge_adapters(reloaded)


def test_laser_train_command_with_the_recipe_defaults_from_jsonl(tiny_dirs, tmp_path):
    data = tmp_path / "rows.jsonl"
    rows = [{**row, "reasoning_path": row.pop("rationale")} for row in synthetic_rows()]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    parser = build_parser()
    args = parser.parse_args(
        ["train", str(data), "--model", str(tiny_dirs["qwen3"]), "-o", str(tmp_path / "out"), "--max-steps", "2"]
        + ["--per-device-train-batch-size", "4", "--device", "cpu", "--num-thinking-steps", "2", "--lora-r", "8"]
        + ["--columns", "rationale=reasoning_path", "--lora-target-modules", "q_proj,v_proj"]
    )
    recipe = {"lora": True, "lora_alpha": 32, "merge": True, "group_size": 2, "learning_rate": 1e-4, "bf16": None}
    assert {key: getattr(args, key) for key in recipe} == recipe
    assert args.lora_target_modules == ["q_proj", "v_proj"] and args.columns == {"rationale": "reasoning_path"}
    assert parser.parse_args(["train", "x.jsonl", "--no-lora"]).lora is False

    assert args.run(args) == 0
    assert not (tmp_path / "out" / "adapter_config.json").exists()  # merged by default
    trained = load_model(str(tmp_path / "out"), device="cpu")
    assert trained[0].num_thinking_steps == 2
    assert trained.encode_query(QUERIES).shape == (2, 64)


def test_bad_recipe_values_fail_before_training(tiny_dirs, tmp_path, monkeypatch):
    rows = synthetic_rows()
    monkeypatch.setattr("laser_integrations.backbone.cpu_bf16_features", lambda: [])  # a CPU without native bf16
    with pytest.raises(ValueError, match="bf16 training needs a CUDA GPU or a CPU with native bf16"):
        train(tiny_config(tiny_dirs, tmp_path, bf16=True), train_dataset=rows)
    with pytest.raises(ValueError, match="row 0 has 1 negative passage"):
        train(tiny_config(tiny_dirs, tmp_path, group_size=3), train_dataset=rows)


class KilledAfter(TrainerCallback):
    """Stands for a kill -9 between two checkpoints: the run dies after ``step`` without saving it."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise RuntimeError("killed")


class StepsRun(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


NATIVE_BF16 = pytest.mark.skipif(not cpu_bf16_features(), reason="this CPU has no native bf16")


@pytest.mark.parametrize("bf16", [False, pytest.param(True, marks=NATIVE_BF16)], ids=["float32", "bf16"])
def test_a_killed_run_resumes_from_its_last_checkpoint_and_ends_at_the_same_loss(tiny_dirs, tmp_path, bf16):
    rows = synthetic_rows()
    options = dict(max_steps=6, save_steps=2, lora_dropout=0.1, per_device_train_batch_size=2, merge=False, bf16=bf16)
    straight = train(tiny_config(tiny_dirs, tmp_path / "straight", **options), train_dataset=rows)

    resumed_config = tiny_config(tiny_dirs, tmp_path / "resumed", **options)
    with pytest.raises(RuntimeError, match="killed"):
        train(resumed_config, train_dataset=rows, callbacks=[KilledAfter(5)])
    checkpoints = tmp_path / "resumed" / "trained" / "checkpoints"
    assert last_checkpoint(checkpoints) == str(checkpoints / "checkpoint-4")
    (checkpoints / "checkpoint-6").mkdir()  # a save cut short: no trainer_state.json, so not a checkpoint
    assert last_checkpoint(checkpoints) == str(checkpoints / "checkpoint-4")
    (checkpoints / "checkpoint-6").rmdir()
    steps_run = StepsRun()
    resumed = train(resumed_config, train_dataset=rows, callbacks=[steps_run])
    assert steps_run.steps == [5, 6]  # continued after checkpoint-4 instead of starting over

    def logs(folder):
        history = json.loads((folder / "trained" / "trainer_state.json").read_text())["log_history"]
        return {entry["step"]: entry for entry in history if "loss" in entry}

    straight_logs, resumed_logs = logs(tmp_path / "straight"), logs(tmp_path / "resumed")
    assert sorted(resumed_logs) == list(range(1, 7))
    for term in ("loss", "loss_latent", "loss_explicit", "loss_output_kl", "loss_trajectory_kl"):
        assert resumed_logs[6][term] == pytest.approx(straight_logs[6][term], abs=1e-5)
    for before, after in zip(embed(straight), embed(resumed), strict=True):
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-5)
    assert not np.allclose(resumed_logs[6]["loss"], resumed_logs[1]["loss"], atol=1e-3)  # it did train


def test_no_resume_starts_over(tiny_dirs, tmp_path):
    config = tiny_config(tiny_dirs, tmp_path, max_steps=2, save_steps=1, merge=False, resume=False)
    train(config, train_dataset=synthetic_rows())
    steps_run = StepsRun()
    train(config, train_dataset=synthetic_rows(), callbacks=[steps_run])
    assert steps_run.steps == [1, 2]
    history = json.loads((tmp_path / "trained" / "trainer_state.json").read_text())["log_history"]
    assert [entry["step"] for entry in history if "loss" in entry] == [1, 2]


@NATIVE_BF16
def test_bf16_autocast_trains_on_a_cpu_with_native_bf16(tiny_dirs, tmp_path):
    model = train(tiny_config(tiny_dirs, tmp_path, max_steps=2, bf16=True), train_dataset=synthetic_rows())
    history = json.loads((tmp_path / "trained" / "trainer_state.json").read_text())["log_history"]
    assert [np.isfinite(entry["loss"]) for entry in history if "loss" in entry] == [True, True]
    assert np.isfinite(embed(model)[0]).all()
