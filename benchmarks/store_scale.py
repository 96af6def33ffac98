"""How the stores behind ``laser index`` scale: ingest, reopen, memory, query latency and recall at 100k-1M points.

Random unit vectors (1024-dim, LaSER-Qwen3-0.6B's size), regenerated chunk by chunk from a seed so neither
the writer nor the exact top-10 ever holds the whole matrix. Per store:

- ingest rate (upsert batches through the :class:`~laser_integrations.stores.Store` seam, then close);
- reopen time and peak private memory (anonymous RSS, sampled; memory-mapped vectors are not private) in a
  fresh process, which then answers the queries;
- query p50/p95 (top 10) and recall@10 against the numpy brute-force top 10;
- disk size of the folder.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/store_scale.py --points 1000000 --stores edge --folder /tmp/scale
    python benchmarks/store_scale.py --points 100000 --stores edge,edge-int8,edge-hnsw,local --folder /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

CHUNK = 10_000


def chunk_vectors(index: int, dimension: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng([seed, index]).standard_normal((CHUNK, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def point_id(row: int) -> str:
    return str(uuid.UUID(int=row + 1))


def open_kind(kind: str, folder: Path):
    from laser_integrations.stores import open_store

    return open_store("local" if kind == "local" else "edge", path=folder / kind)  # Edge finds its index record


def ingest(kind: str, folder: Path, points: int, dimension: int, seed: int, batch: int) -> dict:
    from laser_integrations.provenance import EmbeddingProvenance

    started = time.perf_counter()
    store = open_kind(kind, folder)
    store.ensure(EmbeddingProvenance("random-unit-vectors", 0, "", dimension, "plain"))
    for index in range(points // CHUNK):
        vectors = chunk_vectors(index, dimension, seed)
        for start in range(0, CHUNK, batch):
            rows = range(index * CHUNK + start, index * CHUNK + start + batch)
            store.upsert([point_id(r) for r in rows], vectors[start : start + batch], [{"row": r} for r in rows])
    store.close()
    seconds = time.perf_counter() - started
    result = {"ingest_s": round(seconds, 1), "ingest_per_s": round(points / seconds)}
    if kind.startswith("edge-"):
        store = open_kind(kind, folder)
        started = time.perf_counter()
        store.build_index(kind.removeprefix("edge-"))
        store.close()
        result["index_build_s"] = round(time.perf_counter() - started, 1)
    return result


def private_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    return 0


def reopen_and_query(kind: str, folder: Path, points: int, dimension: int, seed: int, queries: int) -> dict:
    """Run in a fresh process: open the folder, answer the queries, report time, memory and recall."""
    peak = [private_rss_bytes()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], private_rss_bytes())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    store = open_kind(kind, folder)
    count = store.count()
    reopen_s = time.perf_counter() - started
    query_vectors = np.random.default_rng([seed, 10**9]).standard_normal((queries, dimension)).astype(np.float32)
    query_vectors /= np.linalg.norm(query_vectors, axis=1, keepdims=True)
    latencies, found = [], []
    for query in query_vectors:
        started = time.perf_counter()
        hits = store.search(query, limit=10)
        latencies.append(time.perf_counter() - started)
        found.append({hit.payload["row"] for hit in hits})
    done.set()
    sampler.join()
    peak_private = max(peak[0], private_rss_bytes())
    store.close()
    truth = exact_top10(query_vectors, points, dimension, seed)
    recall = float(np.mean([len(f & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))
    return {
        "count": count,
        "reopen_s": round(reopen_s, 2),
        "peak_private_rss_gb": round(peak_private / 1e9, 2),
        "query_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "query_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "recall_at_10": round(recall, 3),
    }


def exact_top10(queries: np.ndarray, points: int, dimension: int, seed: int) -> list[list[int]]:
    best_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_rows = np.zeros((len(queries), 10), dtype=np.int64)
    for index in range(points // CHUNK):
        scores = queries @ chunk_vectors(index, dimension, seed).T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        scores_all = np.concatenate([best_scores, np.take_along_axis(scores, top, axis=1)], axis=1)
        rows_all = np.concatenate([best_rows, top + index * CHUNK], axis=1)
        keep = np.argsort(-scores_all, axis=1)[:, :10]
        best_scores, best_rows = np.take_along_axis(scores_all, keep, 1), np.take_along_axis(rows_all, keep, 1)
    return best_rows.tolist()


def disk_gb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e9, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000, help="a multiple of 10,000")
    parser.add_argument("--dimension", type=int, default=1024)
    parser.add_argument("--stores", default="edge", help="comma-separated: edge, edge-int8, edge-hnsw, local")
    parser.add_argument("--folder", type=Path, required=True, help="an empty folder per run (one per store)")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reopen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for kind in args.stores.split(","):
        if args.reopen:
            measured = reopen_and_query(kind, args.folder, args.points, args.dimension, args.seed, args.queries)
            print(json.dumps(measured))
            return
        result = {"store": kind, "points": args.points, "dimension": args.dimension}
        result.update(ingest(kind, args.folder, args.points, args.dimension, args.seed, args.batch))
        child = subprocess.run(
            [sys.executable, __file__, "--reopen", "--stores", kind, "--folder", str(args.folder), "--points",
             str(args.points), "--dimension", str(args.dimension), "--seed", str(args.seed), "--queries",
             str(args.queries)],
            capture_output=True, text=True, check=True, timeout=3600,
        )  # fmt: skip
        result.update(json.loads(child.stdout.strip().splitlines()[-1]))
        result["disk_gb"] = disk_gb(args.folder / kind)
        if (args.folder / kind / "wal").exists():
            result["wal_gb"] = disk_gb(args.folder / kind / "wal")
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
