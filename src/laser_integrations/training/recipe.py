"""The released LaSER training recipe (spec section 4) as overridable defaults, and ``train`` (``laser train``).

The authors trained with a Tevatron fork, DeepSpeed and 4 GPUs; here the same recipe is one
``SentenceTransformerTrainer`` run with :class:`~laser_integrations.training.LaSERLoss`:

>>> from laser_integrations.training import TrainConfig, train                       # doctest: +SKIP
>>> config = TrainConfig(model="Qwen/Qwen3-0.6B", data="reasonemb.jsonl", output_dir="laser-0.6b")
>>> model = train(config)                                                               # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # heavy imports stay inside the functions, so `laser --help` is quick
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class TrainConfig:
    """Everything ``laser train`` sets; the defaults are the released recipe (Qwen3-0.6B, LoRA, K=3)."""

    model: str = "Qwen/Qwen3-0.6B"
    """The backbone: any causal LM (Hub id, folder, .gguf, ``smollm2``) or a LaSER model to continue training."""
    data: str | None = None
    """A .jsonl/.json/.parquet file, a folder written by ``Dataset.save_to_disk``, or a Hub dataset name."""
    output_dir: str = "laser-model"
    """Where the trained model goes (``checkpoints/`` inside it holds the trainer's checkpoints)."""
    split: str = "train"
    max_samples: int | None = None
    """Train on the first N rows only (quick runs)."""
    columns: dict[str, str] | None = None
    """Raw field -> column name, e.g. ``{"rationale": "reasoning_path"}`` (see ``prepare_laser_dataset``)."""

    num_thinking_steps: int = 3
    max_seq_length: int = 512
    max_explicit_length: int = 1024
    instruction: str | None = None
    """Query task for rows without an ``instruction`` value (None: the project default)."""
    group_size: int = 2
    """Passages per query: 1 positive + G-1 hard negatives (all B*G are candidates for every query)."""

    temperature: float = 0.02
    trajectory_temperature: float = 0.05
    latent_weight: float = 1.0
    explicit_weight: float = 1.0
    output_weight: float = 10.0
    trajectory_weight: float = 0.1
    explicit_view: bool = True
    teacher: str = "online"
    teacher_model: str | None = None
    """A fixed teacher model for ``teacher="frozen"`` (default: the backbone with its adapters disabled)."""

    lora: bool = True
    lora_r: int = 64
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    lora_target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGET_MODULES))
    merge: bool = True
    """Merge the LoRA adapters into the weights before saving (a plain checkpoint, like the released ones)."""

    learning_rate: float = 1e-4
    warmup_ratio: float = 0.1
    num_train_epochs: float = 1.0
    max_steps: int = -1
    per_device_train_batch_size: int = 8
    gradient_accumulation_steps: int = 2
    bf16: bool | None = None
    """Mixed precision; None: on when a CUDA GPU supports bf16 (LoRA then also keeps the frozen base in bf16).
    True on a CPU with native bf16 (AMX / AVX512-BF16) trains under CPU autocast."""
    gradient_checkpointing: bool = False
    logging_steps: int = 10
    save_steps: int = 500
    save_total_limit: int | None = 2
    resume: bool = True
    """Continue from the last checkpoint in ``output_dir/checkpoints`` when there is one (a killed run resumes)."""
    seed: int = 42
    device: str | None = None
    report_to: str = "none"


def train(
    config: TrainConfig,
    *,
    train_dataset: Any = None,
    model: SentenceTransformer | None = None,
    callbacks: list[Any] | None = None,
) -> SentenceTransformer:
    """Train a LaSER retriever with the recipe in ``config`` and save it to ``config.output_dir``.

    Args:
        config: The recipe; its defaults are the released one.
        train_dataset: Raw LaSER rows (a ``datasets.Dataset`` or a list of dicts); default: ``config.data``.
        model: A ready LaSER ``SentenceTransformer``; default: ``load_model(config.model, ...)``.
        callbacks: ``transformers.TrainerCallback`` objects for the trainer (progress, early stopping ...).

    Returns:
        The trained model (adapters merged when ``config.lora and config.merge``), also saved to
        ``config.output_dir``, where :func:`~laser_integrations.load_model` loads it again, with the
        training logs (every loss term per logging step) in ``trainer_state.json``.
    """
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from transformers import set_seed

    from laser_integrations.training.data import prepare_laser_dataset
    from laser_integrations.training.loss import LaSERLoss

    if not 0 <= config.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    set_seed(config.seed)
    bf16 = uses_bf16(config)
    if model is None:
        model = _load_backbone(config, bf16)
    model[0].max_explicit_length = config.max_explicit_length
    if config.lora:
        add_lora(model, config)
    if config.gradient_checkpointing:
        enable_checkpointing(model)

    raw = train_dataset if train_dataset is not None else load_training_data(config.data, split=config.split)
    if config.max_samples is not None:
        raw = _first_rows(raw, config.max_samples)
    dataset = prepare_laser_dataset(
        raw,
        num_negatives=config.group_size - 1,
        instruction=config.instruction,
        explicit_view=config.explicit_view,
        columns=config.columns,
    )
    teacher_model = None
    if config.teacher_model is not None:
        from laser_integrations.loading import load_model

        teacher_model = load_model(
            config.teacher_model, num_thinking_steps=config.num_thinking_steps, device=config.device
        )
    loss = LaSERLoss(
        model,
        temperature=config.temperature,
        trajectory_temperature=config.trajectory_temperature,
        latent_weight=config.latent_weight,
        explicit_weight=config.explicit_weight,
        output_weight=config.output_weight,
        trajectory_weight=config.trajectory_weight,
        explicit_view=config.explicit_view,
        teacher=config.teacher,  # type: ignore[arg-type]
        teacher_model=teacher_model,
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(Path(config.output_dir) / "checkpoints"),
        per_device_train_batch_size=config.per_device_train_batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the steps
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        bf16=bf16,
        logging_steps=config.logging_steps,
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        report_to=config.report_to,
        use_cpu=config.device == "cpu",
    )
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    checkpoint = last_checkpoint(args.output_dir) if config.resume else None
    if checkpoint is not None:
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)

    if config.lora and config.merge:
        merge_adapters(model)
    model.save(config.output_dir)
    trainer.state.save_to_json(str(Path(config.output_dir) / "trainer_state.json"))  # the per-term training logs
    logger.info("saved the trained LaSER model to %s", config.output_dir)
    return model


def last_checkpoint(checkpoints_dir: str | Path) -> str | None:
    """The newest complete ``checkpoint-N`` folder the trainer wrote under ``checkpoints_dir``, or ``None``.

    The trainer writes ``trainer_state.json`` last, so a folder without it is a save cut short by a kill.
    """
    folder = Path(checkpoints_dir)
    steps = []
    for candidate in folder.glob("checkpoint-*") if folder.is_dir() else []:
        step = candidate.name.removeprefix("checkpoint-")
        if step.isdigit() and (candidate / "trainer_state.json").is_file():
            steps.append((int(step), candidate))
    return str(max(steps)[1]) if steps else None


def add_lora(model: SentenceTransformer, config: TrainConfig | None = None) -> None:
    """Attach fresh LoRA adapters (the released r=64, alpha=32 on all projections by default) via peft."""
    from peft import LoraConfig

    config = config or TrainConfig()
    model.add_adapter(
        LoraConfig(
            r=config.lora_r,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=list(config.lora_target_modules),
            task_type="CAUSAL_LM",
        )
    )


def enable_checkpointing(model: SentenceTransformer) -> None:
    """Activation (gradient) checkpointing on the causal LM, non-reentrant (works with frozen LoRA bases)."""
    causal_lm = model[0].model
    kwargs = {"use_reentrant": False}
    if hasattr(causal_lm, "activation_checkpointing_enable"):
        causal_lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:  # transformers < 5.23
        causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def merge_adapters(model: SentenceTransformer) -> SentenceTransformer:
    """Merge the model's LoRA adapters into its weights in place, leaving a plain causal LM.

    This is ``merge_and_unload`` for adapters attached with ``model.add_adapter`` (transformers' peft
    integration): each peft layer folds its update into the base weight and is replaced by that base
    layer. ``model.save(path)`` then writes full weights, which ``load_model`` and
    ``AutoModelForCausalLM.from_pretrained`` both load, like the released checkpoints.

    Example:
        >>> from laser_integrations import load_model                                  # doctest: +SKIP
        >>> merge_adapters(load_model("laser-model-adapter")).save("laser-model-merged")  # doctest: +SKIP
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    causal_lm = model[0].model
    if not getattr(causal_lm, "_hf_peft_config_loaded", False):
        raise ValueError("the model has no adapters to merge")
    for name, layer in list(causal_lm.named_modules()):
        if isinstance(layer, BaseTunerLayer):
            layer.merge()
            parent, _, child = name.rpartition(".")
            setattr(causal_lm.get_submodule(parent), child, layer.get_base_layer())
    del causal_lm.peft_config
    causal_lm._hf_peft_config_loaded = False
    if getattr(causal_lm, "_weight_conversions", None):
        # A model loaded from an adapter folder remembers the adapter's key renamings ("base_model.model." ...),
        # which save_pretrained would replay onto the merged weights; None makes it use the model type's defaults.
        causal_lm._weight_conversions = None
    return model


def load_training_data(source: str | None, *, split: str = "train") -> Any:
    """Load raw rows from a .jsonl/.json/.parquet file, a ``save_to_disk`` folder, or a Hub dataset name."""
    import datasets

    if not source:
        raise ValueError("no training data: pass a .jsonl/.parquet file, a dataset folder, or a Hub dataset name")
    path = Path(source).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".parquet"):
        if not path.is_file():
            raise FileNotFoundError(f"training data file not found: {source}")
        builder = "parquet" if suffix == ".parquet" else "json"
        return datasets.load_dataset(builder, data_files=str(path), split="train")
    if path.is_dir():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise ValueError(f"{source} has splits {list(loaded)}, not {split!r}; pass split=...")
            loaded = loaded[split]
        return loaded
    if path.exists():
        raise ValueError(f"{source}: expected a .jsonl, .json or .parquet file")
    return datasets.load_dataset(source, split=split)


def _first_rows(rows: Any, count: int) -> Any:
    return rows.select(range(min(count, len(rows)))) if hasattr(rows, "select") else list(rows)[:count]


def uses_bf16(config: TrainConfig) -> bool:
    """Mixed precision: on CUDA by default; on a CPU only when asked and the CPU does bf16 natively (autocast)."""
    import torch

    from laser_integrations.backbone import cpu_bf16_features

    on_cuda = torch.cuda.is_available() if config.device is None else str(config.device).startswith("cuda")
    if config.bf16 is None:
        return bool(on_cuda and torch.cuda.is_bf16_supported())
    if config.bf16 and not on_cuda and not cpu_bf16_features():
        raise ValueError(
            "bf16 training needs a CUDA GPU or a CPU with native bf16 (avx512_bf16 or amx_bf16); "
            "pass bf16=False (--no-bf16) here"
        )
    return config.bf16


def _load_backbone(config: TrainConfig, bf16: bool) -> SentenceTransformer:
    from laser_integrations.loading import load_model

    # A frozen LoRA base can sit in bf16; full fine-tuning keeps float32 master weights under bf16 autocast.
    dtype = "bfloat16" if bf16 and config.lora else "float32"
    return load_model(
        config.model,
        num_thinking_steps=config.num_thinking_steps,
        max_seq_length=config.max_seq_length,
        instruction=config.instruction,
        device=config.device,
        dtype=dtype,
    )
