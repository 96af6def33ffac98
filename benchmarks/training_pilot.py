"""Pilot for the issue-20 ablation: seconds per training step on SmolLM2, per arm and setting, and the eval cost.

Runs ``laser_integrations.training.train`` (the code ``laser train`` runs) for a few steps per (arm, batch,
max sequence length, LoRA rank[, bf16]) on rows of the training set built by scripts/build_training_set.py,
timing each optimizer step with a trainer callback (the first step, which allocates the optimizer state, is
left out). Then it times the latent-view encoding of held-out passages, which bounds the evaluation cost.
Writes a JSON file; the ablation budget in /work/notes/training-RESULTS.md is computed from it.

    python scripts/build_training_set.py -o laser-output/training-set
    python benchmarks/training_pilot.py --data laser-output/training-set --threads 2 \\
        --settings 4x128xr8 8x128xr8 4x256xr16 --bf16-settings 8x128xr8 --output laser-output/pilot.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from laser_integrations import load_model
from laser_integrations.backbone import cpu_bf16_features
from laser_integrations.loading import demo_checkpoint
from laser_integrations.training import TrainConfig, train
from laser_integrations.training.recipe import load_training_data

ARMS = {"laser": {}, "contrastive": {"explicit_view": False}}


class StepTimer(TrainerCallback):
    """Wall time and this process's CPU time per optimizer step. On a machine shared with other jobs, CPU time
    at one thread approximates the wall time of the same step on a quiet core."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._started = (0.0, 0.0)

    def on_step_begin(self, args, state, control, **kwargs):
        self._started = (time.perf_counter(), time.process_time())

    def on_step_end(self, args, state, control, **kwargs):
        self.seconds.append(time.perf_counter() - self._started[0])
        self.cpu_seconds.append(time.process_time() - self._started[1])


def parse_setting(text: str) -> dict[str, int]:
    """``8x128xr16`` -> batch 8, max sequence length 128, LoRA rank 16."""
    batch, length, rank = text.lower().split("x")
    return {"batch": int(batch), "max_seq_length": int(length), "lora_r": int(rank.removeprefix("r"))}


def time_steps(base: str, rows, setting: dict[str, int], arm: str, steps: int, bf16: bool) -> dict:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as scratch:
        config = TrainConfig(
            model=base,
            output_dir=scratch,
            max_steps=steps,
            per_device_train_batch_size=setting["batch"],
            gradient_accumulation_steps=1,
            max_seq_length=setting["max_seq_length"],
            max_explicit_length=2 * setting["max_seq_length"],
            lora_r=setting["lora_r"],
            lora_alpha=2 * setting["lora_r"],
            save_steps=10**6,
            logging_steps=1,
            merge=False,
            device="cpu",
            bf16=bf16,
            **ARMS[arm],
        )
        train(config, train_dataset=rows.select(range(setting["batch"] * steps)), callbacks=[timer])
    measured = timer.seconds[1:] or timer.seconds
    cpu = timer.cpu_seconds[1:] or timer.cpu_seconds
    return {
        "arm": arm,
        **setting,
        "bf16": bf16,
        "steps_timed": len(measured),
        "seconds_per_step_median": statistics.median(measured),
        "seconds_per_step_min": min(measured),
        "cpu_seconds_per_step_median": statistics.median(cpu),
        "seconds": measured,
        "cpu_seconds": cpu,
    }


def time_encoding(base: str, passages: list[str], max_seq_length: int, steps: int) -> dict:
    model = load_model(base, device="cpu", dtype="float32", max_seq_length=max_seq_length, num_thinking_steps=steps)
    model.encode_document(passages[:4], batch_size=16)  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    model.encode_document(passages, batch_size=16)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    return {"passages": len(passages), "max_seq_length": max_seq_length, "K": steps, "seconds": seconds,
            "cpu_seconds": cpu_seconds}  # fmt: skip


def time_shipped_load(scratch: Path) -> dict:
    """Load time of ``smollm2-laser`` (first: merge and cache; then: cached), with a random rank-16 adapter
    standing in for the trained one (same shapes, so the same cost), in a scratch adapters folder and cache."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    import laser_integrations.shipped as shipped

    adapters = scratch / "adapters"
    lora = LoraConfig(
        r=16, lora_alpha=32, target_modules=list(TrainConfig().lora_target_modules), init_lora_weights=False
    )
    get_peft_model(AutoModelForCausalLM.from_pretrained(demo_checkpoint()), lora).save_pretrained(
        adapters / "smollm2-laser"
    )
    shipped.ADAPTERS_ROOT = adapters
    os.environ["LASER_CACHE"] = str(scratch / "cache")
    os.environ["HF_HUB_OFFLINE"] = "1"
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        load_model("smollm2-laser", device="cpu", dtype="float32")
        seconds.append(time.perf_counter() - started)
    size = (adapters / "smollm2-laser" / "adapter_model.safetensors").stat().st_size
    return {"first_load_seconds": seconds[0], "cached_load_seconds": seconds[1:], "adapter_bytes_r16": size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="the folder scripts/build_training_set.py wrote")
    parser.add_argument("--settings", nargs="+", default=["4x128xr8", "8x128xr8", "4x256xr16"])
    parser.add_argument("--bf16-settings", nargs="*", default=["8x128xr8"], help="also timed with bf16 autocast")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--steps", type=int, default=4, help="steps per run; the first is not timed (4)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encode-passages", type=int, default=64)
    parser.add_argument("--output", default="laser-output/training-pilot.json")
    parser.add_argument("--shipped-load-only", action="store_true", help="only time loading smollm2-laser")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.shipped_load_only:
        with tempfile.TemporaryDirectory() as scratch:
            print(json.dumps(time_shipped_load(Path(scratch))))
        return 0
    base = demo_checkpoint()
    data = Path(args.data)
    rows = load_training_data(str(data / "train.jsonl"))
    runs = []
    plans = [(setting, False) for setting in args.settings]
    if cpu_bf16_features():
        plans += [(setting, True) for setting in args.bf16_settings]
    for text, bf16 in plans:
        for arm in args.arms:
            result = time_steps(base, rows, parse_setting(text), arm, args.steps, bf16)
            runs.append(result)
            print(json.dumps({k: v for k, v in result.items() if k not in ("seconds", "cpu_seconds")}), flush=True)
    passages = [json.loads(line)["text"] for line in (data / "heldout" / "corpus.jsonl").read_text().splitlines()]
    encoding = [time_encoding(base, passages[: args.encode_passages], 256, 3)]
    print(json.dumps(encoding[0]), flush=True)
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
        "cpu_bf16": cpu_bf16_features(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "runs": runs,
        "encoding": encoding,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
