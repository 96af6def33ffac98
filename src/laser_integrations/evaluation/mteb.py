"""``laser eval-mteb``: run MTEB retrieval tasks (BRIGHT, FollowIR, BrowseComp-Plus) with LaSER's query instructions.

For users with network access (the task data comes from the Hugging Face Hub) and a GPU. ``mteb``
is imported only when a run starts: ``pip install mteb`` (2.x). The LaSER model goes in as a plain
``SentenceTransformer`` through mteb's own ``SentenceTransformerEncoderWrapper``; queries get the
``Instruct: {task instruction}\\nQuery: `` prompt LaSER uses for that task, documents none, and K
is the model's ``num_thinking_steps``.

Reproducing the paper's BRIGHT numbers (nDCG@10, 12-task average; LaSER-Qwen3-0.6B 23.1, -4B 28.0,
-8B 29.3) follows the authors' released runner (``src/eval/run_mteb.py``, ``run_eval.sh``): K=3,
fp16, chat template on, max length 8192, batch size 8::

    laser eval-mteb laser-qwen3 --benchmark BRIGHT --dtype float16 --max-seq-length 8192 --batch-size 8

Differences to know about: the authors ran mteb 1.x's single ``BrightRetrieval`` task (12 domain
subsets); mteb 2 splits it into 12 per-domain tasks over the same data (``mteb/BRIGHT``), which is
what runs here, with the per-domain instructions of the released runner (:data:`BRIGHT_INSTRUCTIONS`).
The released runner also pins a uniform task prompt (:data:`RELEASED_BRIGHT_TASK_PROMPT`) and reads
instructions from a ``task_prompts_multilingual.json`` that is not in the public repository, so the
exact per-task instruction of the published run cannot be confirmed; ``--instruction`` overrides all
of them (pass the uniform one to compare). FollowIR and BrowseComp-Plus use the task's own mteb query
prompt, else the released fallback :data:`RELEASED_DEFAULT_INSTRUCTION`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laser_integrations.formatting import query_prompt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from laser_integrations.evaluation.beir import BeirDataset

RELEASED_DEFAULT_INSTRUCTION = "Retrieval relevant passage for the given query."
"""What the released LaSER runner falls back to for a retrieval task without an instruction."""

RELEASED_BRIGHT_TASK_PROMPT = "Given a post, retrieve relevant passages that help answer the post."
"""The one query prompt the released runner sets on the BRIGHT task's metadata."""

BRIGHT_INSTRUCTIONS: dict[str, str] = {
    "BrightBiologyRetrieval": "Given a post, retrieve relevant passages that help answer the post.",
    "BrightEarthScienceRetrieval": "Given a post, retrieve relevant passages that help answer the post.",
    "BrightEconomicsRetrieval": "Given a economics post, retrieve relevant passages that help answer the post.",
    "BrightPsychologyRetrieval": "Given a psychology post, retrieve relevant passages that help answer the post.",
    "BrightRoboticsRetrieval": "Given a robotics post, retrieve relevant passages that help answer the post.",
    "BrightStackoverflowRetrieval": (
        "Given a stackoverflow post, retrieve relevant passages that help answer the post."
    ),
    "BrightSustainableLivingRetrieval": (
        "Given a sustainable_living post, retrieve relevant passages that help answer the post."
    ),
    "BrightPonyRetrieval": (
        "Given a question about pony program language, retrieve relevant passages that help answer the question."
    ),
    "BrightLeetcodeRetrieval": "Given a coding problem, retrieve relevant examples that help answer the problem.",
    "BrightAopsRetrieval": "Given a Math problem, retrieve relevant examples that help answer the problem.",
    "BrightTheoremQATheoremsRetrieval": (
        "Given a Math problem, retrieve relevant theorems that help answer the problem."
    ),
    "BrightTheoremQAQuestionsRetrieval": (
        "Given a Math problem, retrieve relevant examples that help answer the problem."
    ),
}
"""Per-domain BRIGHT instructions from the released LaSER runner, keyed by mteb 2 task name (verbatim)."""

BENCHMARKS: dict[str, tuple[str, ...]] = {
    "BRIGHT": tuple(BRIGHT_INSTRUCTIONS),
    "FollowIR": ("Robust04InstructionRetrieval", "News21InstructionRetrieval", "Core17InstructionRetrieval"),
    "BrowseCompPlus": ("BrowseCompPlusRetrieval",),
}
"""The paper's three benchmarks as mteb 2 task names (BRIGHT: the 12 short-document domains it averages)."""


def require_mteb() -> Any:
    """Import ``mteb``, or raise an ``ImportError`` that says how to install it."""
    if importlib.util.find_spec("mteb") is None:
        raise ImportError("laser eval-mteb needs MTEB: pip install 'mteb>=2.0' (it downloads the task data)")
    import mteb

    return mteb


def task_names(benchmarks: Sequence[str] = (), tasks: Sequence[str] = ()) -> list[str]:
    """Expand benchmark names (``BRIGHT``, ``FollowIR``, ``BrowseCompPlus``) and add explicit task names.

    Example:
        >>> task_names(["BrowseCompPlus"], ["BrightAopsRetrieval"])
        ['BrowseCompPlusRetrieval', 'BrightAopsRetrieval']
    """
    lookup = {name.lower(): name for name in BENCHMARKS}
    names: list[str] = []
    for benchmark in benchmarks:
        key = lookup.get(benchmark.lower().replace("-", "").replace("_", ""))
        if key is None:
            raise ValueError(f"unknown benchmark {benchmark!r}; use one of {', '.join(BENCHMARKS)} or --tasks")
        names.extend(BENCHMARKS[key])
    names.extend(tasks)
    if not names:
        raise ValueError("no tasks: pass --benchmark (BRIGHT, FollowIR, BrowseCompPlus) or --tasks")
    return list(dict.fromkeys(names))


def laser_instruction(task_name: str, task_prompt: Any = None) -> str:
    """LaSER's query instruction for a task: the released BRIGHT table, else the task's own query prompt,
    else the released fallback."""
    if task_name in BRIGHT_INSTRUCTIONS:
        return BRIGHT_INSTRUCTIONS[task_name]
    if isinstance(task_prompt, dict):
        task_prompt = task_prompt.get("query")
    if isinstance(task_prompt, str) and task_prompt.strip():
        return task_prompt.strip()
    return RELEASED_DEFAULT_INSTRUCTION


def model_prompts(tasks: Sequence[Any], instruction: str | None = None) -> dict[str, str]:
    """mteb ``model_prompts``: ``{"<Task>-query": "Instruct: ...\\nQuery: ", "document": ""}`` for ``tasks``.

    mteb only accepts keys naming registered tasks, so a task it does not know (a local one from
    :func:`beir_task`) gets its prompt as the generic ``"query"`` entry instead.

    Args:
        tasks: mteb task objects.
        instruction: One instruction for every task (default: :func:`laser_instruction` per task).
    """
    mteb = require_mteb()
    prompts = {"document": ""}
    for task in tasks:
        metadata = task.metadata
        text = instruction if instruction is not None else laser_instruction(metadata.name, metadata.prompt)
        try:
            mteb.get_task(metadata.name)
        except (KeyError, ValueError):
            prompts["query"] = query_prompt(text)
        else:
            prompts[f"{metadata.name}-query"] = query_prompt(text)
    return prompts


def run_mteb(
    model: SentenceTransformer,
    tasks: Sequence[Any],
    *,
    output_folder: str | Path = "laser-output/mteb",
    batch_size: int = 8,
    instruction: str | None = None,
    overwrite: bool = False,
    show_progress_bar: bool = True,
) -> Any:
    """Evaluate a LaSER model on mteb tasks with LaSER's per-task query instructions.

    Args:
        model: A LaSER ``SentenceTransformer`` (its ``num_thinking_steps`` is the K used).
        tasks: Task names (see :data:`BENCHMARKS`) or mteb task objects (a local one from :func:`beir_task`).
        output_folder: mteb's result cache (JSON per task) and the retrieved rankings go here.
        batch_size: Texts per forward pass.
        instruction: Override every task's instruction.
        overwrite: Re-run tasks already in ``output_folder``.
        show_progress_bar: mteb's progress bars.

    Returns:
        mteb's ``ModelResult`` (``.task_results[i].get_score()`` is the main score, nDCG@10 for BRIGHT).
    """
    mteb = require_mteb()
    from mteb.models.sentence_transformer_wrapper import SentenceTransformerEncoderWrapper

    objects = [mteb.get_task(task) if isinstance(task, str) else task for task in tasks]
    folder = Path(output_folder)
    prompts = dict(model.prompts)  # the wrapper replaces the model's prompts with model_prompts; restore them after
    try:
        encoder = SentenceTransformerEncoderWrapper(model, model_prompts=model_prompts(objects, instruction))
        # mteb files results under the model's name; a LaSER model card has none, so use its provenance name.
        encoder.mteb_model_meta = encoder.mteb_model_meta.model_copy(update={"name": _mteb_model_name(model)})
        return mteb.evaluate(
            encoder,
            objects,
            encode_kwargs={"batch_size": batch_size, "show_progress_bar": show_progress_bar},
            cache=mteb.ResultCache(folder),
            overwrite_strategy="always" if overwrite else "only-missing",
            prediction_folder=folder / "predictions",
            show_progress_bar=show_progress_bar,
        )
    finally:
        model.prompts = prompts


def beir_task(dataset: BeirDataset, name: str = "LaSERLocalRetrieval", instruction: str | None = None) -> Any:
    """An mteb retrieval task over a local BEIR dataset (offline runs and tests), scored by mteb itself.

    Example:
        >>> from laser_integrations.evaluation import load_beir
        >>> task = beir_task(load_beir("pyref"))                                     # doctest: +SKIP
        >>> run_mteb(model, [task], output_folder="/tmp/mteb")                        # doctest: +SKIP
    """
    require_mteb()
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    metadata = TaskMetadata(
        name=name,
        description=f"The local BEIR dataset {dataset.name!r} ({len(dataset.corpus)} passages).",
        dataset={"path": str(dataset.folder or dataset.name), "revision": "local"},
        type="Retrieval",
        category="t2t",
        modalities=["text"],
        eval_splits=[dataset.split],
        eval_langs=["eng-Latn"],
        main_score="ndcg_at_10",
        prompt={"query": instruction or RELEASED_DEFAULT_INSTRUCTION},
        license="not specified",
        bibtex_citation="",
    )
    split = {
        "corpus": Dataset.from_list([{"id": p.id, "title": p.title, "text": p.text} for p in dataset.corpus.values()]),
        "queries": Dataset.from_list([{"id": key, "text": text} for key, text in dataset.queries.items()]),
        "relevant_docs": {key: dict(docs) for key, docs in dataset.qrels.items()},
        "top_ranked": None,
    }

    class LocalBeirRetrieval(AbsTaskRetrieval):
        def load_data(self, **kwargs: Any) -> None:
            self.dataset = {"default": {dataset.split: split}}
            self.data_loaded = True

    LocalBeirRetrieval.metadata = metadata
    return LocalBeirRetrieval()


def _mteb_model_name(model: SentenceTransformer) -> str:
    """``organization/name`` as mteb wants it: the Hub id, or ``local/<folder name>``."""
    from laser_integrations.provenance import model_name

    name = model_name(model)
    if name.count("/") == 1 and not Path(name).exists():
        return name
    return f"local/{Path(name).name or 'model'}"
