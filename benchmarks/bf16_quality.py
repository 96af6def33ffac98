"""Does bfloat16 on a CPU cost retrieval quality? The quality gate for making bf16 the CPU default (issue 21).

Runs ``laser eval``'s evaluation in-process (:func:`~laser_integrations.evaluation.runner.evaluate_dataset`)
on the bundled pyref set for single (K=1), latent K=3 and latent K=6, once per precision variant:

- ``float32``: the reference;
- ``bfloat16``: weights and activations in bf16 (what ``--dtype bfloat16`` gives);
- ``bfloat16-mixed``: bf16, with the soft-token mixture ``p @ E`` accumulated in float32 (``p`` kept in
  float32, ``E`` upcast), rounded to bf16 only as the next input.

Per query it scores nDCG@10 with the package's metrics library, and for each mode and low-precision variant
the paired bootstrap 95% interval of the mean difference against float32 (queries resampled with
replacement, the same resample for both sides). Query and passage vectors are kept as the evaluation makes
them, so the agreement with float32 (cosine of the same text's vectors) costs no extra forward pass.

With ``--speed`` it also times K=3 query embedding per variant: 32 pyref queries at batch 8 and 8 queries
at batch 1, repeats interleaved across variants (medians reported).

    OMP_NUM_THREADS=1 python benchmarks/bf16_quality.py --output /tmp/bf16.json --markdown /tmp/bf16.md
    OMP_NUM_THREADS=1 python benchmarks/bf16_quality.py --skip-quality --speed --repeats 5

Gate (issue 21): bf16 becomes the CPU default only if no mode loses more than 0.01 nDCG@10, or every
interval includes zero.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from laser_integrations import latent, load_model
from laser_integrations.evaluation.beir import bundled_dataset_path, load_beir
from laser_integrations.evaluation.metrics import per_query_scores
from laser_integrations.evaluation.runner import evaluate_dataset, parse_modes

VARIANTS = {"float32": "float32", "bfloat16": "bfloat16", "bfloat16-mixed": "bfloat16"}
MODES = ("single", "latent:3", "latent:6")
METRIC = "ndcg@10"
GATE = 0.01


def soft_token_fp32_accumulated(probs: torch.Tensor, embedding_table: torch.Tensor) -> torch.Tensor:
    """``p @ E`` in float32 (``p`` unrounded, ``E`` upcast), rounded to the table's dtype only at the end."""
    vocab = embedding_table.shape[0]
    mixture = probs[:, :vocab].float() @ embedding_table.float()
    return mixture.to(embedding_table.dtype).unsqueeze(1)


@contextmanager
def precision(variant: str) -> Iterator[None]:
    """Swap in the float32-accumulated soft token for the ``-mixed`` variant (the loop reads it by name)."""
    original = latent.soft_token
    if variant.endswith("-mixed"):
        latent.soft_token = soft_token_fp32_accumulated
    try:
        yield
    finally:
        latent.soft_token = original


def recording(model) -> dict[tuple[str, int, str], np.ndarray]:
    """Keep every vector ``encode_query``/``encode_document`` returns, by (side, K, text)."""
    seen: dict[tuple[str, int, str], np.ndarray] = {}
    for side in ("query", "document"):
        encode = getattr(model, f"encode_{side}")

        def record(texts, *args, _encode=encode, _side=side, **kwargs):
            vectors = _encode(texts, *args, **kwargs)
            steps = kwargs.get("num_thinking_steps") or model[0].num_thinking_steps
            for text, vector in zip(texts, vectors, strict=True):
                seen[(_side, steps, text)] = np.asarray(vector, dtype=np.float32)
            return vectors

        setattr(model, f"encode_{side}", record)
    return seen


def evaluate_variant(model_name: str, variant: str, limit: int | None) -> tuple[dict, dict]:
    """Per-mode per-query nDCG@10 and the recorded vectors for one precision variant."""
    dataset = load_beir(bundled_dataset_path("pyref")).limited(limit)
    model = load_model(model_name, device="cpu", dtype=VARIANTS[variant])
    vectors = recording(model)
    with precision(variant):
        report = evaluate_dataset(model, dataset, parse_modes(MODES), batch_size=8, show_progress_bar=False)
    scores = {result.mode: per_query_scores(dataset.qrels, result.run, [METRIC])[METRIC] for result in report.modes}
    return scores, vectors


def paired_bootstrap(low: dict[str, float], high: dict[str, float], samples: int, seed: int) -> dict[str, float]:
    """Mean of ``low - high`` over queries and its percentile 95% interval from a paired bootstrap."""
    queries = sorted(high)
    differences = np.array([low[query] - high[query] for query in queries])
    rng = np.random.default_rng(seed)
    means = differences[rng.integers(0, len(differences), size=(samples, len(differences)))].mean(axis=1)
    lower, upper = np.percentile(means, [2.5, 97.5])
    return {"difference": float(differences.mean()), "ci_low": float(lower), "ci_high": float(upper)}


def agreement(low: dict, high: dict) -> dict[str, float]:
    """Lowest and median cosine between the same text's vectors, per (side, K)."""
    result = {}
    for side, steps in sorted({(side, steps) for side, steps, _ in high}):
        keys = [key for key in high if key[:2] == (side, steps) and key in low]
        cosines = np.array([float(np.dot(low[key], high[key])) for key in keys])
        result[f"{side}-k{steps}"] = {"min": float(cosines.min()), "median": float(np.median(cosines))}
    return result


def time_variants(model_name: str, variants: list[str], repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of K=3 query embedding per variant: 32 queries at batch 8, 8 queries at batch 1."""
    queries = list(load_beir(bundled_dataset_path("pyref")).queries.values())
    models = {variant: load_model(model_name, device="cpu", dtype=VARIANTS[variant]) for variant in variants}
    shapes = {"32 queries, batch 8": (queries[:32], 8), "8 queries, batch 1": (queries[:8], 1)}
    times: dict[str, dict[str, list[float]]] = {variant: {shape: [] for shape in shapes} for variant in variants}
    for variant, model in models.items():  # warm-up: prefix caches, allocator, oneDNN kernels
        with precision(variant):
            model.encode_query(queries[:8], batch_size=8)
    for repeat in range(repeats):
        order = variants[repeat % len(variants) :] + variants[: repeat % len(variants)]
        for shape, (texts, batch_size) in shapes.items():
            for variant in order:
                with precision(variant):
                    start = time.perf_counter()
                    models[variant].encode_query(texts, batch_size=batch_size, num_thinking_steps=3)
                    times[variant][shape].append(time.perf_counter() - start)
    return {
        variant: {shape: statistics.median(values) for shape, values in by.items()} for variant, by in times.items()
    }


def cpu_flags() -> list[str]:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted({flag for flag in ("avx512_bf16", "amx_bf16", "amx_tile") if flag in text.split()})


def markdown(results: dict) -> str:
    lines = [
        "## bf16 on CPU: quality gate and speed",
        "",
        f"Command: `{results['command']}`. Model `{results['model']}`, pyref ({results['num_queries']} queries), "
        f"documents at K=3, torch {results['torch']}, {results['threads']} thread(s), CPU flags: "
        f"{', '.join(results['cpu_flags']) or 'none of avx512_bf16/amx_bf16/amx_tile'}.",
    ]
    if "ndcg" in results:
        lines += ["", f"| mode | {' | '.join(results['ndcg'])} |", "|---|" + "---|" * len(results["ndcg"])]
        for mode in results["ndcg"]["float32"]:
            cells = [f"{results['ndcg'][variant][mode]:.4f}" for variant in results["ndcg"]]
            lines.append(f"| {mode} | {' | '.join(cells)} |")
        lines += [
            "",
            "| mode | variant | nDCG@10 difference vs float32 | paired bootstrap 95% CI |",
            "|---|---|---|---|",
        ]
        for variant, by_mode in results["differences"].items():
            for mode, diff in by_mode.items():
                interval = f"[{diff['ci_low']:+.4f}, {diff['ci_high']:+.4f}]"
                lines.append(f"| {mode} | {variant} | {diff['difference']:+.4f} | {interval} |")
        lines += ["", "| variant | vectors | min cosine vs float32 | median |", "|---|---|---|---|"]
        for variant, by_kind in results["agreement"].items():
            for kind, values in by_kind.items():
                lines.append(f"| {variant} | {kind} | {values['min']:.5f} | {values['median']:.6f} |")
        lines += ["", f"Gate: {results['gate']}."]
    if "speed" in results:
        variants = list(results["speed"])
        shapes = list(results["speed"][variants[0]])
        lines += ["", f"K=3 query embedding, median of {results['repeats']} interleaved repeats (seconds):", ""]
        lines += [f"| variant | {' | '.join(shapes)} |", "|---|" + "---|" * len(shapes)]
        for variant in variants:
            cells = [f"{results['speed'][variant][shape]:.2f}" for shape in shapes]
            lines.append(f"| {variant} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


def gate_decision(differences: dict) -> str:
    bf16 = differences.get("bfloat16", {})
    small = all(diff["difference"] >= -GATE for diff in bf16.values())
    zero_inside = all(diff["ci_low"] <= 0.0 <= diff["ci_high"] for diff in bf16.values())
    verdict = "passes" if bf16 and (small or zero_inside) else "fails"
    return f"bf16 {verdict} (no mode loses more than {GATE}: {small}; every interval includes zero: {zero_inside})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--limit", type=int, default=None, help="first N queries only (default: all)")
    parser.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--speed", action="store_true", help="also time K=3 query embedding per variant")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=Path("bf16_quality.json"))
    parser.add_argument("--markdown", type=Path, default=None, help="write the markdown section here")
    args = parser.parse_args()
    if "float32" not in args.variants:
        parser.error("float32 is the reference: keep it in --variants")

    results: dict = {
        "command": "python " + " ".join(sys.argv),
        "model": args.model,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
    }
    if not args.skip_quality:
        scores, vectors = {}, {}
        for variant in args.variants:
            start = time.perf_counter()
            scores[variant], vectors[variant] = evaluate_variant(args.model, variant, args.limit)
            print(f"{variant}: evaluated in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
        reference = scores["float32"]
        results["num_queries"] = len(reference[MODES[0]])
        results["ndcg"] = {
            variant: {mode: float(np.mean(list(by_query.values()))) for mode, by_query in by_mode.items()}
            for variant, by_mode in scores.items()
        }
        results["differences"] = {
            variant: {
                mode: paired_bootstrap(scores[variant][mode], reference[mode], args.bootstrap, args.seed)
                for mode in reference
            }
            for variant in args.variants
            if variant != "float32"
        }
        results["agreement"] = {
            variant: agreement(vectors[variant], vectors["float32"])
            for variant in args.variants
            if variant != "float32"
        }
        results["gate"] = gate_decision(results["differences"])
        results["per_query"] = scores
    else:
        results["num_queries"] = len(load_beir(bundled_dataset_path("pyref")).queries)
    if args.speed:
        results["repeats"] = args.repeats
        results["speed"] = time_variants(args.model, args.variants, args.repeats)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")
    section = markdown(results)
    if args.markdown is not None:
        args.markdown.write_text(section, encoding="utf8")
    print(section)


if __name__ == "__main__":
    main()
