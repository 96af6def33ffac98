"""Train LaSER latent-thinking retrievers with sentence-transformers (spec section 4).

>>> from laser_integrations import load_model                                         # doctest: +SKIP
>>> from laser_integrations.training import LaSERLoss, prepare_laser_dataset          # doctest: +SKIP
>>> from sentence_transformers import SentenceTransformerTrainer                      # doctest: +SKIP
>>> model = load_model("Qwen/Qwen3-0.6B", num_thinking_steps=3)                       # doctest: +SKIP
>>> trainer = SentenceTransformerTrainer(                                             # doctest: +SKIP
...     model=model, train_dataset=prepare_laser_dataset(rows), loss=LaSERLoss(model))
>>> trainer.train()                                                                   # doctest: +SKIP

Names are imported on first use, so ``import laser_integrations.training`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laser_integrations.lazy import lazy_exports

_EXPORTS = {
    "LaSERLoss": "laser_integrations.training.loss",
    "LaSERLossTerms": "laser_integrations.training.loss",
    "prepare_laser_dataset": "laser_integrations.training.data",
    "generate_rationales": "laser_integrations.rewrite.generator",
    "request_rationales": "laser_integrations.training.rationales",
    "write_rationales": "laser_integrations.training.rationales",
    "TrainConfig": "laser_integrations.training.recipe",
    "train": "laser_integrations.training.recipe",
    "add_lora": "laser_integrations.training.recipe",
    "merge_adapters": "laser_integrations.training.recipe",
    "load_training_data": "laser_integrations.training.recipe",
}

__all__ = [
    "LaSERLoss",
    "LaSERLossTerms",
    "TrainConfig",
    "add_lora",
    "generate_rationales",
    "load_training_data",
    "merge_adapters",
    "prepare_laser_dataset",
    "request_rationales",
    "train",
    "write_rationales",
]

if TYPE_CHECKING:
    from laser_integrations.rewrite.generator import generate_rationales
    from laser_integrations.training.data import prepare_laser_dataset
    from laser_integrations.training.loss import LaSERLoss, LaSERLossTerms
    from laser_integrations.training.rationales import request_rationales, write_rationales
    from laser_integrations.training.recipe import TrainConfig, add_lora, load_training_data, merge_adapters, train


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
