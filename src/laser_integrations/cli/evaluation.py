"""``laser eval``, ``laser eval-mteb`` and ``laser demo``: retrieval quality and cost, side by side."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from laser_integrations.cli.options import (
    add_device_options,
    add_model_option,
    add_model_options,
    add_progress_option,
    load_model_from_args,
    model_from_legacy_positional,
    print_dtype_choice,
    query_limit,
)

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
    "`laser eval-mteb --model laser-qwen3 --benchmark BRIGHT --dtype float16 --max-seq-length 8192 --batch-size 8`."
)
DEMO_DESCRIPTION = (
    "Index the bundled Python-reference corpus into Qdrant with LaSER vectors (embedded local mode under the "
    "cache folder, or --qdrant-url), answer the bundled questions three ways through the same collection "
    "(single K=1, latent K=3, explicit rewrite-then-retrieve), and print quality and latency side by side with "
    "the speed-up of latent thinking over the rewrite chain; writes demo.json and demo.png. The default model, "
    "smollm2, runs offline but is NOT a trained LaSER model: its numbers show the mechanics, not LaSER's quality "
    "(use --model laser-qwen3 for that)."
)


def register(subparsers: Any) -> None:
    evaluate = subparsers.add_parser(
        "eval", help="compare single / latent / explicit retrieval on a BEIR dataset", description=EVAL_DESCRIPTION
    )
    add_model_options(evaluate, required=False)
    evaluate.add_argument("legacy_model", nargs="?", help=argparse.SUPPRESS)
    evaluate.add_argument(
        "--dataset", default="pyref", help="a BEIR folder, or pyref (the bundled Python-reference set; default)"
    )
    evaluate.add_argument("--split", default="test", help="qrels split to read (default: test)")
    evaluate.add_argument(
        "--modes",
        nargs="+",
        default=["single", "latent", "explicit"],
        help="modes to compare: single, latent, latent:K, explicit (space or comma separated; default: all three)",
    )
    evaluate.add_argument("--limit", type=int, default=0, help="answer only the first N queries (0: all)")
    add_query_options(evaluate)
    evaluate.add_argument("--document-steps", type=int, default=None, help="K for documents (default: the model's)")
    evaluate.add_argument("--document-batch-size", type=int, default=16, help="passages per forward pass (16)")
    evaluate.add_argument("--top-k", type=int, default=100, help="documents retrieved per query (100)")
    evaluate.add_argument(
        "--output-dir", default="laser-output/eval", help="where eval.json and eval.png go (laser-output/eval)"
    )
    evaluate.set_defaults(run=run_eval)

    mteb = subparsers.add_parser(
        "eval-mteb", help="run MTEB tasks (BRIGHT, FollowIR, BrowseComp-Plus)", description=MTEB_DESCRIPTION
    )
    add_model_options(mteb, required=False)
    mteb.add_argument("legacy_model", nargs="?", help=argparse.SUPPRESS)
    mteb.add_argument(
        "--benchmark", nargs="*", default=[], help="BRIGHT (12 domains, the paper's average), FollowIR, BrowseCompPlus"
    )
    mteb.add_argument("--tasks", nargs="*", default=[], help="more mteb task names")
    mteb.add_argument(
        "--dataset",
        default=None,
        help="a local BEIR folder, or pyref, run as one offline mteb retrieval task (instead of --benchmark)",
    )
    mteb.add_argument("--batch-size", type=int, default=8, help="texts per forward pass (8, the released setting)")
    mteb.add_argument("--output-dir", default="laser-output/mteb", help="mteb result cache and rankings")
    mteb.add_argument("--overwrite", action="store_true", help="re-run tasks already in --output-dir")
    add_progress_option(mteb)
    mteb.epilog = (
        "Per-task instructions: BRIGHT uses the released LaSER runner's per-domain table, other tasks their mteb "
        "query prompt. --instruction replaces them all."
    )
    mteb.set_defaults(run=run_eval_mteb)

    demo = subparsers.add_parser(
        "demo", help="Qdrant demo: latent thinking vs explicit rewrite, side by side", description=DEMO_DESCRIPTION
    )
    add_demo_arguments(demo)
    demo.set_defaults(run=run_demo)


def add_query_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8, help="queries per batch, the same for every mode (8)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=128, help="rationale length bound of the rewrite chain (128)"
    )
    parser.add_argument(
        "--generator",
        default=None,
        help="the rewrite LLM (any model spec; default: the embedding model's own backbone, shared in memory)",
    )
    add_progress_option(parser)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    from laser_integrations.evaluation.demo import DEFAULT_LIMIT, DEFAULT_OUTPUT_DIR, DEMO_DEFAULT_MODEL

    add_model_option(
        parser,
        default=DEMO_DEFAULT_MODEL,
        help=f"LaSER model spec (default: {DEMO_DEFAULT_MODEL}, offline, NOT a trained LaSER model; laser-qwen3 for "
        "real use)",
    )
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"answer the first N bundled questions ({DEFAULT_LIMIT}, ~2.5 min on a 2-core CPU; 0: all 123, ~7 min)",
    )
    parser.add_argument("-k", "--num-thinking-steps", type=int, default=3, help="K for documents and latent (3)")
    add_query_options(parser)
    parser.add_argument("--qdrant-url", default=None, help="a Qdrant server (default: embedded local mode on disk)")
    parser.add_argument("--qdrant-path", default=None, help="local Qdrant folder (default: <cache>/qdrant)")
    parser.add_argument(
        "--cache-dir", default=None, help="cache root (default: $LASER_CACHE or ~/.cache/laser_integrations)"
    )
    parser.add_argument(
        "--output-dir", default=DEFAULT_OUTPUT_DIR, help=f"where demo.json and demo.png go ({DEFAULT_OUTPUT_DIR})"
    )
    parser.add_argument("--dataset", default="pyref", help="a BEIR folder instead of the bundled pyref set")
    add_device_options(parser)
    parser.add_argument("--max-seq-length", type=int, default=None, help="truncation length in tokens (512)")


def run_eval(args: argparse.Namespace) -> int:
    from laser_integrations.evaluation import evaluate_dataset, format_table, load_beir, parse_modes, plot, write_json
    from laser_integrations.evaluation.runner import caveat_line, not_laser_warning
    from laser_integrations.rewrite import RationaleGenerator

    model_from_legacy_positional(args, [args.legacy_model] if args.legacy_model else [], "eval")
    mode_texts = [part for text in args.modes for part in text.split(",") if part.strip()]
    parse_modes(mode_texts)  # fail on a typo before loading anything
    dataset = load_beir(args.dataset, args.split).limited(query_limit(args.limit))
    model = load_model_from_args(args)
    modes = parse_modes(mode_texts, default_steps=model[0].num_thinking_steps)
    generator = None
    if any(mode.kind == "explicit" for mode in modes):
        generator = RationaleGenerator.for_embedder(
            model,
            args.generator if args.generator != args.model else None,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            device=args.device,
            dtype=args.dtype,
        )
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
    caveat = caveat_line(model)
    if caveat:
        subtitle += f"\n{caveat}"
    png_path = plot(report, output / "eval.png", subtitle=subtitle)
    print(f"\nwrote {json_path} and {png_path}")
    return 0


def run_eval_mteb(args: argparse.Namespace) -> int:
    from laser_integrations.evaluation.mteb import require_mteb, run_mteb, task_names

    model_from_legacy_positional(args, [args.legacy_model] if args.legacy_model else [], "eval-mteb")
    if args.dataset is not None:
        from laser_integrations.evaluation import load_beir
        from laser_integrations.evaluation.mteb import beir_task

        if args.benchmark or args.tasks:
            raise ValueError("pass either --dataset or --benchmark/--tasks, not both")
        require_mteb()
        tasks: list[Any] = [beir_task(load_beir(args.dataset), instruction=args.instruction)]
    else:
        tasks = list(task_names(args.benchmark, args.tasks))
        require_mteb()
    instruction, args.instruction = args.instruction, None  # per task here, not one model-wide prompt
    model = load_model_from_args(args)
    result = run_mteb(
        model,
        tasks,
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
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from laser_integrations.evaluation.demo import run_demo as demo

    print_dtype_choice(args)
    demo(
        args.model,
        limit=query_limit(args.limit),
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
    return 0
