"""The ``laser`` command line: encode, export, explain, demo, eval, eval-mteb, rationales, train.

``laser COMMAND --help`` documents each one.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MODEL_HELP = (
    "model: an alias (laser-qwen3, laser-qwen3-4b, laser-qwen3-8b), a Hub id, a model folder, a .gguf file, "
    "a folder saved by `laser export`, or smollm2 (the offline demo model; not a trained LaSER model)"
)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """Options every command that loads a model shares (they map onto ``load_model``'s keywords)."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("-k", "--num-thinking-steps", type=int, default=None, help="latent steps K (default 3)")
    parser.add_argument("--instruction", default=None, help="query task instruction (default: the generic one)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncation length in tokens (512)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: auto)")
    parser.add_argument(
        "--dtype", default=None, help="bfloat16, float16, float32 (default: bf16 on CUDA, fp32 on CPU)"
    )
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument("--chat-template", dest="chat_template", action="store_true", default=None)
    chat.add_argument("--no-chat-template", dest="chat_template", action="store_false", help="feed raw text")
    parser.add_argument("--local-files-only", action="store_true", help="never reach the Hugging Face Hub")


def load_from_args(args: argparse.Namespace):
    from laser_integrations.loading import load_model

    return load_model(
        args.model,
        num_thinking_steps=args.num_thinking_steps,
        instruction=args.instruction,
        max_seq_length=args.max_seq_length,
        device=args.device,
        dtype=args.dtype,
        chat_template=args.chat_template,
        local_files_only=args.local_files_only,
    )


def read_texts(args: argparse.Namespace) -> list[str]:
    """Texts from the command line, or from a file: one per line, or JSONL objects with a ``text`` field."""
    texts = list(args.texts)
    if args.file:
        path = Path(args.file)
        for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    message = f"{path}:{number}: expected a JSON object with a 'text' field ({error})"
                    raise SystemExit(message) from None
            else:
                texts.append(line)
    if not texts:
        raise SystemExit("no texts: pass them as arguments or with --file")
    return texts


def run_encode(args: argparse.Namespace) -> None:
    import numpy as np

    texts = read_texts(args)
    model = load_from_args(args)
    encode = model.encode_query if args.side == "query" else model.encode_document
    vectors = encode(texts, batch_size=args.batch_size, show_progress_bar=args.progress)
    if args.output and args.output.endswith(".npy"):
        np.save(args.output, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} {args.side} vectors to {args.output}", file=sys.stderr)
        return
    out = open(args.output, "w", encoding="utf8") if args.output else sys.stdout
    try:
        for text, vector in zip(texts, vectors, strict=True):
            out.write(json.dumps({"text": text, "embedding": vector.tolist()}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
            print(f"wrote {len(texts)} {args.side} vectors to {args.output}", file=sys.stderr)


def run_export(args: argparse.Namespace) -> None:
    model = load_from_args(args)
    model.save(args.directory)
    print(f"saved to {args.directory}")
    print(f"load it with: laser_integrations.load_model({args.directory!r})")
    print(f"          or: SentenceTransformer({args.directory!r}, trust_remote_code=True)")


def run_explain(args: argparse.Namespace) -> None:
    from laser_integrations.explain import explain_thinking

    model = load_from_args(args)
    prompt = model.prompts.get("query") if args.side == "query" else None
    steps = explain_thinking(model, args.text, top_k=args.top, prompt=prompt)
    print(f"{len(steps)} thinking step(s) for: {args.text!r}")
    for step in steps:
        role = "soft token" if step.fed_back else "next (not fed back)"
        shown = ", ".join(f"{token!r} {prob:.3f}" for token, prob in zip(step.tokens, step.probabilities, strict=True))
        print(f"  step {step.step} [{role}]: {shown}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laser", description="LaSER latent-thinking embeddings")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    encode = commands.add_parser(
        "encode",
        help="embed texts to .npy or JSONL",
        description="Embed texts: laser encode MODEL [TEXT ...] [options] (texts right after MODEL).",
    )
    add_model_options(encode)
    encode.add_argument("texts", nargs="*", help="texts to embed (or use --file)")
    encode.add_argument("--file", help="a text file (one text per line) or .jsonl with a 'text' field")
    encode.add_argument("--side", choices=["query", "document"], default="query", help="query adds the instruction")
    encode.add_argument("-o", "--output", help="a .npy file, or a .jsonl file (default: JSONL to stdout)")
    encode.add_argument("--batch-size", type=int, default=32)
    encode.add_argument("--progress", action="store_true", help="show a progress bar")
    encode.set_defaults(func=run_encode)

    export = commands.add_parser(
        "export",
        help="save a model folder that load_model and SentenceTransformer load",
        description="Write MODEL as a sentence-transformers folder (weights, tokenizer, LaSER config, prompts).",
    )
    add_model_options(export)
    export.add_argument("directory", help="output folder")
    export.set_defaults(func=run_export)

    explain = commands.add_parser(
        "explain",
        help="show what the model 'thinks' at each latent step",
        description="Print the top tokens of each latent step's next-token distribution for one text.",
    )
    add_model_options(explain)
    explain.add_argument("text", help="the query (or document, with --side document)")
    explain.add_argument("--side", choices=["query", "document"], default="query")
    explain.add_argument("--top", type=int, default=8, help="tokens shown per step")
    explain.set_defaults(func=run_explain)

    from laser_integrations.eval_cli import add_commands as add_evaluation_commands
    from laser_integrations.training.cli import add_commands as add_training_commands

    add_evaluation_commands(commands)
    add_training_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> Any:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    main()
