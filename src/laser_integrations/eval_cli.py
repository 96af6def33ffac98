"""``laser eval``, ``laser eval-mteb`` and ``laser demo``, registered on the ``laser`` parser by :func:`add_commands`.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser")
>>> add_commands(parser.add_subparsers(dest="command"))
>>> parser.parse_args(["demo", "--limit", "5"]).limit
5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EVAL_DESCRIPTION = (
    "Run a BEIR-format dataset (corpus.jsonl, queries.jsonl, qrels/<split>.tsv) through several query modes "
    "side by side: single (K=1), latent (K latent thinking steps; latent:K for another K) and explicit "
    "(an LLM writes the paper's rationale, then query + rationale are embedded with LaSER's explicit view). "
    "Documents are embedded once with the latent view and searched exactly (dot product). Prints nDCG@10, "
    "Recall@10/100, MRR@10, per-query latency (median, p95) and total query time; writes eval.json and eval.png."
)
MTEB_DESCRIPTION = (
    "Run MTEB retrieval tasks with LaSER's per-task query instructions (needs `pip install mteb`, network access "
    "for the task data, and in practice a GPU). To reproduce the paper's BRIGHT average: "
    "`laser eval-mteb laser-qwen3 --benchmark BRIGHT --dtype float16 --max-seq-length 8192 --batch-size 8`."
)
DEMO_DESCRIPTION = (
    "Index the bundled Python-reference corpus into Qdrant with LaSER vectors (embedded local mode under the "
    "cache folder, or --qdrant-url), answer the bundled questions three ways through the same collection "
    "(single K=1, latent K=3, explicit rewrite-then-retrieve), and print quality and latency side by side with "
    "the speed-up of latent thinking over the rewrite chain; writes demo.json and demo.png. The default model, "
    "smollm2, runs offline but is NOT a trained LaSER model: its numbers show the mechanics, not LaSER's quality "
    "(use --model laser-qwen3 for that)."
)


def add_commands(subparsers: Any) -> None:
    """Add ``eval``, ``eval-mteb`` and ``demo`` to an ``argparse`` subparsers object (each sets ``func``)."""
    evaluate = subparsers.add_parser(
        "eval", help="compare single / latent / explicit retrieval on a BEIR dataset", description=EVAL_DESCRIPTION
    )
    add_eval_arguments(evaluate)
    evaluate.set_defaults(func=run_eval_command)

    mteb = subparsers.add_parser(
        "eval-mteb", help="run MTEB tasks (BRIGHT, FollowIR, BrowseComp-Plus)", description=MTEB_DESCRIPTION
    )
    add_mteb_arguments(mteb)
    mteb.set_defaults(func=run_mteb_command)

    demo = subparsers.add_parser(
        "demo", help="Qdrant demo: latent thinking vs explicit rewrite, side by side", description=DEMO_DESCRIPTION
    )
    add_demo_arguments(demo)
    demo.set_defaults(func=run_demo_command)


# -- laser eval -------------------------------------------------------------------------------------------


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    from laser_integrations.cli import add_model_options

    add_model_options(parser)
    parser.add_argument(
        "--dataset", default="pyref", help="a BEIR folder, or pyref (the bundled Python-reference set; default)"
    )
    parser.add_argument("--split", default="test", help="qrels split to read (default: test)")
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["single", "latent", "explicit"],
        help="modes to compare: single, latent, latent:K, explicit (space or comma separated; default: all three)",
    )
    parser.add_argument("--limit", type=int, default=0, help="answer only the first N queries (0: all)")
    _add_query_options(parser)
    parser.add_argument("--document-steps", type=int, default=None, help="K for documents (default: the model's)")
    parser.add_argument("--document-batch-size", type=int, default=16, help="passages per forward pass (16)")
    parser.add_argument("--top-k", type=int, default=100, help="documents retrieved per query (100)")
    parser.add_argument(
        "--output-dir", default="laser-output/eval", help="where eval.json and eval.png go (laser-output/eval)"
    )


def _add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8, help="queries per batch, the same for every mode (8)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, help="rationale length bound of the rewrite chain (128)"
    )
    parser.add_argument(
        "--generator",
        default=None,
        help="the rewrite LLM (any model spec; default: the embedding model's own backbone, shared in memory)",
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def run_eval_command(args: argparse.Namespace) -> Any:
    from laser_integrations.cli import load_from_args
    from laser_integrations.evaluation import evaluate_dataset, format_table, load_beir, parse_modes, plot, write_json
    from laser_integrations.evaluation.runner import not_laser_warning

    mode_texts = [part for text in args.modes for part in text.split(",") if part.strip()]
    parse_modes(mode_texts)  # fail on a typo before loading anything
    dataset = load_beir(args.dataset, args.split).limited(_limit(args.limit))
    model = load_from_args(args)
    modes = parse_modes(mode_texts, default_steps=model[0].num_thinking_steps)
    generator = _generator(args, model) if any(mode.kind == "explicit" for mode in modes) else None
    warning = not_laser_warning(model)
    if warning:
        print(warning, file=sys.stderr)
    report = evaluate_dataset(
        model,
        dataset,
        modes,
        generator=generator,
        document_steps=args.document_steps,
        batch_size=args.batch_size,
        document_batch_size=args.document_batch_size,
        top_k=args.top_k,
        show_progress_bar=args.progress,
    )
    if warning:
        report.notes.append(warning)
    print(format_table(report))
    output = Path(args.output_dir)
    json_path = write_json(report, output / "eval.json")
    subtitle = f"{report.model} on {report.device}; exact search over {report.num_documents} passages"
    if warning:
        subtitle += "\nnot a released LaSER checkpoint: the quality numbers show the mechanics, not LaSER's quality"
    png_path = plot(report, output / "eval.png", subtitle=subtitle)
    print(f"\nwrote {json_path} and {png_path}")
    return report


def _generator(args: argparse.Namespace, model: Any) -> Any:
    from laser_integrations.rewrite import RationaleGenerator

    options = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)
    if args.generator is None or args.generator == args.model:
        return RationaleGenerator.from_sentence_transformer(model, **options)
    return RationaleGenerator.from_pretrained(args.generator, device=args.device, dtype=args.dtype, **options)


def _limit(value: int) -> int | None:
    if value < 0:
        raise SystemExit(f"--limit must be >= 0 (0 means every query), got {value}")
    return value or None


# -- laser eval-mteb --------------------------------------------------------------------------------------


def add_mteb_arguments(parser: argparse.ArgumentParser) -> None:
    from laser_integrations.cli import add_model_options

    add_model_options(parser)
    parser.add_argument(
        "--benchmark",
        nargs="*",
        default=[],
        help="BRIGHT (12 domains, the paper's average), FollowIR, BrowseCompPlus",
    )
    parser.add_argument("--tasks", nargs="*", default=[], help="more mteb task names")
    parser.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (8, the released setting)")
    parser.add_argument("--output-dir", default="laser-output/mteb", help="mteb result cache and rankings")
    parser.add_argument("--overwrite", action="store_true", help="re-run tasks already in --output-dir")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")
    parser.epilog = (
        "Per-task instructions: BRIGHT uses the released LaSER runner's per-domain table, other tasks their mteb "
        "query prompt. --instruction replaces them all."
    )


def run_mteb_command(args: argparse.Namespace) -> Any:
    from laser_integrations.cli import load_from_args
    from laser_integrations.evaluation.mteb import require_mteb, run_mteb, task_names

    names = task_names(args.benchmark, args.tasks)
    require_mteb()
    instruction, args.instruction = args.instruction, None  # per task here, not one model-wide prompt
    model = load_from_args(args)
    result = run_mteb(
        model,
        names,
        output_folder=args.output_dir,
        batch_size=args.batch_size,
        instruction=instruction,
        overwrite=args.overwrite,
        show_progress_bar=args.progress,
    )
    scores = {task.task_name: task.get_score() for task in result.task_results}
    width = max(map(len, scores), default=4)
    for name, score in scores.items():
        print(f"{name.ljust(width)}  {100 * score:.1f}")
    if scores:
        print(f"{'average'.ljust(width)}  {100 * sum(scores.values()) / len(scores):.1f}")
    print(f"\nresults in {args.output_dir}")
    return result


# -- laser demo -------------------------------------------------------------------------------------------


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from laser_integrations.demo import DEFAULT_LIMIT, DEFAULT_OUTPUT_DIR

    parser.add_argument(
        "--model",
        default="smollm2",
        help="LaSER model spec (default: smollm2, offline, NOT a trained LaSER model; laser-qwen3 for real use)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"answer the first N bundled questions ({DEFAULT_LIMIT}, ~2.5 min on a 2-core CPU; 0: all 123, ~7 min)",
    )
    parser.add_argument("-k", "--num-thinking-steps", type=int, default=3, help="K for documents and latent (3)")
    _add_query_options(parser)
    parser.add_argument("--qdrant-url", default=None, help="a Qdrant server (default: embedded local mode on disk)")
    parser.add_argument("--qdrant-path", default=None, help="local Qdrant folder (default: <cache>/qdrant)")
    parser.add_argument(
        "--cache-dir", default=None, help="cache root (default: $LASER_CACHE or ~/.cache/laser_integrations)"
    )
    parser.add_argument(
        "--output-dir", default=DEFAULT_OUTPUT_DIR, help=f"where demo.json and demo.png go ({DEFAULT_OUTPUT_DIR})"
    )
    parser.add_argument("--dataset", default="pyref", help="a BEIR folder instead of the bundled pyref set")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: auto)")
    parser.add_argument("--dtype", default=None, help="bfloat16, float16, float32 (default: bf16 on CUDA, else fp32)")
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncation length in tokens (512)")


def run_demo_command(args: argparse.Namespace) -> Any:
    from laser_integrations.demo import run_demo

    return run_demo(
        args.model,
        limit=_limit(args.limit),
        max_new_tokens=args.max_new_tokens,
        num_thinking_steps=args.num_thinking_steps,
        batch_size=args.batch_size,
        dataset=args.dataset,
        generator=args.generator,
        qdrant_url=args.qdrant_url,
        qdrant_path=args.qdrant_path,
        cache_folder=args.cache_dir,
        output_dir=args.output_dir,
        device=args.device,
        dtype=args.dtype,
        max_seq_length=args.max_seq_length,
        show_progress_bar=args.progress,
    )
