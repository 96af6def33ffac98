"""LlamaIndex + Qdrant: a LaSER latent-thinking retriever and a rewrite-then-retrieve retriever on one collection.

    python examples/llamaindex_qdrant.py                        # offline SmolLM2 (NOT a trained LaSER model)
    python examples/llamaindex_qdrant.py --model laser-qwen3    # LaSER-Qwen3-0.6B (downloads once)

Both retrievers search the same collection of K=3 latent document vectors. The latent retriever embeds the
question with K latent thinking steps (no text is generated); the rewrite retriever is LlamaIndex's
``TransformRetriever`` with :class:`~laser_integrations.rewrite.RationaleQueryTransform` (like
``HyDEQueryTransform``): the LLM writes the LaSER paper's reasoning rationale, and question + rationale are
embedded with LaSER's explicit view. The LLM here is the embedding model's own backbone (one copy in memory),
or a shipped adapter model's untrained chat base; any LlamaIndex LLM works in its place. The collection lives
on disk, so a second run skips indexing.
"""

from __future__ import annotations

import argparse
import time

from llama_index.core import VectorStoreIndex
from llama_index.core.retrievers import TransformRetriever
from llama_index.core.schema import TextNode

from laser_integrations.backbone import cache_root
from laser_integrations.evaluation import load_beir
from laser_integrations.llama_index import LaSEREmbedding
from laser_integrations.qdrant import content_id, llama_index_vector_store
from laser_integrations.rewrite import RationaleGenerator, RationaleQueryTransform


def main() -> None:
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

    embed_model = LaSEREmbedding(args.model, num_thinking_steps=3)
    vector_store = llama_index_vector_store(embed_model, "pyref-llamaindex", path=cache_root() / "qdrant-llamaindex")
    index = VectorStoreIndex.from_vector_store(vector_store, embed_model=embed_model)
    if vector_store.client.count("pyref-llamaindex", exact=True).count < len(passages):
        print(f"indexing {len(passages)} passages ...")
        # LlamaIndex embeds metadata along with the text unless told not to: index the passage alone.
        nodes = [
            TextNode(
                id_=content_id(p.as_text()),
                text=p.as_text(),
                metadata={"doc_id": p.id},
                excluded_embed_metadata_keys=["doc_id"],
                excluded_llm_metadata_keys=["doc_id"],
            )
            for p in passages
        ]
        index.insert_nodes(nodes)

    latent = index.as_retriever(similarity_top_k=3)
    generator = RationaleGenerator.for_embedder(embed_model.client, max_new_tokens=args.max_new_tokens)
    rewrite = TransformRetriever(latent, RationaleQueryTransform(generator, embed_model=embed_model))

    for name, retriever in (("latent thinking (K=3)", latent), ("rewrite then retrieve", rewrite)):
        start = time.perf_counter()
        results = [retriever.retrieve(text) for _, text in questions]
        seconds = time.perf_counter() - start
        print(f"\n{name}: {seconds:.2f} s for {len(questions)} questions")
        for (query_id, text), nodes in zip(questions, results, strict=True):
            found = [node.node.metadata["doc_id"] for node in nodes]
            hits = [f"{doc_id}{' *' if doc_id in dataset.qrels[query_id] else ''}" for doc_id in found]
            print(f"  {text[:70]!r}\n    -> {', '.join(hits)}   (* = judged relevant)")


if __name__ == "__main__":
    main()
