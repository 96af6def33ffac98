"""``laser encode``, ``laser export`` and ``laser explain``: one model, a few texts, right now."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from laser_integrations.cli.options import (
    UserError,
    add_model_options,
    add_progress_option,
    load_model_from_args,
    model_from_legacy_positional,
)


def register(subparsers: Any) -> None:
    encode = subparsers.add_parser(
        "encode",
        help="embed texts to .npy or JSONL",
        description="Embed texts: laser encode [TEXT ...] --model MODEL [options].",
    )
    add_model_options(encode, required=False)
    encode.add_argument("texts", nargs="*", help="texts to embed (or use --file)")
    encode.add_argument("--file", help="a text file (one text per line) or .jsonl with a 'text' field")
    encode.add_argument("--side", choices=["query", "document"], default="query", help="query adds the instruction")
    encode.add_argument("-o", "--output", help="a .npy file, or a .jsonl file (default: JSONL to stdout)")
    encode.add_argument("--batch-size", type=int, default=32)
    add_progress_option(encode)
    encode.set_defaults(run=run_encode)

    export = subparsers.add_parser(
        "export",
        help="save a model folder that load_model and SentenceTransformer load",
        description="Write the model as a sentence-transformers folder (weights, tokenizer, LaSER config, prompts).",
    )
    add_model_options(export, required=False)
    export.add_argument("directory", nargs="+", metavar="DIRECTORY", help="output folder")
    export.set_defaults(run=run_export)

    explain = subparsers.add_parser(
        "explain",
        help="show what the model 'thinks' at each latent step",
        description="Print the top tokens of each latent step's next-token distribution for one text.",
    )
    add_model_options(explain, required=False)
    explain.add_argument("text", nargs="+", metavar="TEXT", help="the query (or document, with --side document)")
    explain.add_argument("--side", choices=["query", "document"], default="query")
    explain.add_argument("--top", type=int, default=8, help="tokens shown per step")
    explain.set_defaults(run=run_explain)


def read_texts(arguments: list[str], file: str | None) -> list[str]:
    """Texts from the command line, then from a file: one per line, or JSONL objects with a ``text`` field."""
    texts = list(arguments)
    if file:
        path = Path(file)
        if not path.is_file():
            raise UserError(f"--file {file}: no such file")
        for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), start=1):
            if not line.strip():
                continue
            if path.suffix == ".jsonl":
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError) as error:
                    raise UserError(f"{path}:{number}: expected a JSON object with a 'text' field ({error})") from None
            else:
                texts.append(line)
    if not texts:
        raise UserError("no texts: pass them as arguments or with --file")
    return texts


def run_encode(args: argparse.Namespace) -> int:
    import numpy as np

    positionals = model_from_legacy_positional(args, list(args.texts), "encode")
    texts = read_texts(positionals, args.file)
    model = load_model_from_args(args)
    encode = model.encode_query if args.side == "query" else model.encode_document
    vectors = encode(texts, batch_size=args.batch_size, show_progress_bar=args.progress)
    if args.output and args.output.endswith(".npy"):
        np.save(args.output, vectors)
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} {args.side} vectors to {args.output}", file=sys.stderr)
        return 0
    out = open(args.output, "w", encoding="utf8") if args.output else sys.stdout
    try:
        for text, vector in zip(texts, vectors, strict=True):
            out.write(json.dumps({"text": text, "embedding": vector.tolist()}) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
            print(f"wrote {len(texts)} {args.side} vectors to {args.output}", file=sys.stderr)
    return 0


def run_export(args: argparse.Namespace) -> int:
    remaining = model_from_legacy_positional(args, list(args.directory), "export")
    if len(remaining) != 1:
        raise UserError(f"laser export takes one output folder, got {len(remaining)}: {' '.join(remaining)}")
    directory = remaining[0]
    model = load_model_from_args(args)
    model.save(directory)
    print(f"saved to {directory}")
    print(f"load it with: laser_integrations.load_model({directory!r})")
    print(f"          or: SentenceTransformer({directory!r}, trust_remote_code=True)")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from laser_integrations.explain import explain_thinking

    remaining = model_from_legacy_positional(args, list(args.text), "explain")
    if len(remaining) != 1:
        raise UserError(f"laser explain takes one text (quote it), got {len(remaining)} arguments")
    text = remaining[0]
    model = load_model_from_args(args)
    prompt = model.prompts.get("query") if args.side == "query" else None
    steps = explain_thinking(model, text, top_k=args.top, prompt=prompt)
    print(f"{len(steps)} thinking step(s) for: {text!r}")
    for step in steps:
        role = "soft token" if step.fed_back else "next (not fed back)"
        shown = ", ".join(f"{token!r} {prob:.3f}" for token, prob in zip(step.tokens, step.probabilities, strict=True))
        print(f"  step {step.step} [{role}]: {shown}")
    return 0
