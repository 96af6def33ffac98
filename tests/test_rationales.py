"""``laser rationales``: local batched generation, an OpenAI-compatible endpoint (local server), resumable writes."""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

from laser_integrations import load_model
from laser_integrations.cli import main
from laser_integrations.formatting import rationale_prompt
from laser_integrations.rewrite import RationaleGenerator
from laser_integrations.training import generate_rationales, request_rationales, write_rationales
from laser_integrations.training.rationales import chat_completions_url

QUERIES = ["why is the sky blue", "what does photosynthesis produce in plants and why", "a"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def generator(tiny_dirs):
    module = load_model(str(tiny_dirs["llama"]), device="cpu")[0]
    return module.model, module.tokenizer


class ChatServer:
    """A local stand-in for an OpenAI-compatible server: records requests, answers with the query it was asked."""

    def __init__(self, fail_with: int | None = None) -> None:
        self.requests: list[dict] = []
        self.fail_with = fail_with
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if server.fail_with:
                    self.send_response(server.fail_with)
                    self.end_headers()
                    self.wfile.write(b'{"error": "overloaded"}')
                    return
                query = body["messages"][0]["content"].split("[Begin of Question]\n")[1].split("\n[End")[0]
                answer = {"choices": [{"message": {"role": "assistant", "content": f"  Reasoning about {query}.\n"}}]}
                payload = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# -- local generator ----------------------------------------------------------------------------------------


def test_batched_generation_equals_one_at_a_time(generator):
    model, tokenizer = generator
    # The bare query as prompt: a random model's continuation then depends on it (the long paper prompt drowns it).
    generate = partial(generate_rationales, model=model, tokenizer=tokenizer, max_new_tokens=6, prompt=str)
    batched = generate(QUERIES, batch_size=3)
    alone = [generate([query])[0] for query in QUERIES]
    assert batched == alone  # left padding and greedy decoding: the batch a prompt rides in changes nothing
    assert len(set(batched)) == 3
    assert len(batched) == 3 and all(isinstance(text, str) and text == text.strip() for text in batched)
    assert tokenizer.padding_side == "left"  # restored


QWEN3_TURN = "<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
"""What the Qwen3-style tiny template renders for one user turn with enable_thinking=False."""


def test_the_prompt_sent_is_the_paper_prompt_with_qwen3_thinking_off(tiny_dirs, monkeypatch):
    generator = RationaleGenerator.from_pretrained(str(tiny_dirs["qwen3"]), device="cpu", max_new_tokens=2)
    sent: list[str] = []
    real_generate = generator.model.generate

    def recording_generate(input_ids, attention_mask, **kwargs):
        sent.extend(generator.tokenizer.batch_decode(input_ids, skip_special_tokens=False))
        return real_generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)

    monkeypatch.setattr(generator.model, "generate", recording_generate)
    generator.generate(QUERIES[:1])
    prompt = rationale_prompt(QUERIES[0])
    assert "[Begin of Question]\nwhy is the sky blue\n[End of Question]" in prompt
    assert sent == [QWEN3_TURN.format(message=prompt)]  # one user turn, the paper's prompt, an empty think block


def test_laser_rationales_sends_the_same_prompt_through_the_one_generator(tiny_dirs, tmp_path, monkeypatch):
    from laser_integrations.rewrite import generator as generator_module

    rendered: list[str] = []
    real_turn = generator_module._as_chat_turn
    monkeypatch.setattr(generator_module, "_as_chat_turn", lambda *a: rendered.append(real_turn(*a)) or rendered[-1])
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    argv = ["rationales", str(data), "-o", str(tmp_path / "out.jsonl"), "--model", str(tiny_dirs["qwen3"])]
    assert run_command([*argv, "--max-new-tokens", "2", "--device", "cpu"]) == 0
    assert rendered == [QWEN3_TURN.format(message=rationale_prompt(ROWS[0]["query"]))]


@pytest.mark.parametrize(
    ("queries", "message"),
    [(["ok", None], "query 1 is NoneType"), (["ok", 3], "query 1 is int"), ("a string", "got one string")],
)
def test_bad_queries_are_refused_by_name(generator, queries, message):
    with pytest.raises(TypeError, match=message):
        generate_rationales(queries, *generator)


# -- endpoint -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/chat/completions"])
def test_endpoint_urls_are_normalized(suffix):
    assert chat_completions_url("http://localhost:8000" + suffix) == "http://localhost:8000/v1/chat/completions"


def test_endpoint_gets_the_paper_prompt_and_answers_stay_in_order():
    with ChatServer() as server:
        answers = request_rationales(QUERIES, server.url + "/v1", model="reasoner", api_key="secret", concurrency=3)
    assert answers == [f"Reasoning about {query}." for query in QUERIES]
    assert sorted(request["messages"][0]["content"] for request in server.requests) == sorted(
        rationale_prompt(query) for query in QUERIES
    )
    first = server.requests[0]
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer secret"
    assert first["model"] == "reasoner" and first["temperature"] == 0.0 and first["max_tokens"] == 1024


def test_endpoint_errors_name_the_status():
    with ChatServer(fail_with=503) as server, pytest.raises(RuntimeError, match="HTTP 503.*overloaded"):
        request_rationales(QUERIES[:1], server.url, model="m", retries=0)
    with pytest.raises(ValueError, match="http"):
        request_rationales(QUERIES[:1], "localhost:8000", model="m")


# -- resumable writing --------------------------------------------------------------------------------------


ROWS = [{"id": f"q{i}", "query": f"question number {i}", "positive": f"passage {i}"} for i in range(7)]


def fake_generator(calls):
    def generate(queries):
        calls.append(list(queries))
        return [f"why: {query}" for query in queries]

    return generate


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_crash_loses_nothing_written_and_a_rerun_finishes(tmp_path):
    output = tmp_path / "with_rationales.jsonl"
    calls = []

    def crashing(queries):
        if calls:
            raise RuntimeError("generator died")
        return fake_generator(calls)(queries)

    with pytest.raises(RuntimeError, match="generator died"):
        write_rationales(ROWS, output, crashing, batch_size=3)
    assert [row["id"] for row in read_jsonl(output)] == ["q0", "q1", "q2"]  # the first batch is on disk

    calls.clear()
    assert write_rationales(ROWS, output, fake_generator(calls), batch_size=3) == 4
    assert calls == [[row["query"] for row in ROWS[3:6]], [ROWS[6]["query"]]]  # only the missing rows
    written = read_jsonl(output)
    assert [row["id"] for row in written] == [row["id"] for row in ROWS]
    assert written[4] == {**ROWS[4], "rationale": "why: question number 4"}
    assert write_rationales(ROWS, output, fake_generator(calls), batch_size=3) == 0  # nothing left to do


def test_a_half_written_line_is_dropped_and_redone(tmp_path):
    output = tmp_path / "out.jsonl"
    write_rationales(ROWS[:2], output, fake_generator([]), batch_size=2)
    with output.open("a") as handle:
        handle.write('{"id": "q2", "query": "question num')  # a crash mid-write
    calls = []
    write_rationales(ROWS, output, fake_generator(calls), batch_size=10)
    assert calls == [[row["query"] for row in ROWS[2:]]]
    assert [row["id"] for row in read_jsonl(output)] == [row["id"] for row in ROWS]


def test_resume_by_id_and_existing_rationales_are_kept(tmp_path):
    output = tmp_path / "out.jsonl"
    write_rationales([ROWS[5], ROWS[1]], output, fake_generator([]), id_column="id")
    rows = [dict(row) for row in ROWS]
    rows[0]["rationale"] = "given by a human"
    calls = []
    write_rationales(rows, output, fake_generator(calls), id_column="id", batch_size=100)
    assert calls == [[row["query"] for row in ROWS if row["id"] not in ("q0", "q1", "q5")]]
    by_id = {row["id"]: row for row in read_jsonl(output)}
    assert len(by_id) == 7 and by_id["q0"]["rationale"] == "given by a human"


def test_resuming_with_a_different_input_is_refused(tmp_path):
    output = tmp_path / "out.jsonl"
    write_rationales(ROWS[:2], output, fake_generator([]))
    other = [{**row, "query": "something else"} for row in ROWS]
    with pytest.raises(ValueError, match="written from other input"):
        write_rationales(other, output, fake_generator([]))


# -- the command --------------------------------------------------------------------------------------------


def run_command(argv: list[str]) -> int:
    return main(argv)


def test_laser_rationales_with_an_endpoint(tmp_path, monkeypatch):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:4]))
    output = tmp_path / "out.jsonl"
    monkeypatch.setenv("MY_KEY", "k-123")
    with ChatServer() as server:
        argv = ["rationales", str(data), "-o", str(output), "--endpoint", server.url, "--endpoint-model", "r1"]
        assert run_command([*argv, "--api-key-env", "MY_KEY", "--batch-size", "3"]) == 0
    assert [row["rationale"] for row in read_jsonl(output)] == [f"Reasoning about {r['query']}." for r in ROWS[:4]]
    assert {request["auth"] for request in server.requests} == {"Bearer k-123"}


@torch.no_grad()
def greedy_reference(model, tokenizer, query: str, new_tokens: int) -> str:
    """Greedy decoding written out, one text, no padding, no cache: argmax of the full forward at each step."""
    messages = [{"role": "user", "content": rationale_prompt(query)}]  # the tiny template is Qwen3-style:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    generated: list[int] = []
    for _ in range(new_tokens):
        next_id = int(model(input_ids=ids).logits[0, -1].argmax())
        if next_id == tokenizer.eos_token_id:
            break
        generated.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return tokenizer.decode(generated, skip_special_tokens=True).strip()


def test_laser_rationales_with_a_local_model_decodes_greedily(tmp_path, tiny_dirs):
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS[:2]))
    output = tmp_path / "out.jsonl"
    argv = ["rationales", str(data), "-o", str(output), "--model", str(tiny_dirs["llama"]), "--max-new-tokens", "3"]
    assert run_command([*argv, "--device", "cpu"]) == 0
    module = load_model(str(tiny_dirs["llama"]), device="cpu")[0]
    expected = [greedy_reference(module.model, module.tokenizer, row["query"], 3) for row in ROWS[:2]]
    assert [row["rationale"] for row in read_jsonl(output)] == expected


def test_laser_rationales_endpoint_needs_a_model_name(tmp_path, capsys):
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps(ROWS[0]) + "\n")
    assert run_command(["rationales", str(data), "-o", str(tmp_path / "o.jsonl"), "--endpoint", "http://x:9"]) == 2
    assert capsys.readouterr().err.strip() == (
        "laser rationales: error: --endpoint needs --endpoint-model (the model name the server expects)"
    )
