"""Tiny random causal LMs and a locally trained tokenizer, for fast offline unit tests."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

# Qwen3's template, reduced to what a single user turn exercises (it mentions <think>, as Qwen3's does).
QWEN3_STYLE_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}"
    "{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    "Why is the sky blue? Rayleigh scattering of sunlight by molecules in the atmosphere.",
    "Instruct: Given a query, retrieve relevant passages that answer the query\nQuery: what is python",
    "Python is a programming language. Its default arguments are evaluated once.\n\nSo lists grow.",
    "<think>\n\n</think>\n\n user assistant system the a of and to in is it that for on with as",
    "First idea.\n\nSecond idea.\n\nThird idea.\n\nA line\nand a paragraph.\n\nEnd.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "0123456789 !?.,;:'\"()[]{}<>-_=+*/\\|@#$%^&~` abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ",
]


def build_tokenizer(chat_template: str | None = QWEN3_STYLE_TEMPLATE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained in milliseconds; eos and pad are ``<|endoftext|>`` like Qwen3."""
    backend = Tokenizer(models.BPE())
    # Runs of newlines are their own pre-token, as in Qwen's tokenizer, so "\n\n" learns a single id.
    newlines = pre_tokenizers.Split(Regex(r"\n+"), behavior="isolated")
    backend.pre_tokenizer = pre_tokenizers.Sequence([newlines, pre_tokenizers.ByteLevel(add_prefix_space=False)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def build_qwen3(vocab_size: int, seed: int = 0) -> Qwen3ForCausalLM:
    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        tie_word_embeddings=True,
    )
    return Qwen3ForCausalLM(config).eval()


def build_llama(vocab_size: int, seed: int = 1) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    return LlamaForCausalLM(config).eval()


MIXED_LENGTH_TEXTS = [
    "why is the sky blue",
    "Photosynthesis converts light energy into chemical energy stored in glucose, which plants use to grow.",
    "a",
    "Python is a programming language. Its default arguments are evaluated once.\n\nSo lists grow.",
]
"""Texts of very different lengths (one token to two sentences), so a batch of them is heavily left padded."""


@torch.no_grad()
def reference_embedding(causal_lm, ids: list[int], steps: int) -> torch.Tensor:
    """One text, no padding, no cache: the whole sequence recomputed at every step, as the spec reads."""
    table = causal_lm.get_input_embeddings().weight
    inputs = table[torch.tensor(ids)].unsqueeze(0)
    states = []
    for _ in range(steps):
        output = causal_lm(inputs_embeds=inputs, output_hidden_states=True)
        states.append(output.hidden_states[-1][0, -1])
        probs = torch.softmax(output.logits[0, -1].float(), dim=-1)
        inputs = torch.cat([inputs, (probs @ table).view(1, 1, -1)], dim=1)
    return F.normalize(torch.stack(states).mean(dim=0), dim=-1)
