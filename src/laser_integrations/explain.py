"""What did the model "think"? The top tokens of each latent step's next-token distribution.

Each soft token is a probability-weighted mix of input embeddings; listing the heaviest tokens of
that mix is the closest readable view of a latent thought (``laser explain`` prints it).

>>> steps = explain_thinking(model, "why is the sky blue", num_thinking_steps=3)   # doctest: +SKIP
>>> steps[0].tokens[:3]                                                           # doctest: +SKIP
['ĠRay', 'Ġlight', 'Ġscattering']
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from sentence_transformers import SentenceTransformer

from laser_integrations.latent import latent_thinking


@dataclass
class ThinkingStep:
    """One latent step: the distribution that follows state ``h_step``."""

    step: int
    """1-based; steps 1..K-1 became soft tokens, step K is what the model would think next."""
    tokens: list[str]
    probabilities: list[float]
    fed_back: bool
    """Whether this distribution was fed back as a soft token (all but the last step)."""


def explain_thinking(
    model: SentenceTransformer,
    text: str,
    *,
    num_thinking_steps: int | None = None,
    top_k: int = 8,
    prompt: str | None = None,
) -> list[ThinkingStep]:
    """Run the latent loop on one text and return the top ``top_k`` tokens of each of the K distributions.

    ``prompt`` is prepended as in ``encode`` (use ``model.prompts["query"]`` for the query side).
    """
    module = model[0]
    steps = module.num_thinking_steps if num_thinking_steps is None else num_thinking_steps
    features = module.preprocess([text], prompt=prompt)
    with torch.inference_mode():
        output = latent_thinking(
            module.model,
            features["input_ids"].to(model.device),
            features["attention_mask"].to(model.device),
            steps,
            top_k=top_k,
        )
    explained = []
    for index, (ids, probs) in enumerate(zip(output.top_token_ids[0], output.top_token_probs[0], strict=True)):
        tokens = [module.tokenizer.decode([token]) for token in ids.tolist()]
        explained.append(ThinkingStep(index + 1, tokens, probs.tolist(), fed_back=index < steps - 1))
    return explained
