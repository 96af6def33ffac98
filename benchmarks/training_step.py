"""What does one LaSER training step cost over a contrastive-only step on the same model and batch?

On the real SmolLM2-135M-Instruct (offline, float32, CPU, LoRA r=64 / alpha=32 on all projections as in
the released recipe) it times, with interleaved repeats in one process, a full optimizer step
(zero_grad, loss, backward, AdamW) for:

- ``laser``: ``LaSERLoss`` (latent view of queries and passages, explicit view of query + rationale,
  all four terms);
- ``contrastive``: ``LaSERLoss(explicit_view=False)``, i.e. latent-view InfoNCE over the same B*G
  passages (the paper's "no explicit view" ablation, GIRCSE-like);
- ``st-mnrl``: sentence-transformers' ``MultipleNegativesRankingLoss`` (scale 50 = 1/0.02) on the same
  query and passage columns, per-column forwards (its column merging pads on the right, which the
  latent loop refuses).

Batches come through the real ``SentenceTransformerTrainer`` collator from pyref queries and passages
with a synthetic three-paragraph rationale. Each variant's peak memory above the loaded model is measured
in a fresh subprocess (peak RSS growth over one step, sampled every millisecond, after a warm-up step on
a one-row batch that allocates the optimizer state). Results go to benchmarks/RESULTS.md (section
"Training step").

    python benchmarks/training_step.py --threads 1     # ~6 minutes on a busy 2-core machine
    python benchmarks/training_step.py --batch-size 4 --passage-tokens 256 --rationale-tokens 256  # bigger
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch
from results_file import write_section

from laser_integrations import load_model
from laser_integrations.loading import demo_checkpoint
from laser_integrations.training import LaSERLoss, TrainConfig, add_lora, prepare_laser_dataset

DATA = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref"
SECTION = "## Training step (benchmarks/training_step.py)"
VARIANTS = ("laser", "contrastive", "st-mnrl")


def load(passage_tokens: int):
    model = load_model(demo_checkpoint(), device="cpu", dtype="float32")
    model[0].max_seq_length = passage_tokens
    torch.manual_seed(0)
    add_lora(model, TrainConfig())  # the released r=64, alpha=32, dropout 0.1 on q,k,v,o,gate,up,down
    model.train()
    return model


def raw_rows(batch_size: int, rationale_tokens: int, tokenizer) -> list[dict[str, str]]:
    """pyref queries with their first relevant passage, a hard negative (another query's passage), a rationale."""
    corpus = {row["_id"]: row for row in map(json.loads, (DATA / "corpus.jsonl").read_text().splitlines())}
    queries = [json.loads(line) for line in (DATA / "queries.jsonl").read_text().splitlines()]
    qrels = {}
    for line in (DATA / "qrels/test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        qrels.setdefault(query_id, doc_id)
    picked = [query for query in queries if query["_id"] in qrels][: batch_size + 1]
    rows = []
    for index, query in enumerate(picked[:batch_size]):
        positive = corpus[qrels[query["_id"]]]["text"]
        negative = corpus[qrels[picked[index + 1]["_id"]]]["text"]
        draft = tokenizer.decode(tokenizer(positive, add_special_tokens=False)["input_ids"][: rationale_tokens - 40])
        rationale = f"The essential problem: {query['text']}\n\nRelevant information: {draft}\n\nDraft answer: above."
        rows.append({"query": query["text"], "rationale": rationale, "positive": positive, "negative": negative})
    return rows


def collated(model, rows):
    """Per-column features exactly as SentenceTransformerTrainer hands them to a loss."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    dataset = prepare_laser_dataset(rows, num_negatives=1)
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(output_dir=scratch, report_to="none", use_cpu=True)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=LaSERLoss(model))
        features, _ = trainer.collect_features(trainer.data_collator([dataset[i] for i in range(len(dataset))]))
    return features


def make_step(model, variant: str):
    from sentence_transformers.base.losses.merged_forward import column_merging_disabled
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if variant == "st-mnrl":
        mnrl = MultipleNegativesRankingLoss(model, scale=1 / 0.02)

        def loss_fn(features):
            with column_merging_disabled():
                return mnrl(features[:-1], None)  # query, positive, negative (the pair column left out)
    else:
        laser = LaSERLoss(model, explicit_view=variant == "laser")

        def loss_fn(features):
            return sum(laser(features).values())

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(features) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn([dict(columns) for columns in features])
        loss.backward()
        optimizer.step()
        return loss.item()

    return step


def current_rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(variant: str, args: argparse.Namespace) -> None:
    """Subprocess entry: print the peak RSS growth (MiB) of one full step of ``variant``."""
    model = load(args.passage_tokens)
    rows = raw_rows(args.batch_size, args.rationale_tokens, model[0].tokenizer)
    features, warm = collated(model, rows), collated(model, rows[:1])
    step = make_step(model, variant)
    step(warm)  # allocates gradients and the AdamW state
    baseline, peak, done = current_rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], current_rss_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    step(features)
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": peak[0] - baseline}))


def peak_memory(variant: str, args: argparse.Namespace) -> float:
    command = [sys.executable, __file__, "--memory-child", variant, *shape_args(args), *thread_args(args)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_mib"]


def shape_args(args: argparse.Namespace) -> list[str]:
    return [
        "--batch-size", str(args.batch_size),
        "--passage-tokens", str(args.passage_tokens),
        "--rationale-tokens", str(args.rationale_tokens),
    ]  # fmt: skip


def thread_args(args: argparse.Namespace) -> list[str]:
    return ["--threads", str(args.threads)] if args.threads else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=2, help="queries per step (group size 2: 2B passages)")
    parser.add_argument("--passage-tokens", type=int, default=128, help="max_seq_length of queries and passages")
    parser.add_argument("--rationale-tokens", type=int, default=128, help="approximate rationale length")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--memory-child", metavar="VARIANT", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args)
        return

    model = load(args.passage_tokens)
    rows = raw_rows(args.batch_size, args.rationale_tokens, model[0].tokenizer)
    features = collated(model, rows)
    shapes = {
        "query": tuple(features[0]["input_ids"].shape),
        "passages": tuple(features[1]["input_ids"].shape),
        "explicit": tuple(features[-1]["input_ids"].shape),
    }
    print("token shapes", shapes, flush=True)
    steps = {variant: make_step(model, variant) for variant in VARIANTS}
    for variant in VARIANTS:  # warm-up, untimed
        steps[variant](features)
    # Wall time, and this process's CPU time: on a machine shared with other jobs the CPU time of a
    # single-threaded run is the steadier measure of the work a step does.
    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    cpu: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for repeat in range(args.repeats):
        order = VARIANTS[repeat % len(VARIANTS) :] + VARIANTS[: repeat % len(VARIANTS)]
        for variant in order:
            start, start_cpu = time.perf_counter(), time.process_time()
            steps[variant](features)
            times[variant].append(time.perf_counter() - start)
            cpu[variant].append(time.process_time() - start_cpu)
        shown = {variant: f"{times[variant][-1]:.2f} s (cpu {cpu[variant][-1]:.2f} s)" for variant in VARIANTS}
        print(f"repeat {repeat + 1}:", shown, flush=True)
    medians = {variant: statistics.median(values) for variant, values in times.items()}
    cpu_medians = {variant: statistics.median(values) for variant, values in cpu.items()}

    memory: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for _ in range(args.memory_repeats):
        for variant in VARIANTS:
            memory[variant].append(peak_memory(variant, args))
    memory_medians = {variant: statistics.median(values) for variant, values in memory.items()}
    print("peak memory", {v: f"{m:.0f} MiB" for v, m in memory_medians.items()}, flush=True)

    report = render(args, shapes, times, medians, cpu_medians, memory, memory_medians)
    print(report)
    if not args.no_write:
        write_section(report)


def render(args, shapes, times, medians, cpu_medians, memory, memory_medians) -> str:
    command = f"python benchmarks/training_step.py --repeats {args.repeats} --memory-repeats {args.memory_repeats}"
    if [args.batch_size, args.passage_tokens, args.rationale_tokens] != [2, 128, 128]:
        command += " " + " ".join(shape_args(args))
    command += "".join(" " + arg for arg in thread_args(args))
    laser, base = medians["laser"], medians["contrastive"]
    lines = [
        SECTION,
        "",
        f"Command: `{command}`",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end), {torch.get_num_threads()} torch threads, torch {torch.__version__}. "
        "SmolLM2-135M-Instruct float32 on CPU, LoRA r=64 alpha=32 dropout 0.1 on q,k,v,o,gate,up,down (released "
        f"recipe), K=3, B={args.batch_size} queries x group size 2 (B*G={2 * args.batch_size} passages, all "
        "candidates for every query). A step is zero_grad + loss + backward + AdamW. Medians of "
        f"{args.repeats} interleaved repeats (order rotated) after one warm-up step each.",
        f"Token shapes (rows x padded length): queries {shapes['query']}, each passage column {shapes['passages']}, "
        f"explicit view (query + rationale + EOS) {shapes['explicit']}.",
        "",
        "| step | median wall time | per-repeat wall times | wall vs contrastive | median CPU time | CPU vs "
        "contrastive | peak memory above the model (per run) |",
        "|---|---|---|---|---|---|---|",
    ]
    names = {
        "laser": "LaSER (4 terms, both views)",
        "contrastive": "contrastive only (latent InfoNCE, same passages)",
        "st-mnrl": "ST MultipleNegativesRankingLoss (latent view)",
    }
    for variant in VARIANTS:
        runs = ", ".join(f"{t:.2f}" for t in times[variant])
        mems = ", ".join(f"{m:.0f}" for m in memory[variant])
        lines.append(
            f"| {names[variant]} | {medians[variant]:.2f} s | {runs} | {medians[variant] / base:.2f}x | "
            f"{cpu_medians[variant]:.2f} s | {cpu_medians[variant] / cpu_medians['contrastive']:.2f}x | "
            f"{memory_medians[variant]:.0f} MiB ({mems}) |"
        )
    cpu_ratio = cpu_medians["laser"] / cpu_medians["contrastive"]
    verdict = "meets" if max(laser / base, cpu_ratio) <= 2.2 else "misses"
    lines += [
        "",
        f"LaSER / contrastive step: {laser / base:.2f}x wall, {cpu_ratio:.2f}x CPU time ({verdict} the <= 2.2x "
        "target); peak memory "
        f"{memory_medians['laser'] / max(memory_medians['contrastive'], 1e-9):.2f}x. The extra cost is the "
        "explicit-view forward and backward over query + rationale (the longest sequences of the batch); the KL "
        "terms themselves are B x B*G and B*K x B*G matrices. Peak memory is the peak RSS growth over one step "
        "in a fresh process after a one-row warm-up step, so it counts activations and temporaries, not weights "
        "or optimizer state.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
