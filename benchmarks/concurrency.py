"""Throughput of concurrent async queries through the micro-batcher vs the same queries one at a time.

Embeds N queries with ``LaSEREmbeddings.aembed_query`` twice per repeat, interleaved: sequentially
(each awaited before the next starts) and concurrently (``asyncio.gather``, coalesced by the
micro-batcher into shared forward passes). Optionally adds the pattern most official integrations
use for async, one ``asyncio.to_thread(model.encode_query, [query])`` per call on the shared model
(no coalescing, no lock). Reports medians and ratios, and appends them to ``benchmarks/RESULTS.md``.

    python benchmarks/concurrency.py                       # offline SmolLM2 on CPU, N = 32 and 128
    python benchmarks/concurrency.py --model laser-qwen3 --device cuda --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

import torch
from results_file import write_section

from laser_integrations import load_model
from laser_integrations.langchain import LaSEREmbeddings

SECTION = "## Concurrency (benchmarks/concurrency.py)"

TOPICS = [
    "the sky look blue at noon",
    "a mutable default argument keep items between calls",
    "photosynthesis store energy in glucose",
    "my asyncio task never finish when I forget to await it",
    "sunsets look red",
    "a Python dict keep insertion order",
    "tides follow the moon",
    "my pandas merge duplicate rows",
]
FORMS = [
    "why does {}?",
    "Can someone explain in simple words why {} even when nothing else changed?",
    "how come {}",
    "I read that {} - is that true, and what is the mechanism behind it, step by step?",
]


def make_queries(n: int) -> list[str]:
    """N distinct queries of varied length (so batches need real padding)."""
    return [f"{FORMS[i % len(FORMS)].format(TOPICS[i % len(TOPICS)])} (case {i})" for i in range(n)]


async def sequential(embeddings: LaSEREmbeddings, queries: list[str]) -> float:
    start = time.perf_counter()
    for query in queries:
        await embeddings.aembed_query(query)
    return time.perf_counter() - start


async def concurrent(embeddings: LaSEREmbeddings, queries: list[str]) -> float:
    start = time.perf_counter()
    await asyncio.gather(*(embeddings.aembed_query(query) for query in queries))
    return time.perf_counter() - start


async def to_thread_per_call(embeddings: LaSEREmbeddings, queries: list[str]) -> float:
    """What e.g. LlamaIndex's HuggingFaceEmbedding does for async: a thread per call, no coalescing."""
    model = embeddings.client
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(model.encode_query, [query]) for query in queries))
    return time.perf_counter() - start


async def measure(embeddings: LaSEREmbeddings, sizes: list[int], repeats: int, baseline: bool) -> dict:
    modes = {"sequential": sequential, "concurrent": concurrent, "to_thread": to_thread_per_call}
    # The baseline runs at the smallest size only: it costs as much as the sequential run.
    chosen = {n: [m for m in modes if m != "to_thread" or (baseline and n == min(sizes))] for n in sizes}
    timings: dict[int, dict[str, list[float]]] = {n: {mode: [] for mode in chosen[n]} for n in sizes}
    for repeat in range(repeats):
        for n in sizes:
            queries = make_queries(n)
            for mode in chosen[n]:  # interleaved: every repeat runs every mode once
                run = modes[mode]
                try:
                    timings[n][mode].append(await run(embeddings, queries))
                except Exception as error:  # report, do not hide, a baseline that breaks under concurrency
                    print(f"{mode} failed at N={n}: {type(error).__name__}: {error}", file=sys.stderr)
                    timings[n][mode].append(float("nan"))
                print(f"repeat {repeat + 1} N={n} {mode}: {timings[n][mode][-1]:.2f} s", file=sys.stderr)
    return timings


def breakdown(embeddings: LaSEREmbeddings, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per query of one encode call, alone vs in a batch, prefill only (K=1) vs K=3.

    Batching can only save what a lone query wastes: this bounds the speed-up of coalescing.
    """
    model, queries = embeddings.client, make_queries(batch)
    cases = {
        "alone_k1": lambda: model.encode_query(queries[:1], num_thinking_steps=1),
        "alone_k3": lambda: model.encode_query(queries[:1], num_thinking_steps=3),
        "batch_k1": lambda: model.encode_query(queries, num_thinking_steps=1, batch_size=batch),
        "batch_k3": lambda: model.encode_query(queries, num_thinking_steps=3, batch_size=batch),
    }
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, run in cases.items():
            start = time.perf_counter()
            run()
            seconds[name].append((time.perf_counter() - start) / (batch if name.startswith("batch") else 1))
    return {name: statistics.median(values) for name, values in seconds.items()}


def report(
    timings: dict, args: argparse.Namespace, forward_passes: dict[int, int], per_query: dict[str, float]
) -> str:
    has_baseline = any("to_thread" in modes for modes in timings.values())
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/concurrency.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
        f"Model `{args.model}` on {args.device or 'cpu'} in {args.loaded_dtype}, prefix cache "
        f"{'on' if args.prefix_cache else 'off'}, torch {torch.__version__} with {torch.get_num_threads()} "
        f"intra-op threads, Python {platform.python_version()}, batch size {args.batch_size}, max wait "
        f"{args.max_wait_ms} ms, K = model default. {args.repeats} interleaved repeats, medians. 1-minute load "
        f"average {args.load_before:.1f} before and {os.getloadavg()[0]:.1f} after the run on {os.cpu_count()} CPUs "
        "(a shared machine): compare ratios within this run rather than absolute times.",
        "",
        "| N queries | sequential (s) | concurrent (s) | speed-up | queries/s seq | queries/s conc | passes/run |"
        + (" to_thread per call (s) |" if has_baseline else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if has_baseline else ""),
    ]
    for n, modes in timings.items():
        seq, conc = statistics.median(modes["sequential"]), statistics.median(modes["concurrent"])
        row = (
            f"| {n} | {seq:.2f} | {conc:.2f} | {seq / conc:.1f}x | {n / seq:.1f} | {n / conc:.1f} | "
            f"{forward_passes[n]} |"
        )
        if has_baseline:
            row += f" {statistics.median(modes['to_thread']):.2f} |" if "to_thread" in modes else " - |"
        lines.append(row)
    lines += [
        "",
        "Sequential: each `aembed_query` awaited before the next. Concurrent: all N gathered at once; the "
        "micro-batcher coalesces them into shared forward passes (passes/run: forward passes of one concurrent "
        "run, counted with a hook). to_thread: one `asyncio.to_thread(model.encode_query, [q])` per query.",
        "",
        f"Where the time goes (seconds per query of one `encode_query` call, medians of {args.repeats}):",
        "",
        "| | K=1 (prefill only) | K=3 (prefill + 2 latent steps) |",
        "|---|---|---|",
        f"| one query alone | {per_query['alone_k1']:.3f} | {per_query['alone_k3']:.3f} |",
        f"| in a batch of {min(args.sizes)} | {per_query['batch_k1']:.3f} | {per_query['batch_k3']:.3f} |",
        "",
        f"Coalescing cannot beat {per_query['alone_k3'] / per_query['batch_k3']:.1f}x here (alone K=3 / batched K=3): "
        "a batch shares the memory-bound latent steps and the per-call overhead, while the prefill of each query "
        "is compute that batching does not remove.",
        "",
    ]
    return "\n".join(lines)


def count_passes(embeddings: LaSEREmbeddings, n: int) -> int:
    passes = 0

    def hook(*_: object) -> None:
        nonlocal passes
        passes += 1

    handle = embeddings.client[0].register_forward_hook(hook)
    try:
        asyncio.run(concurrent(embeddings, make_queries(n)))
    finally:
        handle.remove()
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="model spec (default: the offline SmolLM2 demo model)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128], help="numbers of concurrent queries")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (medians are reported)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--dtype", default=None, help="float32, bfloat16 or auto (default: the device's default)")
    parser.add_argument(
        "--prefix-cache", action=argparse.BooleanOptionalAction, default=True, help="the shared-prefix KV cache (on)"
    )
    parser.add_argument("--baseline", action="store_true", help="also time one to_thread call per query")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    args.load_before = os.getloadavg()[0]
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model, device=args.device, dtype=args.dtype, prefix_cache=args.prefix_cache)
    args.loaded_dtype = str(model[0].model.dtype).removeprefix("torch.")
    embeddings = LaSEREmbeddings(model, batch_size=args.batch_size, max_wait_ms=args.max_wait_ms)
    asyncio.run(concurrent(embeddings, make_queries(4)))  # warm up
    timings = asyncio.run(measure(embeddings, args.sizes, args.repeats, args.baseline))
    passes = {n: count_passes(embeddings, n) for n in args.sizes}
    per_query = breakdown(embeddings, min(args.sizes), args.repeats)
    text = report(timings, args, passes, per_query)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
