"""What every ``laser`` command shares: the ``--model`` option and its load options, progress, and user errors.

One convention for every command: the model is ``-m/--model``; positional arguments are the command's
inputs (texts, data files, an output folder); progress bars are on unless ``--no-progress``.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser encode")
>>> add_model_options(parser)
>>> add_progress_option(parser)
>>> args = parser.parse_args(["-m", "smollm2", "-k", "6", "--no-progress"])
>>> args.model, args.num_thinking_steps, args.progress
('smollm2', 6, False)
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

MODEL_HELP = (
    "model: an alias (laser-qwen3, laser-qwen3-4b, laser-qwen3-8b), a Hub id, a model folder, a .gguf file, "
    "a folder saved by `laser export`, or smollm2 (the offline demo model; not a trained LaSER model)"
)


class UserError(Exception):
    """A mistake in what the user asked for: ``laser`` prints its message as one line and exits with status 2."""


def add_model_option(
    parser: argparse.ArgumentParser, *, default: str | None = None, required: bool = True, help: str = MODEL_HELP
) -> None:
    """``-m/--model``: required unless the command has a default model (or still takes the 0.1 positional form)."""
    parser.add_argument("-m", "--model", default=default, required=required and default is None, help=help)


def add_model_options(
    parser: argparse.ArgumentParser, *, default_model: str | None = None, required: bool = True
) -> None:
    """``--model`` plus the :func:`~laser_integrations.load_model` options every model-loading command takes."""
    add_model_option(parser, default=default_model, required=required)
    parser.add_argument("-k", "--num-thinking-steps", type=int, default=None, help="latent steps K (default 3)")
    parser.add_argument("--instruction", default=None, help="query task instruction (default: the generic one)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncation length in tokens (512)")
    add_device_options(parser)
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument("--chat-template", dest="chat_template", action="store_true", default=None)
    chat.add_argument("--no-chat-template", dest="chat_template", action="store_false", help="feed raw text")
    parser.add_argument("--local-files-only", action="store_true", help="never reach the Hugging Face Hub")


def add_device_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: auto)")
    parser.add_argument(
        "--dtype",
        default=None,
        help="bfloat16, float16, float32 or auto (default: bf16 on CUDA, float32 on CPU; auto: also bf16 on CPUs "
        "with native bf16, avx512_bf16 or AMX, about 2x faster at cosine >= 0.94 to float32)",
    )


def add_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars on stderr (on)"
    )


def load_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ``load_model`` options :func:`add_model_options` added, as given on the command line."""
    return {
        "num_thinking_steps": args.num_thinking_steps,
        "instruction": args.instruction,
        "max_seq_length": args.max_seq_length,
        "device": args.device,
        "dtype": args.dtype,
        "chat_template": args.chat_template,
        "local_files_only": args.local_files_only,
    }


def load_model_from_args(args: argparse.Namespace) -> SentenceTransformer:
    """The model ``--model`` names, loaded with the options :func:`add_model_options` added.

    Prints the weights dtype it got, and why, as one stderr line (``laser encode: dtype float32 (...)``).
    """
    from laser_integrations.loading import load_model

    model = load_model(args.model, **load_options_from_args(args))
    print_dtype_choice(args, used=model[0].model.dtype)
    return model


def print_dtype_choice(args: argparse.Namespace, used: Any = None) -> None:
    """One stderr line with the weights dtype ``--dtype``/``--device`` pick, and why (``used``: what loaded).

    For the commands that load their model later or elsewhere (``laser index``'s engines, the demo), so that
    every model-loading command says which precision its vectors come from before the work starts.
    """
    from laser_integrations.backbone import dtype_choice

    try:
        chosen, why = dtype_choice(args.dtype, args.device)
    except ValueError as error:
        raise UserError(str(error)) from None
    name = str(used if used is not None else chosen).removeprefix("torch.")
    command = f"laser {args.command}" if getattr(args, "command", None) else "laser"
    print(f"{command}: dtype {name} ({why})", file=sys.stderr)


def model_from_legacy_positional(args: argparse.Namespace, positionals: list[str], command: str) -> list[str]:
    """Accept the 0.1 form ``laser COMMAND MODEL ...`` (model first) for one release, with a note on stderr.

    Returns the positionals that remain once the model is taken from them.
    """
    if args.model is not None:
        return positionals
    if not positionals:
        raise UserError(f"laser {command}: the model is missing; pass it with --model (e.g. --model smollm2)")
    args.model = positionals[0]
    print(
        f"laser {command}: note: the model as first argument is deprecated; use --model {args.model}",
        file=sys.stderr,
    )
    return positionals[1:]


def query_limit(value: int) -> int | None:
    """``--limit N``: ``0`` means every query."""
    if value < 0:
        raise UserError(f"--limit must be >= 0 (0 means every query), got {value}")
    return value or None
