"""``laser index``: embed a corpus into a Qdrant collection, resumably, on one process, several devices or Ray.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["index", "corpus.jsonl", "-m", "smollm2", "-c", "docs", "--devices", "cpu,cpu"])
>>> engine_name(args), args.devices
('pool', ['cpu', 'cpu'])
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from laser_integrations.cli.options import (
    UserError,
    add_model_options,
    add_progress_option,
    load_model_from_args,
    load_options_from_args,
)

DEFAULT_QDRANT_PATH = "./qdrant-data"
"""The embedded Qdrant folder used without ``--qdrant-url``/``--qdrant-path`` (``laser_integrations.indexing``'s)."""


def register(subparsers: Any) -> None:
    """Add ``index`` to an ``argparse`` subparsers object (it sets ``run``)."""
    parser = subparsers.add_parser(
        "index",
        help="embed a corpus (JSONL, Parquet, BEIR folder, saved dataset) into a Qdrant collection, resumably",
        description=(
            "Embed every document of SOURCE (title + text, document side, the model's K) into a Qdrant collection "
            "that records the model's provenance. Point ids come from the document ids (or the content), and ids "
            "already stored are not embedded again: rerun the same command to finish an interrupted job. "
            f"Embedded Qdrant in {DEFAULT_QDRANT_PATH} unless --qdrant-url/--qdrant-path."
        ),
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a .jsonl/.jsonl.gz/.parquet file, a BEIR folder (corpus.jsonl), a folder saved by datasets' "
        "save_to_disk, or a folder of .jsonl or .parquet files",
    )
    add_model_options(parser)
    parser.add_argument("-c", "--collection", required=True, help="the Qdrant collection (created if missing)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--qdrant-url", help="a Qdrant server or cluster, e.g. http://qdrant:6333 (API key: $QDRANT_API_KEY)"
    )
    where.add_argument("--qdrant-path", help=f"an embedded Qdrant folder (default: {DEFAULT_QDRANT_PATH})")

    fields = parser.add_argument_group("fields")
    fields.add_argument("--id-field", default=None, help="document id field (default: _id or id when present)")
    fields.add_argument(
        "--content-ids", action="store_true", help="ignore any id field: point ids from the content (text + payload)"
    )
    fields.add_argument("--text-field", default="text", help="text field (default: text)")
    fields.add_argument("--title-field", default="title", help="title field, embedded above the text (default: title)")
    fields.add_argument("--payload-fields", default="", help="comma-separated fields copied into the metadata")
    fields.add_argument(
        "--split", default=None, help="the split of a saved DatasetDict (default: corpus or the only one)"
    )
    fields.add_argument(
        "--skip-bad-rows", action="store_true", help="count and skip malformed rows instead of stopping at the first"
    )

    run = parser.add_argument_group("engine")
    run.add_argument(
        "--engine",
        choices=["local", "pool", "ray"],
        default=None,
        help="local: one process; pool: one process per --devices entry; ray: Ray Data (default: pool with "
        "--devices, else local)",
    )
    run.add_argument("--devices", type=_comma_list, default=None, help="pool devices, e.g. cuda:0,cuda:1 or cpu,cpu")
    run.add_argument("--batch-size", type=int, default=32, help="texts per forward pass (default: 32)")
    run.add_argument(
        "--chunk-size", type=int, default=512, help="documents checked, embedded and written together (default: 512)"
    )
    run.add_argument("--ray-address", default=None, help="Ray cluster address, e.g. auto or ray://head:10001")
    run.add_argument("--concurrency", type=int, default=1, help="Ray embedding actors (default: 1)")
    run.add_argument("--num-gpus", type=float, default=0, help="GPUs per Ray actor (default: 0)")
    run.add_argument("--num-cpus", type=float, default=None, help="CPUs per Ray actor (default: Ray's, 1)")
    add_progress_option(parser)
    parser.set_defaults(run=run_index)


def engine_name(args: argparse.Namespace) -> str:
    """``--engine``, or ``pool`` when ``--devices`` is given, else ``local``."""
    return args.engine or ("pool" if args.devices else "local")


def run_index(args: argparse.Namespace) -> int:
    """Index, print the summary on stderr; 0 when every document landed, 1 when some did not."""
    from laser_integrations.indexing import Fields, IndexReport, index_corpus

    name = engine_name(args)
    fields = Fields(
        id=None if args.content_ids else (args.id_field or "auto"),
        text=args.text_field,
        title=args.title_field or None,
        payload=tuple(_comma_list(args.payload_fields)),
    )
    if args.content_ids and args.id_field:
        raise UserError("pass either --id-field or --content-ids, not both")
    if name != "pool" and args.devices:
        raise UserError(f"--devices is for --engine pool (one process per device), not {name}")
    if name != "ray" and (args.ray_address or args.concurrency != 1 or args.num_gpus or args.num_cpus):
        raise UserError("--ray-address, --concurrency, --num-gpus and --num-cpus need --engine ray")
    if not os.path.exists(args.source):
        raise UserError(f"{args.source}: no such file or folder")
    engine: Any = name
    if name == "ray":
        from laser_integrations.indexing.ray_engine import RayEngine

        engine = RayEngine(
            address=args.ray_address, concurrency=args.concurrency, num_gpus=args.num_gpus, num_cpus=args.num_cpus
        )
        model: Any = args.model  # each actor loads it on its own device
        load_options = load_options_from_args(args)
    else:
        model, load_options = load_model_from_args(args), None
    client = _client(args)
    try:
        report: IndexReport = index_corpus(
            model,
            args.source,
            collection=args.collection,
            client=client,
            engine=engine,
            devices=args.devices if name == "pool" else None,
            fields=fields,
            split=args.split,
            batch_size=args.batch_size,
            chunk_size=args.chunk_size,
            skip_bad_rows=args.skip_bad_rows,
            show_progress_bar=args.progress,
            load_options=load_options,
        )
    finally:
        client.close()
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def _client(args: argparse.Namespace) -> Any:
    from laser_integrations.qdrant import connect

    if args.qdrant_url:
        return connect(url=args.qdrant_url, api_key=os.environ.get("QDRANT_API_KEY") or None)
    path = args.qdrant_path or DEFAULT_QDRANT_PATH
    try:
        return connect(path)
    except RuntimeError as error:  # the folder lock: another process has it open
        raise UserError(f"{path}: {error}") from None


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
