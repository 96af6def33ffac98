"""``laser index``: embed a corpus into a store (a Qdrant Edge folder, local mode, a server), resumably, on one
process, several devices or Ray.

>>> import argparse
>>> parser = argparse.ArgumentParser(prog="laser")
>>> register(parser.add_subparsers(dest="command"))
>>> args = parser.parse_args(["index", "corpus.jsonl", "-m", "smollm2", "--path", "idx", "--devices", "cpu,cpu"])
>>> engine_name(args), args.devices, store_kind(args)
('pool', ['cpu', 'cpu'], 'edge')
>>> store_kind(parser.parse_args(["index", "c.jsonl", "-m", "smollm2", "--qdrant-url", "http://q:6333"]))
'server'
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

from laser_integrations.cli.options import (
    UserError,
    add_model_options,
    add_progress_option,
    load_options_from_args,
    print_dtype_choice,
)
from laser_integrations.indexing.duplicates import ON_DUPLICATE
from laser_integrations.indexing.job import DEFAULT_QDRANT_PATH, CapacityWarning
from laser_integrations.indexing.sources import MAX_PAYLOAD_CHARS
from laser_integrations.stores import STORE_KINDS

if TYPE_CHECKING:
    from laser_integrations.stores import Store


def register(subparsers: Any) -> None:
    """Add ``index`` to an ``argparse`` subparsers object (it sets ``run``)."""
    parser = subparsers.add_parser(
        "index",
        help="embed a corpus (JSONL, Parquet, BEIR folder, saved dataset) into a vector store, resumably",
        description=(
            "Embed every document of SOURCE (title + text, document side, the model's K) into a store that records "
            "the model's provenance. Point ids come from the document ids (or the content), and ids already stored "
            "are not embedded again: rerun the same command to finish an interrupted job. The store: a Qdrant Edge "
            f"folder (--path, default {DEFAULT_QDRANT_PATH}), qdrant-client's local mode (--store local, small "
            "collections only) or a Qdrant server (--qdrant-url)."
        ),
    )
    parser.add_argument(
        "source",
        metavar="SOURCE",
        help="a .jsonl/.jsonl.gz/.parquet file, a BEIR folder (corpus.jsonl), a folder saved by datasets' "
        "save_to_disk, or a folder of .jsonl or .parquet files",
    )
    add_model_options(parser)
    where = parser.add_argument_group("store")
    where.add_argument(
        "--store",
        choices=list(STORE_KINDS),
        default=None,
        help="edge: a Qdrant Edge folder, millions of points (default); local: qdrant-client's local mode, up to "
        "20,000 points; server: a Qdrant server or cluster (default with --qdrant-url)",
    )
    where.add_argument("--path", default=None, help=f"the store's folder (default: {DEFAULT_QDRANT_PATH})")
    where.add_argument(
        "--qdrant-url", help="a Qdrant server or cluster, e.g. http://qdrant:6333 (API key: $QDRANT_API_KEY)"
    )
    where.add_argument("--qdrant-path", help="a local-mode folder: the same as --store local --path DIR")
    where.add_argument(
        "-c", "--collection", default=None, help="the collection (local and server stores; default: laser)"
    )

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
        "--skip-bad-rows",
        action="store_true",
        help="count and skip malformed rows (each one exactly, named by file and line) instead of stopping at the "
        "first",
    )
    fields.add_argument(
        "--on-duplicate",
        choices=list(ON_DUPLICATE),
        default="first",
        help="rows that repeat an id: index the first (default) or the last, or refuse the corpus (error)",
    )
    fields.add_argument(
        "--max-payload-chars",
        type=int,
        default=MAX_PAYLOAD_CHARS,
        help=f"cap on the text stored in each point's payload (default: {MAX_PAYLOAD_CHARS}; 0: no cap)",
    )

    run = parser.add_argument_group("engine")
    run.add_argument(
        "--engine",
        choices=["local", "pool", "ray"],
        default=None,
        help="local: one process; pool: one process per --devices entry; ray: Ray actors (default: pool with "
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
    run.add_argument("--num-cpus", type=float, default=None, help="CPUs per Ray actor (default: 1)")
    add_progress_option(parser)
    parser.set_defaults(run=run_index)


def engine_name(args: argparse.Namespace) -> str:
    """``--engine``, or ``pool`` when ``--devices`` is given, else ``local``."""
    return args.engine or ("pool" if args.devices else "local")


def store_kind(args: argparse.Namespace) -> str:
    """``--store``, or ``server`` with ``--qdrant-url``, ``local`` with ``--qdrant-path``, else ``edge``."""
    if args.store is not None:
        return args.store
    return "server" if args.qdrant_url else ("local" if args.qdrant_path else "edge")


def run_index(args: argparse.Namespace) -> int:
    """Open the store (refused at once if another process holds it), index, print the summary on stderr.

    Exits 0 when every document landed, 1 when some did not.
    """
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
    if args.max_payload_chars < 0:
        raise UserError(f"--max-payload-chars must be >= 0 (0: no cap), got {args.max_payload_chars}")
    if not os.path.exists(args.source):
        raise UserError(f"{args.source}: no such file or folder")
    engine: Any = name
    if name == "ray":
        from laser_integrations.indexing.ray_engine import RayEngine

        engine = RayEngine(
            address=args.ray_address, concurrency=args.concurrency, num_gpus=args.num_gpus, num_cpus=args.num_cpus
        )
    store = open_store_from_args(args)  # the folder lock, before the model loads
    try:
        print_dtype_choice(args)
        with warnings.catch_warnings():
            warnings.simplefilter("always", CapacityWarning)
            warnings.showwarning = _show_warning
            report: IndexReport = index_corpus(
                args.model,  # loaded by the engine once the store is open and checked
                args.source,
                store=store,
                engine=engine,
                devices=args.devices if name == "pool" else None,
                fields=fields,
                split=args.split,
                batch_size=args.batch_size,
                chunk_size=args.chunk_size,
                skip_bad_rows=args.skip_bad_rows,
                on_duplicate=args.on_duplicate,
                max_payload_chars=args.max_payload_chars or None,
                show_progress_bar=args.progress,
                load_options=load_options_from_args(args),
            )
    finally:
        store.close()
    print(report.summary(), file=sys.stderr)
    return 0 if report.ok else 1


def open_store_from_args(args: argparse.Namespace) -> Store:
    """The store ``--store``/``--path``/``--qdrant-url``/``--qdrant-path``/``--collection`` name, opened."""
    from laser_integrations.stores import StoreLockedError, open_store

    kind = store_kind(args)
    if args.qdrant_path and (args.path or kind != "local"):
        raise UserError("--qdrant-path is the local-mode folder: pass either it or --store/--path")
    if args.qdrant_url and kind != "server":
        raise UserError(f"--qdrant-url is a server: it does not go with --store {kind}")
    path = args.qdrant_path or args.path
    if kind == "server":
        if path:
            raise UserError("--path is for the edge and local stores; a server store takes --qdrant-url")
        if not args.qdrant_url:
            raise UserError("--store server needs --qdrant-url URL")
        return open_store(
            "server", url=args.qdrant_url, collection=args.collection, api_key=os.environ.get("QDRANT_API_KEY") or None
        )
    path = path or DEFAULT_QDRANT_PATH
    if kind == "edge":
        if args.collection:
            raise UserError("an Edge folder holds one collection: drop --collection, or pick the folder with --path")
        if _is_local_mode_folder(path):
            raise UserError(
                f"{path} is a qdrant-client local-mode folder: pass --store local to add to it, or another --path "
                "for a Qdrant Edge folder"
            )
    try:
        return open_store(kind, path=path, collection=args.collection if kind == "local" else None)
    except (StoreLockedError, RuntimeError) as error:  # local mode's own folder lock is a RuntimeError
        raise UserError(f"{path}: {error}") from None


def _is_local_mode_folder(path: str) -> bool:
    """A folder qdrant-client's local mode wrote (its ``meta.json``), not a Qdrant Edge shard."""
    is_edge = os.path.exists(os.path.join(path, "edge_config.json"))
    return os.path.isfile(os.path.join(path, "meta.json")) and not is_edge


def _show_warning(message: Any, *args: Any, **kwargs: Any) -> None:
    print(f"laser index: warning: {message}", file=sys.stderr)


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
