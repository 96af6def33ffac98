"""benchmarks/ablation_report.py: per-query evaluation of an arm, the table with paired bootstrap intervals, the
issue's targets, and shipping the adapter with its model card (tiny model and made-up scores; nothing trains)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("ablation_report", ROOT / "benchmarks" / "ablation_report.py")
ablation_report = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("ablation_report", ablation_report)
SPEC.loader.exec_module(ablation_report)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def result(arm, dataset, k1, k3):
    return {
        "arm": arm,
        "dataset": dataset,
        "K": {"1": {"mean": sum(k1) / len(k1), "per_query": {f"q{i}": v for i, v in enumerate(k1)}},
              "3": {"mean": sum(k3) / len(k3), "per_query": {f"q{i}": v for i, v in enumerate(k3)}}},
    }  # fmt: skip


def made_up_results():
    return [
        result("base", "heldout", [0.1, 0.0, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1]),
        result("contrastive", "heldout", [0.3, 0.2, 0.2, 0.3], [0.3, 0.3, 0.2, 0.2]),
        result("laser", "heldout", [0.3, 0.3, 0.2, 0.2], [0.5, 0.4, 0.6, 0.5]),
        result("base", "pyref", [0.2, 0.2, 0.2, 0.2], [0.2, 0.3, 0.2, 0.3]),
        result("contrastive", "pyref", [0.2, 0.2, 0.2, 0.2], [0.3, 0.3, 0.3, 0.3]),
        result("laser", "pyref", [0.2, 0.2, 0.2, 0.2], [0.3, 0.2, 0.3, 0.2]),
    ]


def test_the_table_intervals_and_targets_follow_the_scores():
    report = ablation_report.build_report(made_up_results())
    assert report["table"]["heldout"]["laser"]["3"] == pytest.approx(0.5)
    by_name = {(d["dataset"], d["a"], d["b"]): d for d in report["differences"]}
    ahead = by_name[("heldout", "laser K=3", "contrastive K=3")]
    assert ahead["mean"] == pytest.approx(0.25) and 0 < ahead["low"] <= ahead["mean"] <= ahead["high"]
    tie = by_name[("pyref", "laser K=1", "base K=1")]
    assert tie["mean"] == tie["low"] == tie["high"] == 0
    assert ("heldout", "laser K=3", "laser K=1") in by_name and ("pyref", "contrastive K=3", "base K=3") in by_name

    met = {target["target"]: target["met"] for target in report["targets"]}
    assert met["LaSER K=3 >= 2x base K=3 on the held-out split"] is True  # 0.5 >= 2 * 0.1
    assert met["LaSER K=3 beats base K=3 on pyref"] is False  # 0.25 vs 0.25
    assert met["LaSER ahead of contrastive-only at K=3 on pyref"] is False
    assert met["trained LaSER K=3 ahead of its K=1 on heldout"] is True
    table = ablation_report.markdown(report)
    assert "| heldout | laser | 25.0 | 50.0 |" in table and "| no |" in table


def test_a_missing_arm_is_not_measured_rather_than_failed():
    report = ablation_report.build_report([r for r in made_up_results() if r["arm"] != "contrastive"])
    met = {target["target"]: target["met"] for target in report["targets"]}
    assert met["LaSER ahead of contrastive-only at K=3 on heldout"] is None
    assert "not measured" in ablation_report.markdown(report)


def write_beir(folder: Path) -> Path:
    passages = ["Rayleigh scattering makes the sky blue.", "Python evaluates default arguments once.",
                "Photosynthesis stores light energy in glucose.", "0123456789 are the ten digits."]  # fmt: skip
    queries = ["why is the sky blue", "what does photosynthesis produce"]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": f"d{i}", "text": p}) + "\n" for i, p in enumerate(passages))
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": f"q{i}", "text": q}) + "\n" for i, q in enumerate(queries))
    )
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq0\td0\t1\nq1\td2\t1\n")
    return folder


def test_eval_writes_per_query_scores_once_and_report_writes_the_table(tiny_dirs, tmp_path, monkeypatch):
    dataset = write_beir(tmp_path / "tiny-set")
    output = tmp_path / "eval" / "base-tiny.json"
    argv = ["eval", "--arm", "base", "--model", str(tiny_dirs["qwen3"]), "--dataset", str(dataset)]
    assert ablation_report.main([*argv, "--output", str(output)]) == 0
    evaluated = json.loads(output.read_text())
    assert evaluated["arm"] == "base" and evaluated["num_queries"] == 2 and set(evaluated["K"]) == {"1", "3"}
    for values in evaluated["K"].values():
        assert set(values["per_query"]) == {"q0", "q1"}
        assert values["mean"] == pytest.approx(sum(values["per_query"].values()) / 2)

    monkeypatch.setattr(ablation_report, "evaluate_arm", lambda *a, **k: pytest.fail("an existing file is reused"))
    assert ablation_report.main([*argv, "--output", str(output)]) == 0

    laser = {**evaluated, "arm": "laser"}
    (tmp_path / "eval" / "laser-tiny.json").write_text(json.dumps(laser))
    files = [str(path) for path in sorted((tmp_path / "eval").glob("*.json"))]
    out_json, out_md = tmp_path / "ablation.json", tmp_path / "ablation.md"
    assert ablation_report.main(["report", *files, "--output", str(out_json), "--markdown", str(out_md)]) == 0
    report = json.loads(out_json.read_text())
    difference = next(d for d in report["differences"] if d["a"] == "laser K=3" and d["b"] == "base K=3")
    assert difference["mean"] == 0 and "| tiny-set | laser |" in out_md.read_text()


def test_ship_copies_the_adapter_and_writes_a_model_card(tmp_path):
    model = tmp_path / "laser" / "model"
    model.mkdir(parents=True)
    (model / "adapter_config.json").write_text(json.dumps({"r": 16, "base_model_name_or_path": "/home/x/cache"}))
    (model / "adapter_model.safetensors").write_bytes(b"weights")
    (model / "trainer_state.json").write_text(
        json.dumps({"global_step": 600, "log_history": [{"loss": 1.5, "step": 600}]})
    )
    data = tmp_path / "set"
    data.mkdir()
    sources = {"foldoc": {"title": "FOLDOC", "package": "dict-foldoc", "license": "GFDL 1.1+", "role": "queries"}}
    (data / "metadata.json").write_text(json.dumps({"seed": 0, "sources": sources, "counts": {"train_rows": 7}}))
    timings = tmp_path / "timings.tsv"
    timings.write_text("data\t5\ntrain-laser\t3600\n")
    results = made_up_results()
    results[5] = result("laser", "pyref", [0.2, 0.2, 0.2, 0.2], [0.3, 0.3, 0.3, 0.3])  # ahead of base on both sets
    report = ablation_report.build_report(results)
    (tmp_path / "ablation.json").write_text(json.dumps(report))
    target = tmp_path / "adapters" / "smollm2-laser"
    argv = ["ship", "--model", str(model), "--report", str(tmp_path / "ablation.json"), "--data", str(data)]
    argv += ["--timings", str(timings), "--target", str(target), "--recipe", "max steps 600, seed 0"]
    assert ablation_report.main(argv) == 0

    assert json.loads((target / "adapter_config.json").read_text()) == {"r": 16, "base_model_name_or_path": "smollm2"}
    assert (target / "adapter_model.safetensors").read_bytes() == b"weights"
    card = (target / "README.md").read_text()
    for expected in (
        "GFDL 1.1+",
        "max steps 600, seed 0",
        "600 optimizer steps",
        "3605 s",
        "no substitute for LaSER-Qwen3",
    ):
        assert expected in card
    assert ablation_report.markdown(report) in card


def test_ship_refuses_an_adapter_below_its_base(tmp_path, capsys):
    results = made_up_results()
    results[2] = result("laser", "heldout", [0.0, 0.0, 0.1, 0.0], [0.0, 0.0, 0.0, 0.1])  # collapsed
    (tmp_path / "ablation.json").write_text(json.dumps(ablation_report.build_report(results)))
    target = tmp_path / "adapters" / "smollm2-laser"
    argv = ["ship", "--model", str(tmp_path / "laser"), "--report", str(tmp_path / "ablation.json")]
    argv += ["--data", str(tmp_path), "--timings", str(tmp_path / "t.tsv"), "--target", str(target), "--recipe", "r"]
    assert ablation_report.main(argv) == 3
    assert "not shipped: the LaSER arm is below the untrained base at K=3 on heldout" in capsys.readouterr().err
    assert not target.exists()
