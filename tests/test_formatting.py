"""The exact text the model reads (spec section 3) and the explicit-view inputs (spec section 2)."""

from __future__ import annotations

import pytest

from laser_integrations.formatting import DEFAULT_INSTRUCTION, query_prompt, rationale_prompt
from laser_integrations.latent import trajectory_positions
from laser_integrations.module import LatentThinkingEmbedding, explicit_inputs

from tiny import build_llama, build_tokenizer

SMOLLM_STYLE_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
QUERY_PREFIX = f"Instruct: {DEFAULT_INSTRUCTION}\nQuery: "


def make_module(template="qwen3", **options) -> LatentThinkingEmbedding:
    tokenizer = build_tokenizer(None) if template is None else build_tokenizer()
    if template == "smollm":
        tokenizer.chat_template = SMOLLM_STYLE_TEMPLATE
    return LatentThinkingEmbedding(build_llama(len(tokenizer)), tokenizer, **options)


def read_back(module: LatentThinkingEmbedding, key: str = "input_ids", row: int = 0) -> str:
    features = module._last_features
    ids = features[key][row][features[key.replace("input_ids", "attention_mask")][row].bool()]
    return module.tokenizer.decode(ids)


def preprocess(module, inputs, prompt=None):
    module._last_features = module.preprocess(inputs, prompt=prompt)
    return module._last_features


def test_query_prefix_is_the_released_template():
    assert query_prompt() == QUERY_PREFIX
    assert query_prompt("Retrieve theorems") == "Instruct: Retrieve theorems\nQuery: "
    assert query_prompt("") == ""


def test_qwen3_style_query_gets_chat_turn_and_empty_think_block():
    module = make_module()
    assert module.uses_chat_template and module.uses_think_block
    preprocess(module, ["why is the sky blue"], prompt=QUERY_PREFIX)
    assert read_back(module) == (
        f"<|im_start|>user\n{QUERY_PREFIX}why is the sky blue<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_document_gets_no_instruction():
    module = make_module()
    preprocess(module, ["Rayleigh scattering."])
    assert read_back(module) == (
        "<|im_start|>user\nRayleigh scattering.<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_template_without_think_gets_no_think_block():
    module = make_module("smollm")
    assert module.uses_chat_template and not module.uses_think_block
    preprocess(module, ["a"], prompt=QUERY_PREFIX)
    assert read_back(module) == f"<|im_start|>user\n{QUERY_PREFIX}a<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("template", [None, "qwen3"])
def test_raw_text_without_chat_template(template):
    module = make_module(template, chat_template=False if template else None)
    assert not module.uses_chat_template
    preprocess(module, ["why is the sky blue"], prompt=QUERY_PREFIX)
    assert read_back(module) == f"{QUERY_PREFIX}why is the sky blue"
    preprocess(module, ["Rayleigh scattering."])
    assert read_back(module) == "Rayleigh scattering."


def test_think_block_can_be_forced_either_way():
    assert make_module("smollm", think_block=True).format_text("a").endswith("<think>\n\n</think>\n\n")
    assert not make_module(think_block=False).format_text("a").endswith("</think>\n\n")


def test_chat_template_forced_on_without_a_template_is_refused():
    with pytest.raises(ValueError, match="no chat template"):
        make_module(None, chat_template=True)


def test_explicit_input_is_query_then_rationale_then_one_eos():
    module = make_module()
    rationale = "First idea.\n\nSecond idea."
    preprocess(module, [("why", rationale)], prompt=QUERY_PREFIX)
    expected = module.format_text(QUERY_PREFIX + "why") + rationale + "<|endoftext|>"
    assert read_back(module, "explicit_input_ids") == expected
    ids = module._last_features["explicit_input_ids"][0]
    assert ids[-1].item() == module.tokenizer.eos_token_id
    assert (ids == module.tokenizer.eos_token_id).sum() == 1 + (
        module._last_features["explicit_attention_mask"] == 0
    ).sum()


def test_trajectory_positions_end_segments_at_paragraph_breaks():
    module = make_module()
    tokenizer = module.tokenizer
    break_id = tokenizer.encode("\n\n", add_special_tokens=False)[-1]
    rationale = "First idea.\n\nSecond idea.\n\nThird idea"
    short_query = ("why", rationale)
    long_query = ("why does my default list argument keep growing between calls " * 2, rationale)
    features = preprocess(module, [short_query, long_query])
    for row in range(2):
        ids = features["explicit_input_ids"][row]
        positions = features["explicit_trajectory_positions"][row].tolist()
        assert [ids[p].item() for p in positions[:2]] == [break_id, break_id]
        assert tokenizer.decode(ids[positions[2]]) == " idea"  # the rationale's last token, just before EOS
        assert positions[2] == len(ids) - 2


def test_trajectory_downsampling_and_repetition_through_preprocess():
    rationale = "First idea.\n\nSecond idea.\n\nThird idea"
    two = preprocess(make_module(num_thinking_steps=2), [("q", rationale)])["explicit_trajectory_positions"][0]
    three = preprocess(make_module(num_thinking_steps=3), [("q", rationale)])["explicit_trajectory_positions"][0]
    five = preprocess(make_module(num_thinking_steps=5), [("q", rationale)])["explicit_trajectory_positions"][0]
    assert two.tolist() == [three[0].item(), three[2].item()]
    assert five.tolist() == three.tolist() + [three[2].item()] * 2


def test_empty_rationale_uses_the_final_state_k_times():
    features = preprocess(make_module(num_thinking_steps=3), [("why", "")])
    last = features["explicit_input_ids"].shape[1] - 1
    assert features["explicit_trajectory_positions"][0].tolist() == [last] * 3


@pytest.mark.parametrize(
    ("rationale", "steps", "expected"),
    [
        ([1, 9, 2, 9, 3], 3, [1, 3, 4]),
        ([1, 9, 2, 9, 3, 9, 4, 9], 2, [1, 7]),  # ends 1,3,5,7 -> floor(linspace(0, 3, 2)) = 0, 3
        ([1, 9, 2, 9, 3, 9, 4, 9], 3, [1, 3, 7]),  # floor(linspace(0, 3, 3)) = 0, 1, 3
        ([1, 2, 3], 3, [2, 2, 2]),
        ([9], 2, [0, 0]),
        ([], 3, []),
    ],
)
def test_trajectory_positions_rule(rationale, steps, expected):
    assert trajectory_positions(rationale, break_token_id=9, num_steps=steps) == expected


def test_explicit_inputs_pairs_queries_with_rationales():
    assert explicit_inputs(["a", "b"], ["ra", "rb"]) == [("a", "ra"), ("b", "rb")]
    with pytest.raises(ValueError, match="2 queries but 1 rationales"):
        explicit_inputs(["a", "b"], ["ra"])
    with pytest.raises(TypeError, match="rationale 1"):
        explicit_inputs(["a", "b"], ["ra", None])


def test_rationale_prompt_is_the_paper_prompt():
    prompt = rationale_prompt("why is the sky blue")
    assert prompt.startswith("Given a question, your mission is to follow the instructions below:\n1. Identify")
    assert prompt.endswith("[Begin of Question]\nwhy is the sky blue\n[End of Question]")
