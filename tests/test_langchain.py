"""``LaSEREmbeddings``: the langchain-tests standard suites on SmolLM2, and the adapter's promises on a tiny model."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_core.embeddings import Embeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import ValidationError

from laser_integrations import load_model
from laser_integrations.formatting import query_prompt
from laser_integrations.langchain import LaSEREmbeddings
from laser_integrations.llama_index import LaSEREmbedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smollm2(smollm2_dir: Path):
    """The real SmolLM2, loaded once for the module and shared by every standard test."""
    return load_model(str(smollm2_dir), device="cpu")


class TestLaSEREmbeddingsStandardUnit(EmbeddingsUnitTests):
    """``test_init`` builds the adapter from a model folder, as a user would."""

    @pytest.fixture(autouse=True)
    def _smollm2_folder(self, smollm2_dir: Path) -> None:
        self.smollm2_folder = str(smollm2_dir)

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LaSEREmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": self.smollm2_folder, "device": "cpu"}


class TestLaSEREmbeddingsStandardIntegration(EmbeddingsIntegrationTests):
    """Real vectors from SmolLM2, sync and async, through one already-loaded model."""

    @pytest.fixture(autouse=True)
    def _loaded_smollm2(self, smollm2) -> None:
        self.smollm2 = smollm2

    @property
    def embeddings_class(self) -> type[Embeddings]:
        return LaSEREmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model": self.smollm2, "num_thinking_steps": 3}


# -- construction --------------------------------------------------------------------------------------------


def test_takes_a_spec_positionally_or_by_the_model_alias(tiny_dirs):
    folder = str(tiny_dirs["qwen3"])
    by_position = LaSEREmbeddings(folder, device="cpu")
    by_alias = LaSEREmbeddings(model=folder, device="cpu")
    by_name = LaSEREmbeddings(model_name=folder, device="cpu")

    assert by_position.model_name == by_alias.model_name == by_name.model_name == folder
    assert by_position.embed_query("sky") == by_alias.embed_query("sky")


def test_takes_a_ready_sentence_transformer_like_the_llama_index_adapter(tiny_model):
    positional = LaSEREmbeddings(tiny_model)
    keyword = LaSEREmbeddings(model=tiny_model, num_thinking_steps=2)
    llama_index = LaSEREmbedding(model=tiny_model)

    assert positional.client is keyword.client is llama_index.client is tiny_model
    assert positional.model_name == tiny_model[0].base_model
    assert keyword.provenance.num_thinking_steps == 2
    with pytest.warns(DeprecationWarning, match=r"client=\.\.\.\) is deprecated"):
        assert LaSEREmbeddings(client=tiny_model).client is tiny_model


def test_the_normalize_option_is_deprecated_and_false_is_refused(tiny_model):
    with pytest.warns(DeprecationWarning, match="does nothing"):
        embeddings = LaSEREmbeddings(tiny_model, normalize=True)
    assert abs(sum(x * x for x in embeddings.embed_query("sky")) - 1) < 1e-5  # unit length regardless
    with pytest.raises(ValueError, match="always L2-normalized"):
        LaSEREmbeddings(tiny_model, normalize=False)
    with pytest.warns(DeprecationWarning, match="does nothing"):
        LaSEREmbedding(tiny_model, normalize=True)
    with pytest.raises(ValueError, match="always L2-normalized"):
        LaSEREmbedding(tiny_model, normalize=False)


def test_rejects_conflicting_or_unknown_arguments(tiny_model, tiny_dirs):
    with pytest.raises(TypeError, match="twice"):
        LaSEREmbeddings(str(tiny_dirs["qwen3"]), model="other")
    with pytest.raises(TypeError, match="twice"):
        LaSEREmbeddings(tiny_model, model=tiny_model)
    with pytest.raises(ValueError, match="only apply when loading"):
        LaSEREmbeddings(tiny_model, model_kwargs={"dtype": "bf16"})
    with pytest.raises(ValidationError):
        LaSEREmbeddings(tiny_model, not_a_field=1)
    with pytest.raises(ValidationError):
        LaSEREmbeddings(tiny_model, num_thinking_steps=0)


# -- delegation: the right side of the model, plain floats -------------------------------------------------


def test_queries_use_the_query_side_with_k_and_instruction(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model, num_thinking_steps=4, instruction="Find code")
    expected = tiny_model.encode_query(["sort a list"], prompt=query_prompt("Find code"), num_thinking_steps=4)

    vector = embeddings.embed_query("sort a list")

    assert vector == expected[0].tolist()
    assert type(vector) is list and type(vector[0]) is float


def test_default_instruction_is_the_models_query_prompt(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model)

    expected = tiny_model.encode_query(["sort a list"])

    assert embeddings.embed_query("sort a list") == expected[0].tolist()
    assert embeddings.provenance.query_prompt == tiny_model.prompts["query"]


def test_documents_use_the_document_side(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model, num_thinking_steps=2)
    texts = ["Rayleigh scattering.", "Lists are mutable.\n\nDefaults are shared."]

    expected = tiny_model.encode_document(texts, num_thinking_steps=2)

    assert embeddings.embed_documents(texts) == expected.tolist()


def test_newlines_are_kept(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model)

    assert embeddings.embed_documents(["a\nb"]) == tiny_model.encode_document(["a\nb"]).tolist()
    assert embeddings.embed_documents(["a\nb"]) != embeddings.embed_documents(["a b"])


async def test_async_methods_match_the_sync_ones(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model)
    texts = ["one", "two", "three"]

    query, documents = await asyncio.gather(embeddings.aembed_query("one"), embeddings.aembed_documents(texts))

    assert query == pytest.approx(embeddings.embed_query("one"), abs=1e-6)
    assert documents == [pytest.approx(v, abs=1e-6) for v in embeddings.embed_documents(texts)]


# -- bad input -----------------------------------------------------------------------------------------------


def test_bad_input_is_reported_clearly(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model)

    with pytest.raises(TypeError, match="query must be a string, got NoneType"):
        embeddings.embed_query(None)
    with pytest.raises(TypeError, match="text 1 is int"):
        embeddings.embed_documents(["fine", 3])
    with pytest.raises(TypeError, match="wrap it in a list"):
        embeddings.embed_documents("one string")
    assert embeddings.embed_documents([]) == []


async def test_bad_input_fails_async_calls_the_same_way(tiny_model):
    embeddings = LaSEREmbeddings(tiny_model)

    with pytest.raises(TypeError, match="query must be a string"):
        await embeddings.aembed_query(None)
    with pytest.raises(TypeError, match="text 0 is NoneType"):
        await embeddings.aembed_documents([None])
    assert await embeddings.aembed_documents([]) == []


def test_an_empty_string_is_a_text_like_any_other(tiny_model):
    """The chat template gives an empty text tokens, so it gets a vector, as sentence-transformers gives it."""
    embeddings = LaSEREmbeddings(tiny_model)

    assert embeddings.embed_documents([""]) == tiny_model.encode_document([""]).tolist()
    assert len(embeddings.embed_query("")) == tiny_model.get_embedding_dimension()


# -- packaging -------------------------------------------------------------------------------------------------


def test_missing_langchain_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "langchain_core.embeddings", None)
    monkeypatch.delitem(sys.modules, "laser_integrations.langchain")

    with pytest.raises(ImportError, match=r"pip install 'laser-integrations\[langchain\]'"):
        importlib.import_module("laser_integrations.langchain")


def test_the_package_does_not_import_the_adapters_eagerly():
    code = (
        "import sys, laser_integrations; "
        "print(any(m in sys.modules for m in ('laser_integrations.langchain', 'laser_integrations.llama_index', "
        "'langchain_core', 'llama_index')))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    assert output.strip() == "False"
