"""Start ``laser serve`` and call it with the clients RAG stacks already use; check they get the right side.

    python examples/serve_clients.py                 # offline SmolLM2 (not a trained LaSER model)
    python examples/serve_clients.py --model laser-qwen3

Starts ``laser serve MODEL --port 0 --api-key ...`` in a subprocess, then embeds one query and one document
with the ``openai`` client, LangChain's ``OpenAIEmbeddings``, LlamaIndex's ``OpenAIEmbedding``,
``huggingface_hub``'s TEI client and this package's adapters in remote mode, and prints each vector's cosine
with the in-process ``encode_query`` / ``encode_document`` vector (1.000000 = the same vector). With
``HF_HUB_OFFLINE=1`` set, huggingface_hub refuses every URL, a local server's too: unset it for the TEI client.
"""

from __future__ import annotations

import argparse
import re
import secrets
import subprocess
import sys
import threading

import numpy as np

QUERY = "why does the sky look blue at noon"
DOCUMENT = "Rayleigh scattering: air molecules scatter short blue wavelengths of sunlight much more than red ones."


def start_server(model: str, api_key: str) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "laser_integrations.cli", "serve", model, "--port", "0", "--api-key", api_key]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:  # the announcement line carries the URL
        print(line, end="", file=sys.stderr)
        found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
        if found:  # keep relaying its log, so that the pipe never fills
            threading.Thread(target=lambda: sys.stderr.writelines(server.stderr), daemon=True).start()
            return server, found.group(1)
    raise SystemExit(f"laser serve exited with status {server.wait()}")


def cosine(a: object, b: object) -> float:
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    key = secrets.token_urlsafe(16)
    server, url = start_server(args.model, key)
    try:
        from huggingface_hub import InferenceClient
        from langchain_openai import OpenAIEmbeddings
        from llama_index.embeddings.openai import OpenAIEmbedding
        from openai import OpenAI

        from laser_integrations import load_model
        from laser_integrations.langchain import LaSEREmbeddings
        from laser_integrations.llama_index import LaSEREmbedding

        model = load_model(args.model)
        want = {"query": model.encode_query([QUERY])[0], "document": model.encode_document([DOCUMENT])[0]}
        name = args.model
        openai = OpenAI(base_url=f"{url}/v1", api_key=key)
        lc_query = OpenAIEmbeddings(model=f"{name}:query", base_url=f"{url}/v1", api_key=key,
                                    check_embedding_ctx_length=False)  # fmt: skip
        lc_document = OpenAIEmbeddings(model=name, base_url=f"{url}/v1", api_key=key, check_embedding_ctx_length=False)
        li_query = OpenAIEmbedding(model_name=f"{name}:query", api_base=f"{url}/v1", api_key=key)
        li_document = OpenAIEmbedding(model_name=name, api_base=f"{url}/v1", api_key=key)
        tei = InferenceClient(model=url, token=key)
        remote_lc = LaSEREmbeddings(endpoint=url, api_key=key)
        remote_li = LaSEREmbedding(endpoint=url, api_key=key)

        calls = {
            "openai (model NAME:query / NAME)": (
                lambda: openai.embeddings.create(model=f"{name}:query", input=[QUERY]).data[0].embedding,
                lambda: openai.embeddings.create(model=name, input=[DOCUMENT]).data[0].embedding,
            ),
            "openai (extra_body input_type)": (
                lambda: (
                    openai.embeddings.create(model=name, input=[QUERY], extra_body={"input_type": "query"})
                    .data[0]
                    .embedding
                ),
                lambda: (
                    openai.embeddings.create(model=name, input=[DOCUMENT], extra_body={"input_type": "document"})
                    .data[0]
                    .embedding
                ),
            ),
            "langchain OpenAIEmbeddings": (
                lambda: lc_query.embed_query(QUERY),
                lambda: lc_document.embed_query(DOCUMENT),
            ),
            "llama-index OpenAIEmbedding": (
                lambda: li_query.get_query_embedding(QUERY),
                lambda: li_document.get_text_embedding(DOCUMENT),
            ),
            "TEI InferenceClient (prompt_name)": (
                lambda: tei.feature_extraction(QUERY, prompt_name="query"),
                lambda: tei.feature_extraction(DOCUMENT),
            ),
            "LaSEREmbeddings(endpoint=...)": (
                lambda: remote_lc.embed_query(QUERY),
                lambda: remote_lc.embed_documents([DOCUMENT])[0],
            ),
            "LaSEREmbedding(endpoint=...)": (
                lambda: remote_li.get_query_embedding(QUERY),
                lambda: remote_li.get_text_embedding(DOCUMENT),
            ),
        }
        print(f"\n{'client':<36} {'query cosine':>12} {'document cosine':>16}")
        for client, (query, document) in calls.items():
            print(
                f"{client:<36} {cosine(query(), want['query']):>12.6f} {cosine(document(), want['document']):>16.6f}"
            )
        print(f"\nprovenance from {url}/info: {remote_lc.provenance}")
    finally:
        server.terminate()  # SIGTERM: in-flight requests finish, then the server exits 0
        print(f"laser serve exited with status {server.wait(timeout=60)}", file=sys.stderr)


if __name__ == "__main__":
    main()
