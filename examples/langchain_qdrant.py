"""LangChain + Qdrant: a LaSER latent-thinking retriever and a rewrite-then-retrieve chain on one collection.

    python examples/langchain_qdrant.py                        # offline SmolLM2 (NOT a trained LaSER model)
    python examples/langchain_qdrant.py --model laser-qwen3    # LaSER-Qwen3-0.6B (downloads once)

Both retrievers search the same collection of K=3 latent document vectors. The latent retriever embeds the
question with K latent thinking steps (no text is generated); the chain first has the LLM write the LaSER
paper's reasoning rationale, then embeds question + rationale with LaSER's explicit view. The LLM here is the
embedding model's own backbone (one copy in memory), or a shipped adapter model's untrained chat base; any
LangChain chat model works in its place.
The collection lives on disk (Qdrant local mode), so a second run skips indexing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from laser_integrations.backbone import cache_root
from laser_integrations.evaluation import load_beir
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.qdrant import content_id, langchain_vector_store
from laser_integrations.rewrite import RationaleGenerator, rewrite_then_retrieve_chain


def main() -> None:
    # This file is named like the langchain_qdrant package: keep its folder off the import path, or Python
    # would import this script instead of the package.
    here = Path(__file__).resolve().parent
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != here]

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2", help="LaSER model spec (smollm2 runs offline)")
    parser.add_argument("--questions", type=int, default=3, help="bundled questions to ask (3)")
    parser.add_argument("--distractors", type=int, default=30, help="unrelated passages indexed too (30)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="rationale length bound (128)")
    args = parser.parse_args()

    dataset = load_beir("pyref")
    questions = list(dataset.queries.items())[: args.questions]
    relevant = {doc_id for query_id, _ in questions for doc_id in dataset.qrels[query_id]}
    others = [doc_id for doc_id in dataset.corpus if doc_id not in relevant][: args.distractors]
    passages = [dataset.corpus[doc_id] for doc_id in [*sorted(relevant), *others]]

    embeddings = LaSEREmbeddings(args.model, num_thinking_steps=3)
    store = langchain_vector_store(embeddings, "pyref-langchain", path=cache_root() / "qdrant-langchain")
    if store.client.count("pyref-langchain", exact=True).count < len(passages):
        print(f"indexing {len(passages)} passages ...")
        texts = [passage.as_text() for passage in passages]
        store.add_texts(texts, metadatas=[{"doc_id": p.id} for p in passages], ids=[content_id(t) for t in texts])

    latent = store.as_retriever(search_kwargs={"k": 3})
    generator = RationaleGenerator.for_embedder(embeddings.client, max_new_tokens=args.max_new_tokens)
    rewrite = rewrite_then_retrieve_chain(generator, latent)

    texts = [text for _, text in questions]
    for name, retriever in (("latent thinking (K=3)", latent), ("rewrite then retrieve", rewrite)):
        start = time.perf_counter()
        results = retriever.batch(texts)
        seconds = time.perf_counter() - start
        print(f"\n{name}: {seconds:.2f} s for {len(texts)} questions")
        for (query_id, text), documents in zip(questions, results, strict=True):
            found = [doc.metadata["doc_id"] for doc in documents]
            hits = [f"{doc_id}{' *' if doc_id in dataset.qrels[query_id] else ''}" for doc_id in found]
            print(f"  {text[:70]!r}\n    -> {', '.join(hits)}   (* = judged relevant)")


if __name__ == "__main__":
    main()
