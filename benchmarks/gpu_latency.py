"""GPU latency of the latent loop: plain loop vs the static-cache / CUDA-graph fast path vs the authors' loop,
against a standard single pass, on models built from the real Qwen3 configurations with random weights.

One command, one run, on a lent GPU. Nothing is downloaded; everything goes to ``--output`` (JSON) and, for
a real GPU run, to the "GPU latency" section of benchmarks/RESULTS.md::

    PYTHONPATH=src python benchmarks/gpu_latency.py --device cuda --output gpu_latency.json

The JSON of such a run can be turned into that section later, on any machine (for a run whose RESULTS.md
stayed on the GPU machine)::

    python benchmarks/gpu_latency.py --render-from gpu_latency.json

A dry run takes every code path on a shrunken configuration and tiny shapes in well under a minute on CPU,
and writes only ``--output`` (never RESULTS.md)::

    python benchmarks/gpu_latency.py --device cpu --dry-run --output /tmp/gpu_latency.json

Per model (Qwen3-0.6B, then Qwen3-8B while ``--budget-s`` lasts; bf16 weights, SDPA attention):

- exactness: fast path vs plain loop, min cosine and max abs difference, in float32 and in bf16, on mixed-length
  query batches of 8 and 5 (batch-bucket padding) and on 8 x 256 tokens, K = 3 and 6; plus the plain loop vs
  the authors' loop and the single pass vs plain K = 1, as sanity checks;
- latency: query batches of 1, 8 and 32 (about 30 tokens, mixed lengths, left padded), 8 x 256 tokens, and
  document throughput at 32 x 512 tokens; for K = 1, 3, 6 on the plain loop (``latent.latent_thinking``), the
  fast path (``fast_path.latent_thinking_static``; K = 1 is the plain loop by construction) and the authors'
  loop (the LM wrapper with ``output_hidden_states=True``, full-sequence logits at every step), and for the
  single-pass anchor (the backbone plus last-token pooling; for the 0.6B model also sentence-transformers'
  ``Transformer`` + ``Pooling("lasttoken")`` + ``Normalize`` on the same weights, saved to a temporary folder);
  medians of interleaved repeats (order rotated each repeat), ``torch.cuda.synchronize`` around every call,
  after untimed warm-up calls (the fast path's first call in a bucket captures its CUDA graph);
- memory: ``torch.cuda.max_memory_allocated`` above what was allocated before a method's first call, for its
  first call and a steady call (the fast path's kept static cache and graph are included in the latter).

Targets printed next to the results: K=3 / K=1 <= 1.15x at 8 x 256 tokens (fast path); fast >= 2x the authors'
loop at batch 1 (K = 3); document throughput at K = 3 >= 0.9x the single-pass anchor (32 x 512 tokens).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import logging
import platform
import shlex
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from results_file import write_section
from transformers import Qwen3Config, Qwen3ForCausalLM

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("laser_integrations") is None:  # a bare GPU machine: run from the checkout
    sys.path.insert(0, str(ROOT / "src"))

from laser_integrations import fast_path  # noqa: E402
from laser_integrations.latent import cache_keyword, latent_thinking  # noqa: E402

SECTION = "## GPU latency (benchmarks/gpu_latency.py)"
COMMON = {"max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "attn_implementation": "sdpa"}
REAL_CONFIGS = {
    "qwen3-0.6b": dict(
        hidden_size=1024,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=3072,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen3-8b": dict(
        hidden_size=4096,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        intermediate_size=12288,
        vocab_size=151936,
        tie_word_embeddings=False,
    ),
}
_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
DRY_CONFIGS = {
    "qwen3-0.6b": dict(_TINY, intermediate_size=128, vocab_size=1024, tie_word_embeddings=True),
    "qwen3-8b": dict(_TINY, intermediate_size=128, vocab_size=1024, tie_word_embeddings=False),
}
# name: (batch, tokens, mixed lengths). Queries are ~30 tokens of mixed length, left padded.
# The three shapes the targets read come first, so a tight --budget-s skips the others.
SHAPES = {
    "query 1x30": (1, 30, True),
    "8x256": (8, 256, False),
    "docs 32x512": (32, 512, False),
    "query 8x30": (8, 30, True),
    "query 32x30": (32, 30, True),
}
DRY_SHAPES = {
    "query 1x30": (1, 8, True),
    "8x256": (2, 16, False),
    "docs 32x512": (4, 32, False),
    "query 8x30": (3, 8, True),
    "query 32x30": (5, 8, True),
}
STEPS = (1, 3, 6)
ST_ANCHOR_MAX_PARAMETERS = 2_000_000_000  # saving and reloading the 8B model would eat the time budget

Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# -- the methods ---------------------------------------------------------------------------------------


@torch.no_grad()
def authors_latent(causal_lm, input_ids, attention_mask, steps: int) -> torch.Tensor:
    """The authors' loop (as ``naive_latent`` in latent_overhead.py): the LM wrapper with
    ``output_hidden_states=True``, so every step computes logits for all positions and keeps every layer's
    hidden states; the KV cache is reused."""
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
        inputs = (torch.softmax(output.logits[:, -1].float(), dim=-1).to(table.dtype) @ table).unsqueeze(1)
    return F.normalize(torch.stack(states, 1).float().mean(1), dim=-1)


@torch.no_grad()
def plain_latent(causal_lm, input_ids, attention_mask, steps: int) -> torch.Tensor:
    return latent_thinking(causal_lm, input_ids, attention_mask, steps).embedding


@torch.no_grad()
def fast_latent(causal_lm, input_ids, attention_mask, steps: int) -> torch.Tensor:
    return fast_path.latent_thinking_static(causal_lm, input_ids, attention_mask, steps).embedding


@torch.no_grad()
def single_pass(causal_lm, input_ids, attention_mask) -> torch.Tensor:
    """A standard single-pass retriever: the backbone (as sentence-transformers' ``Transformer`` calls it,
    mask only) and last-token pooling."""
    hidden = causal_lm.base_model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return F.normalize(hidden.last_hidden_state[:, -1].float(), dim=-1)


@torch.no_grad()
def st_single_pass(st_model, input_ids, attention_mask) -> torch.Tensor:
    return st_model({"input_ids": input_ids, "attention_mask": attention_mask})["sentence_embedding"]


def build_methods(causal_lm, st_model) -> dict[str, Method]:
    methods: dict[str, Method] = {}
    for label, function in (("plain", plain_latent), ("fast", fast_latent), ("authors", authors_latent)):
        for steps in STEPS:
            methods[f"{label} K={steps}"] = partial(function, causal_lm, steps=steps)
    methods["single pass"] = partial(single_pass, causal_lm)
    if st_model is not None:
        methods["single pass (ST)"] = partial(st_single_pass, st_model)
    return methods


# -- models and inputs ---------------------------------------------------------------------------------


def build_model(config_kwargs: dict, device: torch.device, seed: int) -> Qwen3ForCausalLM:
    """A Qwen3 causal LM with this configuration and random (seeded) float32 weights, built on ``device``."""
    config = Qwen3Config(**COMMON, **config_kwargs)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen3ForCausalLM(config)
    return model.eval()


def make_batch(batch: int, tokens: int, mixed: bool, vocab: int, device: torch.device, seed: int):
    """Random ids; mixed-length rows (tokens +- 6) are left padded with id 0 and mask 0."""
    generator = torch.Generator().manual_seed(seed)
    if mixed:
        lengths = torch.randint(max(1, tokens - 6), tokens + 7, (batch,), generator=generator)
    else:
        lengths = torch.full((batch,), tokens)
    width = int(lengths.max())
    ids = torch.randint(3, vocab, (batch, width), generator=generator)
    mask = (torch.arange(width).unsqueeze(0) >= (width - lengths).unsqueeze(1)).long()
    return ids.masked_fill(mask == 0, 0).to(device), mask.to(device)


def placeholder_tokenizer():
    """sentence-transformers' ``Transformer`` loads a tokenizer from the model folder; the anchor is fed
    token ids directly, so any tokenizer will do."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>")


def build_st_anchor(causal_lm, device: torch.device, folder: Path):
    """sentence-transformers ``Transformer`` + last-token ``Pooling`` + ``Normalize`` on the same weights."""
    try:
        from sentence_transformers import SentenceTransformer

        try:
            from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
        except ImportError:  # older sentence-transformers releases
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                from sentence_transformers.models import Normalize, Pooling, Transformer

        causal_lm.save_pretrained(folder)
        placeholder_tokenizer().save_pretrained(folder)
        dtype = causal_lm.get_input_embeddings().weight.dtype
        transformer = Transformer(str(folder), model_kwargs={"dtype": dtype, "attn_implementation": "sdpa"})
        pooling = Pooling(causal_lm.config.hidden_size, pooling_mode="lasttoken")
        model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device=str(device))
        return model.eval(), None
    except Exception as error:  # the backbone anchor stands in; the reason goes to the report
        return None, f"{type(error).__name__}: {error}"


# -- measuring -----------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cosine_and_difference(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    a, b = a.float(), b.float()
    return {"min_cosine": F.cosine_similarity(a, b).min().item(), "max_abs_diff": (a - b).abs().max().item()}


def exactness(causal_lm, batches: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Fast path vs plain loop (K = 3, 6), plus plain vs authors (K = 3) and single pass vs plain K = 1."""
    report: dict = {}
    for name, (ids, mask) in batches.items():
        row = {}
        for steps in (3, 6):
            plain = plain_latent(causal_lm, ids, mask, steps)
            row[f"fast vs plain K={steps}"] = cosine_and_difference(fast_latent(causal_lm, ids, mask, steps), plain)
        row["authors vs plain K=3"] = cosine_and_difference(
            authors_latent(causal_lm, ids, mask, 3), plain_latent(causal_lm, ids, mask, 3)
        )
        row["single pass vs plain K=1"] = cosine_and_difference(
            single_pass(causal_lm, ids, mask), plain_latent(causal_lm, ids, mask, 1)
        )
        report[name] = row
    fast_rows = [value for row in report.values() for key, value in row.items() if key.startswith("fast")]
    report["fast vs plain (all)"] = {
        "min_cosine": min(value["min_cosine"] for value in fast_rows),
        "max_abs_diff": max(value["max_abs_diff"] for value in fast_rows),
    }
    return report


def memory_of(method: Method, ids, mask, device: torch.device) -> dict[str, float]:
    """Two CUDA calls (they double as warm-up): their peak allocation above what was allocated before."""
    gc.collect()
    torch.cuda.empty_cache()
    synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    method(ids, mask)
    synchronize(device)
    first = torch.cuda.max_memory_allocated(device) - base
    held = torch.cuda.memory_allocated(device) - base
    torch.cuda.reset_peak_memory_stats(device)
    method(ids, mask)
    synchronize(device)
    steady = torch.cuda.max_memory_allocated(device) - base
    return {"first_call_peak_mib": first / 2**20, "steady_peak_mib": steady / 2**20, "held_mib": held / 2**20}


def measure_shape(methods: dict[str, Method], ids, mask, repeats: int, device, deadline: float, shapes_left: int):
    names = list(methods)
    memory: dict[str, dict[str, float] | None] = dict.fromkeys(names)
    errors: dict[str, str] = {}
    if device.type == "cuda":
        for name in names:  # each method alone, the fast path's kept buffers freed before it
            fast_path.clear_fast_path_cache()
            try:
                memory[name] = memory_of(methods[name], ids, mask, device)
            except Exception as error:  # e.g. out of memory: drop the method from this shape, keep the rest
                errors[name] = f"{type(error).__name__}: {error}"
                gc.collect()
                torch.cuda.empty_cache()
    fast_path.clear_fast_path_cache()
    names = [name for name in names if name not in errors]
    start = time.perf_counter()
    for name in list(names):  # warm every method again, together (the fast path captures its graphs here)
        try:
            methods[name](ids, mask)
        except Exception as error:
            errors[name] = f"{type(error).__name__}: {error}"
            names.remove(name)
    synchronize(device)
    round_s = time.perf_counter() - start
    affordable = int(max(0.0, deadline - time.monotonic()) / max(round_s, 1e-9) / max(1, shapes_left))
    repeats_here = max(1, min(repeats, affordable))
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats_here):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:  # rotate the order
            synchronize(device)
            begin = time.perf_counter()
            methods[name](ids, mask)
            synchronize(device)
            times[name].append((time.perf_counter() - begin) * 1000)
    return {
        "batch": int(ids.shape[0]),
        "tokens": int(ids.shape[1]),
        "real_tokens": int(mask.sum()),
        "repeats": repeats_here,
        "median_ms": {name: statistics.median(values) for name, values in times.items()},
        "times_ms": times,
        "memory": memory,
        "method_errors": errors,
    }


def targets(shapes: dict) -> dict:
    def median(shape: str, method: str) -> float | None:
        return shapes.get(shape, {}).get("median_ms", {}).get(method)

    def ratio(numerator, denominator):
        return None if numerator is None or denominator is None else numerator / denominator

    anchor = "single pass (ST)" if median("docs 32x512", "single pass (ST)") is not None else "single pass"
    rows = {
        "K=3 / K=1 at 8x256 (fast)": (ratio(median("8x256", "fast K=3"), median("8x256", "plain K=1")), "<=", 1.15),
        "K=3 / K=1 at 8x256 (plain, for reference)": (
            ratio(median("8x256", "plain K=3"), median("8x256", "plain K=1")),
            None,
            None,
        ),
        "authors / fast at batch 1, K=3": (
            ratio(median("query 1x30", "authors K=3"), median("query 1x30", "fast K=3")),
            ">=",
            2.0,
        ),
        f"docs/s at 32x512, fast K=3 vs {anchor}": (
            ratio(median("docs 32x512", anchor), median("docs 32x512", "fast K=3")),
            ">=",
            0.9,
        ),
    }
    report = {}
    for name, (value, sense, bound) in rows.items():
        met = None
        if value is not None and sense is not None:
            met = value <= bound if sense == "<=" else value >= bound
        report[name] = {"value": value, "target": None if sense is None else f"{sense} {bound}", "met": met}
    return report


# -- one model -----------------------------------------------------------------------------------------


def run_model(name: str, config_kwargs: dict, shapes: dict, args, device, deadline: float, workdir: Path) -> dict:
    result: dict = {"config": config_kwargs, "shapes": {}, "skipped_shapes": []}
    started = time.monotonic()
    causal_lm = build_model(config_kwargs, device, args.seed)
    result["parameters"] = sum(parameter.numel() for parameter in causal_lm.parameters())
    vocab = config_kwargs["vocab_size"]
    batches = {
        shape: make_batch(batch, tokens, mixed, vocab, device, args.seed + index)
        for index, (shape, (batch, tokens, mixed)) in enumerate(shapes.items())
    }
    queries = batches["query 8x30"]
    subset = 5 if len(queries[0]) >= 8 else max(1, len(queries[0]) - 1)
    exact_batches = {
        "query 8x30": queries,
        f"query {subset} of 8x30 (batch-bucket padding)": (queries[0][:subset], queries[1][:subset]),
        "8x256": batches["8x256"],
    }
    result["exactness"] = {"float32": exactness(causal_lm, exact_batches)}
    causal_lm.to(torch.bfloat16)
    fast_path.clear_fast_path_cache()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        result["allocated_bf16_model_mib"] = torch.cuda.memory_allocated(device) / 2**20
    result["exactness"]["bfloat16"] = exactness(causal_lm, exact_batches)
    result["fast_path_after_exactness"] = fast_path.fast_path_report(causal_lm)
    result["build_and_exactness_s"] = time.monotonic() - started

    st_model, result["st_anchor_error"] = None, "skipped: too large to save and reload within the budget"
    if result["parameters"] <= args.st_anchor_max_parameters:
        st_model, result["st_anchor_error"] = build_st_anchor(causal_lm, device, workdir / name)
        if st_model is not None:
            ids, mask = queries
            result["exactness"]["bfloat16"]["ST single pass vs single pass"] = cosine_and_difference(
                st_single_pass(st_model, ids, mask), single_pass(causal_lm, ids, mask)
            )
    methods = build_methods(causal_lm, st_model)
    result["shape_errors"] = {}
    for index, shape in enumerate(shapes):
        if time.monotonic() > deadline:
            result["skipped_shapes"].append(shape)
            continue
        ids, mask = batches[shape]
        try:
            measured = measure_shape(methods, ids, mask, args.repeats, device, deadline, len(shapes) - index)
        except Exception:  # keep the other shapes' numbers
            result["shape_errors"][shape] = traceback.format_exc()
            print(result["shape_errors"][shape], file=sys.stderr, flush=True)
            continue
        measured["fast_path"] = fast_path.fast_path_report(causal_lm)
        result["shapes"][shape] = measured
        medians = measured["median_ms"]
        print(f"{name} {shape}: " + ", ".join(f"{key} {value:.2f} ms" for key, value in medians.items()), flush=True)
        for method, error in measured["method_errors"].items():
            print(f"{name} {shape}: {method} failed: {error}", file=sys.stderr, flush=True)
    result["targets"] = targets(result["shapes"])
    result["seconds"] = time.monotonic() - started
    fast_path.clear_fast_path_cache()
    return result


# -- report --------------------------------------------------------------------------------------------


def environment(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "cuda": torch.version.cuda,
    }
    try:
        import sentence_transformers

        info["sentence_transformers"] = sentence_transformers.__version__
    except ImportError:
        info["sentence_transformers"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def render(report: dict) -> str:
    env = report["environment"]
    lines = [
        SECTION,
        "",
        f"Command: `{report['command']}`",
        f"Machine: {env.get('gpu', env['device'])}, torch {env['torch']} (CUDA {env['cuda']}), transformers "
        f"{env['transformers']}, sentence-transformers {env['sentence_transformers']}, Python {env['python']}. "
        "Models built from the real Qwen3 configurations with random weights (no download), bf16, SDPA. Times are "
        "medians of interleaved repeats (order rotated each repeat), torch.cuda.synchronize around each call, after "
        "untimed warm-up calls (the fast path captures its CUDA graph on its first call in a bucket). Queries: "
        "random ids, ~30 tokens of mixed length, left padded; documents: 512 tokens. Fast K=1 is the plain loop "
        "by construction.",
        "",
    ]
    if report.get("dry_run"):
        lines += ["DRY RUN: a shrunken configuration and tiny shapes; these numbers measure nothing.", ""]
    for name, result in report["models"].items():
        lines += [f"### {name} (random weights)", ""]
        if result.get("error"):
            lines += [f"Failed: `{result['error'].strip().splitlines()[-1]}`", ""]
            if not result.get("shapes"):
                continue
        for dtype in ("float32", "bfloat16"):
            overall = result.get("exactness", {}).get(dtype, {}).get("fast vs plain (all)")
            if overall:
                lines.append(
                    f"Fast vs plain vectors, {dtype}: min cosine {overall['min_cosine']:.7f}, "
                    f"max abs difference {overall['max_abs_diff']:.1e}."
                )
        entries = [entry for shape in result["shapes"].values() for entry in shape.get("fast_path", [])]
        captured = sum(1 for entry in entries if entry["captured"])
        lines.append(f"Fast-path entries captured as CUDA graphs: {captured} of {len(entries)} (over all shapes).")
        if result.get("allocated_bf16_model_mib"):
            lines.append(
                f"GPU memory allocated with the bf16 model loaded: {result['allocated_bf16_model_mib']:.0f} MiB."
            )
        if result.get("st_anchor_error"):
            lines.append(f"sentence-transformers anchor not used: {result['st_anchor_error']}.")
        lines.append("")
        methods = list(dict.fromkeys(method for shape in result["shapes"].values() for method in shape["median_ms"]))
        lines += [
            "| shape | repeats | " + " | ".join(methods) + " |",
            "|---|---|" + "---|" * len(methods),
        ]
        for shape, measured in result["shapes"].items():
            medians = measured["median_ms"]
            cells = [f"{medians[method]:.2f} ms" if method in medians else "failed" for method in methods]
            lines.append(
                f"| {shape} ({measured['batch']}x{measured['tokens']}) | {measured['repeats']} | "
                + " | ".join(cells)
                + " |"
            )
        memory_rows = [(shape, m["memory"]) for shape, m in result["shapes"].items() if any(m["memory"].values())]
        if memory_rows:
            lines += [
                "",
                "Peak GPU memory above what was allocated before the call, steady call (MiB; the fast path's kept "
                "static cache and graph included):",
                "",
                "| shape | " + " | ".join(methods) + " |",
                "|---|" + "---|" * len(methods),
            ]
            for shape, memory in memory_rows:
                cells = [
                    f"{memory[method]['steady_peak_mib']:.0f}" if memory.get(method) else "-" for method in methods
                ]
                lines.append(f"| {shape} | " + " | ".join(cells) + " |")
        lines += ["", "Targets:", ""]
        for target, value in result.get("targets", {}).items():
            shown = "not measured" if value["value"] is None else f"{value['value']:.3f}x"
            verdict = "" if value["met"] is None else (" (met)" if value["met"] else " (NOT met)")
            bound = f", target {value['target']}x" if value["target"] else ""
            lines.append(f"- {target}: {shown}{bound}{verdict}")
        if result.get("skipped_shapes"):
            lines.append(f"- skipped for the time budget: {', '.join(result['skipped_shapes'])}")
        for shape, error in result.get("shape_errors", {}).items():
            lines.append(f"- {shape} failed: `{error.strip().splitlines()[-1]}`")
        for shape, measured in result["shapes"].items():
            for method, error in measured.get("method_errors", {}).items():
                lines.append(f"- {shape}, {method} failed: `{error.splitlines()[0] if error else ''}`")
        lines.append("")
    if report.get("skipped_models"):
        lines += [f"Models skipped for the time budget: {', '.join(report['skipped_models'])}.", ""]
    return "\n".join(lines)


def print_targets(report: dict) -> None:
    for name, result in report["models"].items():
        for target, value in result.get("targets", {}).items():
            shown = "not measured" if value["value"] is None else f"{value['value']:.3f}x"
            print(f"{name}: {target}: {shown} (target {value['target'] or '-'}, met: {value['met']})")


# -- main ----------------------------------------------------------------------------------------------


class Records(logging.Handler):
    """Keeps the fast path's log lines (a failed graph capture says why) for the JSON report."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname}: {record.getMessage()}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (the measurement) or cpu (dry runs)")
    parser.add_argument("--dry-run", action="store_true", help="shrunken configuration, tiny shapes, 1 repeat")
    parser.add_argument("--output", type=Path, default=Path("gpu_latency.json"), help="where the JSON goes")
    parser.add_argument("--models", default="qwen3-0.6b,qwen3-8b", help=f"comma list of {sorted(REAL_CONFIGS)}")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per shape (fewer if the budget says)")
    parser.add_argument("--budget-s", type=float, default=240.0, help="stop starting new work after this long")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (dry runs default to 1)")
    parser.add_argument("--st-anchor-max-parameters", type=int, default=ST_ANCHOR_MAX_PARAMETERS)
    parser.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    parser.add_argument("--render-from", type=Path, help="write RESULTS.md's section from a GPU run's JSON, then exit")
    args = parser.parse_args()

    if args.render_from:
        report = json.loads(args.render_from.read_text(encoding="utf8"))
        if report.get("dry_run") or not str(report["environment"]["device"]).startswith("cuda"):
            parser.error("--render-from takes the JSON of a real GPU run, not of a dry run")
        write_section(render(report))
        print(f"wrote the section {SECTION!r} of benchmarks/RESULTS.md")
        return 0

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device (use --device cpu --dry-run for a dry run)")
    if args.threads or args.dry_run:
        torch.set_num_threads(args.threads or 1)
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = sorted(set(names) - set(REAL_CONFIGS))
    if unknown:
        parser.error(f"unknown models {unknown}; known: {sorted(REAL_CONFIGS)}")
    configs = DRY_CONFIGS if args.dry_run else REAL_CONFIGS
    shapes = DRY_SHAPES if args.dry_run else SHAPES
    if args.dry_run:
        args.repeats = 1

    records = Records()
    logging.getLogger(fast_path.__name__).addHandler(records)
    logging.getLogger(fast_path.__name__).setLevel(logging.DEBUG)

    started = time.monotonic()
    deadline = started + args.budget_s
    report: dict = {
        "command": "python benchmarks/gpu_latency.py " + shlex.join(sys.argv[1:]),
        "dry_run": args.dry_run,
        "environment": environment(device),
        "budget_s": args.budget_s,
        "models": {},
        "skipped_models": [],
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="gpu_latency_") as workdir:
        for name in names:
            if time.monotonic() > deadline:
                report["skipped_models"].append(name)
                continue
            try:
                report["models"][name] = run_model(name, configs[name], shapes, args, device, deadline, Path(workdir))
            except Exception:
                report["models"][name] = {"error": traceback.format_exc(), "shapes": {}}
                print(traceback.format_exc(), file=sys.stderr, flush=True)
            result = report["models"][name]
            failed = failed or bool(result.get("error") or result.get("shape_errors"))
            failed = failed or any(shape["method_errors"] for shape in result["shapes"].values())
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    report["fast_path_log"] = records.lines
    report["seconds"] = time.monotonic() - started

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2, default=str), encoding="utf8")
    markdown = render(report)
    print(markdown)
    print_targets(report)
    print(f"wrote {args.output} in {report['seconds']:.1f} s")
    if device.type == "cuda" and not args.dry_run and not args.no_write:
        write_section(markdown)
        print(f"wrote the section {SECTION!r} of benchmarks/RESULTS.md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
