"""``laser rationales`` and ``laser train``: training data and the released recipe.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser")
>>> register(parser.add_subparsers(dest="command"))
>>> parser.parse_args(["train", "data.jsonl", "--lora-r", "16"]).lora_r
16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from laser_integrations.cli.options import UserError, add_device_options, print_dtype_choice
from laser_integrations.training.recipe import TrainConfig

TRAIN_HELP = {
    "model": "backbone: a causal LM (Hub id, folder, .gguf, smollm2) or a LaSER model",
    "output_dir": "where the trained model is saved",
    "columns": "raw field=column pairs, e.g. rationale=reasoning_path,negative=negative_passages",
    "group_size": "passages per query: 1 positive + G-1 hard negatives",
    "teacher": "online (co-learning, default) or frozen (the 'no co-learning' ablation)",
    "teacher_model": "the fixed teacher for --teacher frozen (default: the backbone without its adapters)",
    "explicit_view": "--no-explicit-view: pure latent contrastive learning (ablation)",
    "lora": "--no-lora: full fine-tuning",
    "merge": "--no-merge: save the LoRA adapters instead of merged weights",
    "lora_target_modules": "comma-separated module names",
    "resume": "continue a killed run from the last checkpoint in OUTPUT_DIR/checkpoints (default: on)",
    "bf16": "mixed precision (default: on when a CUDA GPU supports it; --bf16 on a CPU with native bf16)",
}
"""Help for the ``laser train`` options that need more than their name; every TrainConfig field is an option."""


def register(subparsers: Any) -> None:
    """Add ``rationales`` and ``train`` to an ``argparse`` subparsers object (each sets ``run``)."""
    add_rationales_command(subparsers)
    add_train_command(subparsers)


def add_rationales_command(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "rationales",
        help="write the 'rationale' column of a training set with a generator model or an endpoint",
        description=(
            "Ask a generator, with the LaSER paper's reasoning prompt, for one rationale per query and append each "
            "row plus its rationale to a JSONL file. Resumable: rerunning skips rows already written."
        ),
    )
    parser.add_argument("data", help="input rows: a .jsonl/.json/.parquet file, a dataset folder or a Hub name")
    parser.add_argument("-o", "--output", required=True, help="the JSONL file to write (appended to on rerun)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-m", "--model", help="a local generator: Hub id, model folder, .gguf file or smollm2")
    source.add_argument("--endpoint", help="an OpenAI-compatible server URL, e.g. http://localhost:8000/v1")
    parser.add_argument("--endpoint-model", help="model name sent to the endpoint (required with --endpoint)")
    parser.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (endpoint)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--query-column", default="query")
    parser.add_argument("--id-column", default=None, help="a column identifying rows across runs (default: position)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=512)
    add_device_options(parser)
    parser.add_argument("--overwrite", action="store_true", help="regenerate rows that already have a rationale")
    parser.set_defaults(run=run_rationales)
    return parser


def run_rationales(args: argparse.Namespace) -> int:
    from functools import partial

    from laser_integrations.rewrite import RationaleGenerator
    from laser_integrations.training.rationales import request_rationales, write_rationales
    from laser_integrations.training.recipe import load_training_data

    if args.endpoint and not args.endpoint_model:
        raise UserError("--endpoint needs --endpoint-model (the model name the server expects)")
    rows = load_training_data(args.data, split=args.split)
    if args.endpoint:
        generate = partial(
            request_rationales,
            endpoint=args.endpoint,
            model=args.endpoint_model,
            api_key=os.environ.get(args.api_key_env),
            max_tokens=args.max_new_tokens,
            concurrency=args.concurrency,
        )
    else:
        # The project's one rationale generator: the causal LM alone, chat template on, Qwen3 thinking off.
        print_dtype_choice(args)
        generator = RationaleGenerator.from_pretrained(
            args.model,
            device=args.device,
            dtype=args.dtype,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
        )
        generate = generator.generate
    written = write_rationales(
        rows,
        args.output,
        generate,
        batch_size=args.batch_size,
        query_column=args.query_column,
        id_column=args.id_column,
        overwrite=args.overwrite,
    )
    print(f"wrote {written} row(s) with rationales to {args.output}", file=sys.stderr)
    return 0


def add_train_command(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "train",
        help="train a LaSER retriever (the released recipe by default)",
        description=(
            "Self-distillation training (LaSER spec section 4) with sentence-transformers. Defaults: the released "
            "recipe (Qwen3-0.6B, LoRA r=64 alpha=32, lr 1e-4, warmup 0.1, 1 epoch, batch 8 x 2, K=3, group size 2, "
            "tau 0.02, weights 1/1/10/0.1). Rows need query, rationale, positive and negative* columns."
        ),
    )
    parser.add_argument("data", help="a .jsonl/.json/.parquet file, a dataset folder or a Hub dataset name")
    defaults = TrainConfig()
    for config_field in dataclasses.fields(TrainConfig):
        if config_field.name == "data":
            continue
        _add_config_option(parser, config_field.name, getattr(defaults, config_field.name))
    parser.set_defaults(run=run_train)
    return parser


def _add_config_option(parser: argparse.ArgumentParser, name: str, default: Any) -> None:
    short = {"output_dir": ["-o"], "model": ["-m"]}.get(name, [])
    flags = [f"--{name.replace('_', '-')}", *short]
    help_text = TRAIN_HELP.get(name, "")
    if "default" not in help_text:
        help_text = f"{help_text} (default: %(default)s)" if help_text else "default: %(default)s"
    if name == "bf16" or isinstance(default, bool):
        parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=default, help=help_text)
    elif name == "teacher":
        parser.add_argument(*flags, choices=["online", "frozen"], default=default, help=help_text)
    elif name == "columns":
        parser.add_argument(*flags, type=_pairs, default=default, help=help_text)
    elif name == "lora_target_modules":
        parser.add_argument(*flags, type=_comma_list, default=default, help=help_text)
    elif name in ("max_samples", "save_total_limit"):
        parser.add_argument(*flags, type=int, default=default, help=help_text)
    else:
        kind = type(default) if default is not None else str
        parser.add_argument(*flags, type=kind, default=default, help=help_text)


def run_train(args: argparse.Namespace) -> int:
    from laser_integrations.training.recipe import train, uses_bf16

    values = {config_field.name: getattr(args, config_field.name) for config_field in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**values)
    print(f"training with {json.dumps(dataclasses.asdict(config))}", file=sys.stderr)
    precision = "bf16 mixed precision" if uses_bf16(config) else "float32 (--bf16 for bf16 mixed precision)"
    print(f"laser train: {precision}", file=sys.stderr)
    train(config)
    print(f"saved the trained model to {config.output_dir}", file=sys.stderr)
    return 0


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise argparse.ArgumentTypeError(f"expected field=column pairs, got {item!r}")
        pairs[field.strip()] = column.strip()
    return pairs


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
