"""Throughput and latency of ``laser serve`` at 1, 8, 32 and 64 concurrent clients: coalescing on vs off.

Starts two ``laser serve`` processes on the same model: the server as shipped (``--max-batch-size 32``:
concurrent requests share forward passes) and the anchor, the same server with coalescing off
(``--max-batch-size 1``: one forward pass per request). Each client sends one short query per request
(OpenAI ``/v1/embeddings``, base64, as the ``openai`` client does) and the next as soon as the answer
arrives. Runs are interleaved (every repeat runs every level on both servers) and medians are reported,
with the minimum cosine between the two servers' vectors for the same queries. Appends the table to
``benchmarks/RESULTS.md``.

    python benchmarks/serve.py                       # offline SmolLM2 on CPU, 1 torch thread per server
    python benchmarks/serve.py --model laser-qwen3 --device cuda --threads 0 --no-write

With ``--big-input-mb N`` it measures instead what one client's huge input costs the others (issue 19): the
p50/p95 of one-text requests on an idle server, then while N MB ``truncate: true`` requests are sent back to
back, the huge requests' own times, and the server's resident memory (printed only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import queue
import re
import statistics
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from results_file import write_section

SECTION = "## Serving (benchmarks/serve.py)"
TOPICS = [
    "the sky look blue at noon",
    "a mutable default argument keep items between calls",
    "photosynthesis store energy in glucose",
    "my asyncio task never finish",
    "sunsets look red",
    "a Python dict keep insertion order",
    "tides follow the moon",
    "my pandas merge duplicate rows",
]


def query(number: int) -> str:
    """A short, distinct query (so every request is real work and vectors can be compared by text)."""
    return f"why does {TOPICS[number % len(TOPICS)]} (case {number})"


class Server:
    """One ``laser serve`` subprocess on a free port."""

    def __init__(self, name: str, args: argparse.Namespace, batch_size: int) -> None:
        self.name = name
        self.model_name = ""
        command = [
            sys.executable, "-m", "laser_integrations.cli", "serve", args.model, "--port", "0",
            "--max-batch-size", str(batch_size), "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning",
            "--max-inputs", "4096",
        ]  # fmt: skip
        if args.threads:
            command += ["--threads", str(args.threads)]
        if args.device:
            command += ["--device", args.device]
        if args.dtype:
            command += ["--dtype", args.dtype]
        self.command = " ".join(command[1:])
        self.process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.url = self._wait_for_url()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)

    def _wait_for_url(self, timeout: float = 600) -> str:
        deadline, seen = time.monotonic() + timeout, []
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
            if found:
                return found.group(1)
        raise RuntimeError(f"{self.name} server did not start: {''.join(seen)[-2000:]}")

    def batch_stats(self) -> tuple[float, float]:
        """(texts in all forward passes, forward passes) so far, from the server's /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=30).text
        values = {}
        for line in text.splitlines():
            if line.startswith(("laser_batch_size_sum ", "laser_batch_size_count ")):
                name, value = line.split()
                values[name] = float(value)
        return values.get("laser_batch_size_sum", 0.0), values.get("laser_batch_size_count", 0.0)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


async def run_level(server: Server, clients: int, requests: int, first: int) -> dict:
    """``clients`` closed-loop clients sending ``requests`` one-query requests in all."""
    latencies: list[float] = []
    vectors: dict[int, np.ndarray] = {}
    numbers = iter(range(first, first + requests))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=600) as client:

        async def one_client() -> None:
            for number in numbers:  # shared iterator: stops when all requests are taken
                body = {"model": f"{server.model_name}:query", "input": [query(number)], "encoding_format": "base64"}
                started = time.perf_counter()
                response = await client.post("/v1/embeddings", json=body)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                encoded = response.json()["data"][0]["embedding"]
                vectors[number] = np.frombuffer(base64.b64decode(encoded), dtype="<f4")

        before = server.batch_stats()
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
        after = server.batch_stats()
    passes = after[1] - before[1]
    return {
        "rps": requests / elapsed,
        "p50": float(np.percentile(latencies, 50)),
        "p95": float(np.percentile(latencies, 95)),
        "batch": (after[0] - before[0]) / passes if passes else float("nan"),
        "vectors": vectors,
    }


def requests_for(clients: int, args: argparse.Namespace) -> int:
    """Enough requests for every client to send a few, bounded so the anchor's slowest run stays short."""
    return max(args.min_requests, min(4 * clients, args.max_requests))


async def measure(servers: list[Server], args: argparse.Namespace) -> dict:
    results: dict[str, dict[int, list[dict]]] = {s.name: {c: [] for c in args.clients} for s in servers}
    for repeat in range(args.repeats):
        for clients in args.clients:
            count = requests_for(clients, args)
            first = 10_000 * (repeat + 1) + 1_000 * clients  # the same queries for both servers in this cell
            order = servers if (repeat + clients) % 2 == 0 else servers[::-1]  # alternate who goes first
            for server in order:
                cell = await run_level(server, clients, count, first)
                results[server.name][clients].append(cell)
                print(
                    f"repeat {repeat + 1} clients {clients:>2} {server.name:>9}: {cell['rps']:.2f} req/s, "
                    f"p50 {cell['p50']:.2f} s, p95 {cell['p95']:.2f} s, {cell['batch']:.1f} texts/pass",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def min_cosine(results: dict) -> float:
    worst = 1.0
    for clients, cells in results["coalesced"].items():
        for coalesced, anchor in zip(cells, results["anchor"][clients], strict=True):
            for number, vector in coalesced["vectors"].items():
                other = anchor["vectors"][number]
                cosine = float(vector @ other / np.linalg.norm(vector) / np.linalg.norm(other))
                worst = min(worst, cosine)
    return worst


def report(results: dict, args: argparse.Namespace, servers: list[Server], wall: float, load: float) -> str:
    def med(name: str, clients: int, key: str) -> float:
        return statistics.median(cell[key] for cell in results[name][clients])

    lines = [
        SECTION,
        "",
        f"Command: `{' '.join(['python', 'benchmarks/serve.py', *sys.argv[1:]])}`",
        "",
        f"Model `{args.model}` on {args.device or 'cpu'} ({args.dtype or 'default dtype'}), "
        f"{args.threads or 'default'} torch thread(s) per server, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs (shared: 1-minute load average {load:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after). Servers: `laser serve {args.model} --max-batch-size 32 "
        f"--max-wait-ms {args.max_wait_ms:g}` (coalesced, with the default `--wait-fraction 0.05`) vs the same with "
        "`--max-batch-size 1` (anchor: one forward pass per request). One short query per request "
        "(`/v1/embeddings`, base64, `:query` side, K = 3); closed-loop clients, each sending its next request when "
        f"its answer arrives; {args.repeats} interleaved repeats, medians. Wall time {wall / 60:.1f} min.",
        "",
        "| clients | requests | anchor req/s | coalesced req/s | speed-up | anchor p50 / p95 (s) "
        "| coalesced p50 / p95 (s) | texts per pass (coalesced) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for clients in args.clients:
        anchor, coalesced = med("anchor", clients, "rps"), med("coalesced", clients, "rps")
        lines.append(
            f"| {clients} | {requests_for(clients, args)} | {anchor:.2f} | {coalesced:.2f} "
            f"| {coalesced / anchor:.1f}x "
            f"| {med('anchor', clients, 'p50'):.2f} / {med('anchor', clients, 'p95'):.2f} "
            f"| {med('coalesced', clients, 'p50'):.2f} / {med('coalesced', clients, 'p95'):.2f} "
            f"| {med('coalesced', clients, 'batch'):.1f} |"
        )
    lines += [
        "",
        f"Same vectors: the minimum cosine between the two servers' vectors for the same queries is "
        f"{min_cosine(results):.6f}.",
        "",
        "At 1 client both servers run one forward pass per request (nothing to coalesce). With more clients the "
        "coalesced server embeds the requests that wait while a pass runs in the next shared pass, so the "
        "memory-bound latent steps and the per-call overhead are paid once per batch instead of once per request.",
        "",
    ]
    return "\n".join(lines)


def one_text_latencies(server: Server, count: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=server.url, timeout=600) as client:
        for number in range(count):
            started = time.perf_counter()
            client.post("/v1/embeddings", json={"input": [query(number)]}).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def memory_mb(server: Server) -> tuple[float, float]:
    """The server process's resident memory now and at its peak (VmRSS, VmHWM), in MiB."""
    fields = {}
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            fields[name] = float(value.split()[0]) / 1024 if name in ("VmRSS", "VmHWM") else None
    return fields["VmRSS"], fields["VmHWM"]


def big_input_check(args: argparse.Namespace) -> str:
    """One-text latency idle and while ``--big-input-mb`` truncated requests run back to back."""
    server = Server("coalesced", args, 32)
    big = ('{"truncate": true, "input": "' + "word " * int(args.big_input_mb * 2**20 / 5) + '"}').encode()
    try:
        one_text_latencies(server, 4)  # warm up
        before = memory_mb(server)
        idle = one_text_latencies(server, args.min_requests)
        done: list[float] = []
        measuring = threading.Event()
        measuring.set()

        def send_big() -> None:
            with httpx.Client(base_url=server.url, timeout=600) as client:
                while measuring.is_set() and len(done) < 1000:
                    started = time.perf_counter()
                    headers = {"content-type": "application/json"}
                    client.post("/v1/embeddings", content=big, headers=headers).raise_for_status()
                    done.append(time.perf_counter() - started)

        sender = threading.Thread(target=send_big)
        sender.start()
        try:
            loaded = one_text_latencies(server, args.min_requests)
        finally:
            measuring.clear()
            sender.join(timeout=600)
        after = memory_mb(server)
    finally:
        server.stop()

    def cell(values: list[float]) -> str:
        return f"{np.percentile(values, 50) * 1000:.1f} / {np.percentile(values, 95) * 1000:.1f}"

    return "\n".join([
        f"Command: `{' '.join(['python', 'benchmarks/serve.py', *sys.argv[1:]])}` ({os.cpu_count()} CPUs, "
        f"1-minute load average {os.getloadavg()[0]:.1f})",
        "",
        "| one-text requests | p50 / p95 (ms) |",
        "|---|---|",
        f"| idle server ({len(idle)}) | {cell(idle)} |",
        f"| while {args.big_input_mb:g} MB truncated requests run back to back ({len(loaded)}) | {cell(loaded)} |",
        "",
        f"{len(done)} {args.big_input_mb:g} MB truncated requests: median {statistics.median(done):.2f} s, "
        f"max {max(done):.2f} s. Server memory (MiB): {before[0]:.0f} resident before, {after[0]:.0f} after, "
        f"peak {after[1]:.0f}.",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="model spec (default: the offline SmolLM2 demo model)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None, help="weights dtype for both servers (default: laser serve's)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats (medians are reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per server (0: torch's default)")
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--min-requests", type=int, default=8, help="fewest requests per run (8)")
    parser.add_argument("--max-requests", type=int, default=128, help="most requests per run (128)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    parser.add_argument("--big-input-mb", type=float, default=None, help="measure huge inputs instead (prints)")
    args = parser.parse_args()
    if args.big_input_mb:
        print(big_input_check(args))
        return
    load = os.getloadavg()[0]
    started = time.perf_counter()
    servers = [Server("coalesced", args, 32), Server("anchor", args, 1)]
    try:
        for server in servers:
            info = httpx.get(f"{server.url}/info", timeout=60).json()
            server.model_name = info["model_id"]
            asyncio.run(run_level(server, 2, 4, 0))  # warm up
        results = asyncio.run(measure(servers, args))
    finally:
        for server in servers:
            server.stop()
    text = report(results, args, servers, time.perf_counter() - started, load)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
