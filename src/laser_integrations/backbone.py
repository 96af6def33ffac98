"""Load a causal LM and its tokenizer with transformers: dtype, GGUF files, and the dequantized-GGUF cache.

This is the bottom of the loading stack: :mod:`laser_integrations.module` rebuilds a saved model with
:func:`load_causal_lm`, and :mod:`laser_integrations.loading` decides *which* folder or file to load.
Nothing here touches the network at import time.

>>> resolve_dtype("bf16")
torch.bfloat16
>>> resolve_dtype("float32", device="cpu")
torch.float32
>>> resolve_dtype(None, device="cuda")
torch.bfloat16
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

DTypeLike = torch.dtype | str | None

DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}  # fmt: skip


class ModelLoadError(OSError):
    """A model spec could not be resolved or its weights could not be loaded."""


def cache_root(cache_folder: str | os.PathLike[str] | None = None) -> Path:
    """This package's own cache (dequantized GGUF checkpoints, the demo's Qdrant data): ``cache_folder``,
    ``$LASER_CACHE``, or ``~/.cache/laser_integrations``. The Hugging Face cache is separate."""
    if cache_folder:
        return Path(cache_folder).expanduser()
    return Path(os.environ.get("LASER_CACHE") or Path.home() / ".cache" / "laser_integrations")


BF16_DEFAULT_ON_NATIVE_CPUS = False
"""Whether ``dtype=None`` picks bfloat16 on a CPU that does bf16 natively. Off, by decision: bf16 passed the
pyref quality gate on a trained model (``benchmarks/bf16_quality.py``, issue 21: no mode lost more than 0.007
nDCG@10), but its query vectors lie as far as cosine 0.956 from float32 ones and change with their batch-mates,
which is not the exact embedding the spec asks for, and one short query is no faster. ``dtype="auto"``
(``--dtype auto``) or ``LASER_CPU_BF16=1`` opts in (see ``benchmarks/RESULTS.md``, "bf16 on and off")."""

CPU_BF16_ENV = "LASER_CPU_BF16"
"""``1`` (``true``, ``yes``, ``on``) makes bfloat16 the CPU default where bf16 is native; ``0`` keeps float32."""


def cpu_bf16_default() -> bool:
    """Whether ``dtype=None`` gets bfloat16 on a CPU with native bf16: ``$LASER_CPU_BF16`` when set, else
    :data:`BF16_DEFAULT_ON_NATIVE_CPUS`."""
    value = os.environ.get(CPU_BF16_ENV, "").strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    return BF16_DEFAULT_ON_NATIVE_CPUS


def cpu_bf16_features() -> list[str]:
    """The native bf16 features torch reports for this CPU: ``avx512_bf16`` and/or ``amx_bf16`` (``[]``: none).

    Read from torch's own capability report (``torch.cpu.get_capabilities``; older torch releases expose
    ``torch.cpu._is_avx512_bf16_supported`` and ``_is_amx_tile_supported``), and only where oneDNN, which
    runs bf16 matrix products on them, is built in.
    """
    if not torch.backends.mkldnn.is_available():
        return []
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)
    if get_capabilities is not None:
        capabilities = get_capabilities()
        return [name for name in ("avx512_bf16", "amx_bf16") if capabilities.get(name)]
    checks = {"avx512_bf16": "_is_avx512_bf16_supported", "amx_bf16": "_is_amx_tile_supported"}
    return [name for name, check in checks.items() if getattr(torch.cpu, check, lambda: False)()]


def dtype_choice(dtype: DTypeLike, device: str | torch.device | None = None) -> tuple[torch.dtype, str]:
    """The weights dtype for ``dtype`` on ``device``, and why, in words (what the CLI prints).

    An explicit dtype always wins. ``None`` means the device's default: bfloat16 on CUDA, float32 on a CPU
    (exact; :func:`cpu_bf16_default` can change that). ``"auto"`` asks for the fastest dtype that is native:
    bfloat16 on CUDA and on a CPU that does bf16 natively (:func:`cpu_bf16_features`), float32 elsewhere.
    ``device=None`` means CUDA when available.

    >>> dtype_choice("bfloat16", "cpu")
    (torch.bfloat16, 'asked for')
    """
    if isinstance(dtype, torch.dtype):
        return dtype, "asked for"
    if isinstance(dtype, str) and dtype.lower() in DTYPE_NAMES:
        return DTYPE_NAMES[dtype.lower()], "asked for"
    if dtype is not None and dtype != "auto":
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPE_NAMES)} or 'auto'")
    target = torch.device(device) if device is not None else None
    on_cuda = target.type == "cuda" if target is not None else torch.cuda.is_available()
    if on_cuda:
        return torch.bfloat16, "default on CUDA"
    if target is not None and target.type != "cpu":
        return torch.float32, f"default on {target.type}"
    features = cpu_bf16_features()
    if not features:
        return torch.float32, "default on a CPU without native bf16"
    native = ", ".join(features)
    if dtype == "auto":
        return torch.bfloat16, f"auto on a CPU with native bf16 ({native}); --dtype float32 for exact float32"
    if cpu_bf16_default():
        return torch.bfloat16, f"default with {CPU_BF16_ENV}=1 on a CPU with native bf16 ({native})"
    return torch.float32, f"default on a CPU (exact); this one has native bf16 ({native}): --dtype auto for speed"


def resolve_dtype(dtype: DTypeLike, device: str | torch.device | None = None) -> torch.dtype:
    """The weights dtype :func:`dtype_choice` picks; accepts ``"bf16"``, ``"float16"``, ``"auto"``, ``None`` ..."""
    return dtype_choice(dtype, device)[0]


def load_causal_lm(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    dtype: DTypeLike = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    revision: str | None = None,
    token: bool | str | None = None,
    hf_cache_dir: str | None = None,
    **model_kwargs: Any,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer with transformers (Hub id, directory, or a GGUF file in a directory).

    A GGUF checkpoint is dequantized to plain float tensors by transformers (needs the ``gguf`` package);
    its quantizer marks are cleared so the model can be saved like any other.

    Args:
        name_or_path: A Hub id or a local folder (the folder holding ``gguf_file``).
        gguf_file: The ``.gguf`` file's name inside ``name_or_path``.
        dtype: Weights dtype (``None``: the device's default; ``"auto"``: native bf16 where the CPU has it; see
            :func:`dtype_choice`).
        attn_implementation: ``"sdpa"``, ``"flash_attention_2"``, ``"eager"`` ... (``None``: transformers' choice).
        trust_remote_code: Let transformers run model code from the Hub.
        local_files_only, revision, token: Passed to ``from_pretrained``.
        hf_cache_dir: The Hugging Face cache folder (``None``: the Hugging Face default).
        **model_kwargs: Other ``from_pretrained`` keywords.
    """
    if gguf_file is not None and importlib.util.find_spec("gguf") is None:
        raise ImportError("loading a .gguf file needs the gguf package: pip install 'laser-integrations[gguf]'")
    torch_dtype = model_kwargs.pop("torch_dtype", None)
    common: dict[str, Any] = dict(
        trust_remote_code=trust_remote_code,
        local_files_only=local_files_only,
        revision=revision,
        token=token,
        cache_dir=hf_cache_dir,
        gguf_file=gguf_file,
    )
    common = {key: value for key, value in common.items() if value is not None}
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **common)
    model = AutoModelForCausalLM.from_pretrained(
        name_or_path, dtype=resolve_dtype(dtype or torch_dtype), **common, **model_kwargs
    )
    if gguf_file is not None:
        _forget_gguf_quantization(model)
    return model.eval(), tokenizer


def _forget_gguf_quantization(model: PreTrainedModel) -> None:
    """GGUF weights arrive dequantized, yet transformers still marks the model as quantized and refuses to save it."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def dequantized_checkpoint(
    gguf_path: str | os.PathLike[str], cache_folder: str | os.PathLike[str] | None = None
) -> str:
    """A float checkpoint folder for a ``.gguf`` file, made once and kept under :func:`cache_root`.

    Dequantizing SmolLM2's GGUF takes ~40 s on a CPU; later loads of the folder take about a second.
    The folder appears atomically, so concurrent loaders see a complete folder or none.
    """
    gguf_path = Path(gguf_path)
    stat = gguf_path.stat()
    target = cache_root(cache_folder) / "gguf" / f"{gguf_path.stem}-{stat.st_size}-{int(stat.st_mtime)}"
    if (target / "config.json").is_file():
        return str(target)
    model, tokenizer = load_causal_lm(str(gguf_path.parent), gguf_file=gguf_path.name, dtype=torch.float32)
    save_atomically(model, tokenizer, target)
    return str(target)


def save_atomically(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, target: Path) -> None:
    """Save a model folder so concurrent loaders see all of it or none: written beside ``target``, then renamed.

    If another process got there first (the rename fails but ``target`` holds a model), its folder is kept.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
