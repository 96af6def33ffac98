"""``LaSERLoss``: LaSER's self-distillation objective (spec section 4) as a sentence-transformers loss.

One shared backbone encodes each query twice: the latent view (the student, K latent thinking steps)
and the explicit view (the teacher: query + rationale + EOS, spec section 2). Passages take the latent
view. With ``S = q_latent @ P^T`` and ``T = q_explicit @ P^T`` over all B*G passages of the batch
(the target of query i is passage i*G)::

    L_latent   = CE(S / tau, target)
    L_explicit = CE(T / tau, target)                                     the teacher keeps learning
    L_out      = KL(softmax(T.detach() / tau)    || softmax(S / tau))     mean over the B queries
    L_traj     = KL(softmax(Tk.detach() / tau_t) || softmax(Sk / tau_t))  mean over the B*K rows
    L          = 1 * L_latent + 1 * L_explicit + 10 * L_out + 0.1 * L_traj

where ``Sk`` scores the K normalized latent states ``h_1 .. h_K`` and ``Tk`` the K normalized teacher
trajectory features against P. The teacher is detached only inside the two KL terms.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from torch import Tensor, nn

from laser_integrations.training.data import concat_left_padded, split_columns

TeacherMode = Literal["online", "frozen"]


@dataclass
class LaSERLossTerms:
    """The unweighted terms of one batch; a term that is switched off is ``None``."""

    latent: Tensor | None
    explicit: Tensor | None = None
    output_kl: Tensor | None = None
    trajectory_kl: Tensor | None = None


def info_nce(scores: Tensor, targets: Tensor, temperature: float) -> Tensor:
    """``CE(scores / temperature, targets)``, averaged over the rows."""
    return F.cross_entropy(scores / temperature, targets)


def distillation_kl(student_scores: Tensor, teacher_scores: Tensor, temperature: float) -> Tensor:
    """``KL(softmax(teacher / t) || softmax(student / t))`` summed over candidates, averaged over rows.

    The teacher side is detached here, and only here: the teacher learns from its own InfoNCE term.
    """
    student = F.log_softmax(student_scores / temperature, dim=-1)
    teacher = F.log_softmax(teacher_scores.detach() / temperature, dim=-1)
    return F.kl_div(student, teacher, reduction="batchmean", log_target=True)


class LaSERLoss(nn.Module):
    """LaSER self-distillation: latent-view InfoNCE, explicit-view InfoNCE, output KL and trajectory KL.

    Args:
        model: A LaSER ``SentenceTransformer`` (from :func:`laser_integrations.load_model`), optionally with
            LoRA adapters (``model.add_adapter(LoraConfig(...))``). K is the model's ``num_thinking_steps``:
            load it with ``num_thinking_steps=1`` for the "no latent view" ablation.
        temperature: tau of the InfoNCE and output-KL terms (0.02).
        trajectory_temperature: tau_t of the trajectory KL (0.05 in the released code, 0.02 in the paper).
        latent_weight: Weight of ``L_latent`` (1).
        explicit_weight: Weight of ``L_explicit`` (1). 0 stops the teacher's own learning signal.
        output_weight: Weight of ``L_out`` (10). 0 is the "no output distillation" ablation.
        trajectory_weight: Weight of ``L_traj`` (0.1). 0 is the "no process alignment" ablation.
        explicit_view: ``False`` is the "no explicit view" ablation: pure latent contrastive learning
            (``L_latent`` only; the dataset then needs no rationales).
        teacher: ``"online"`` (default): the explicit view runs on the model being trained, with gradients,
            and learns through ``L_explicit`` (co-learning). ``"frozen"``: the "no co-learning" ablation,
            where a fixed teacher supplies static targets: its query (explicit view) and passage embeddings
            are computed under ``torch.no_grad()``, ``T`` and ``Tk`` score against the teacher's own
            passages, and ``L_explicit`` is not computed.
        teacher_model: The fixed teacher for ``teacher="frozen"``, e.g. a LaSER model trained beforehand with
            ``LaSERLoss(model, latent_weight=0, output_weight=0, trajectory_weight=0)`` (explicit view only).
            It must share the model's tokenizer, and is frozen in place (``requires_grad_(False)``, eval mode).
            Without one, the frozen teacher is the training model with its adapters disabled (the base
            backbone), which needs a model with adapters.

    Inputs (use :func:`~laser_integrations.training.prepare_laser_dataset` to lay a dataset out like this):

        +----------------------------------------------------------------------+--------+
        | Texts                                                                | Labels |
        +======================================================================+========+
        | (query, positive, negative_1, ..., negative_n, (query, rationale))   | none   |
        +----------------------------------------------------------------------+--------+

    Training logs each weighted term (``loss_latent``, ``loss_explicit``, ``loss_output_kl``,
    ``loss_trajectory_kl``); they add up to ``loss``.

    Example:
        >>> from laser_integrations import load_model                                   # doctest: +SKIP
        >>> from laser_integrations.training import LaSERLoss, prepare_laser_dataset    # doctest: +SKIP
        >>> from sentence_transformers import SentenceTransformerTrainer                # doctest: +SKIP
        >>> model = load_model("Qwen/Qwen3-0.6B", num_thinking_steps=3)                 # doctest: +SKIP
        >>> trainer = SentenceTransformerTrainer(                                       # doctest: +SKIP
        ...     model=model, train_dataset=prepare_laser_dataset(rows), loss=LaSERLoss(model))
        >>> trainer.train()                                                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: SentenceTransformer,
        *,
        temperature: float = 0.02,
        trajectory_temperature: float = 0.05,
        latent_weight: float = 1.0,
        explicit_weight: float = 1.0,
        output_weight: float = 10.0,
        trajectory_weight: float = 0.1,
        explicit_view: bool = True,
        teacher: TeacherMode = "online",
        teacher_model: SentenceTransformer | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        for name, value in (("temperature", temperature), ("trajectory_temperature", trajectory_temperature)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        for name, value in (
            ("latent_weight", latent_weight),
            ("explicit_weight", explicit_weight),
            ("output_weight", output_weight),
            ("trajectory_weight", trajectory_weight),
        ):
            if not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if teacher not in ("online", "frozen"):
            raise ValueError(f"teacher must be 'online' or 'frozen', got {teacher!r}")
        if teacher_model is not None and teacher != "frozen":
            raise ValueError("teacher_model is the fixed teacher of teacher='frozen'; pass teacher='frozen' too")
        self.temperature = temperature
        self.trajectory_temperature = trajectory_temperature
        self.latent_weight = latent_weight
        self.explicit_weight = explicit_weight if explicit_view and teacher == "online" else 0.0
        self.output_weight = output_weight if explicit_view else 0.0
        self.trajectory_weight = trajectory_weight if explicit_view else 0.0
        self.explicit_view = explicit_view
        self.teacher = teacher
        self.teacher_model = teacher_model
        if teacher_model is not None:
            if _laser_module(teacher_model).tokenizer.get_vocab() != _laser_module(model).tokenizer.get_vocab():
                raise ValueError("teacher_model must share the model's tokenizer: it reads the same token ids")
            teacher_model.requires_grad_(False)
            teacher_model.eval()
        elif teacher == "frozen" and not getattr(_backbone(model), "_hf_peft_config_loaded", False):
            raise ValueError(
                "teacher='frozen' needs teacher_model=..., or a model with adapters (the frozen teacher is then "
                "the backbone with its adapters disabled)"
            )
        if not any((self.latent_weight, self.explicit_weight, self.output_weight, self.trajectory_weight)):
            raise ValueError("every LaSERLoss term has weight 0 (or is switched off): nothing to train")

    @property
    def needs_student(self) -> bool:
        """Whether the latent view of the queries is needed at all (not for explicit-only teacher training)."""
        return bool(self.latent_weight or self.output_weight or self.trajectory_weight)

    @property
    def needs_teacher(self) -> bool:
        return bool(self.explicit_weight or self.output_weight or self.trajectory_weight)

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None = None) -> dict:
        """Encode the batch and return the weighted terms (the trainer sums and logs them)."""
        query, passage_columns, explicit = split_columns(list(sentence_features), needs_explicit=self.needs_teacher)
        module = _laser_module(self.model)
        group_size = len(passage_columns)
        passage_features = concat_left_padded(passage_columns, module.tokenizer.pad_token_id)

        student = self.model(query) if self.needs_student else None
        passages = _row_major(self.model(passage_features)["sentence_embedding"], group_size)
        explicit_out, teacher_passages = None, None
        if self.needs_teacher and self.teacher == "online":
            # Without its own InfoNCE term the teacher only enters detached (the KL terms): skip its backward.
            with nullcontext() if self.explicit_weight else torch.no_grad():
                explicit_out = self.model(explicit)
        elif self.needs_teacher:
            with self._frozen_teacher() as teacher:
                explicit_out = teacher(explicit)
                teacher_passages = _row_major(teacher(passage_features)["sentence_embedding"], group_size)

        terms = self.compute_terms(
            query_latent=student["sentence_embedding"] if student is not None else None,
            passages=passages,
            thinking_states=student.get("thinking_states") if student is not None else None,
            query_explicit=explicit_out["sentence_embedding"] if explicit_out is not None else None,
            trajectory_states=explicit_out.get("trajectory_states") if explicit_out is not None else None,
            teacher_passages=teacher_passages,
        )
        return self.weighted(terms)

    def compute_terms(
        self,
        *,
        query_latent: Tensor | None,
        passages: Tensor,
        thinking_states: Tensor | None = None,
        query_explicit: Tensor | None = None,
        trajectory_states: Tensor | None = None,
        teacher_passages: Tensor | None = None,
    ) -> LaSERLossTerms:
        """The unweighted terms from embeddings (spec section 4); terms with weight 0 are skipped.

        Args:
            query_latent: (B, H) normalized latent-view query embeddings.
            passages: (B*G, H) normalized passage embeddings, grouped per query (query i's positive is row i*G).
            thinking_states: (B, K, H) latent states ``h_1 .. h_K`` (normalized here).
            query_explicit: (B, H) normalized explicit-view query embeddings (the teacher).
            trajectory_states: (B, K, H) teacher trajectory features (normalized here).
            teacher_passages: (B*G, H) passages as the teacher embeds them (frozen teacher); default ``passages``.
        """
        anchor = query_latent if query_latent is not None else query_explicit
        if anchor is None:
            raise ValueError("compute_terms needs query_latent or query_explicit")
        # The terms are computed in float32 even under bf16 autocast: scores / 0.02 magnify rounding 50x.
        with _autocast_off(passages.device):
            passages = passages.float()
            teacher_passages = passages if teacher_passages is None else teacher_passages.float()
            batch_size = anchor.shape[0]
            group_size = _group_size(passages.shape[0], batch_size)
            targets = torch.arange(batch_size, device=passages.device) * group_size
            terms = LaSERLossTerms(latent=None)
            student = query_latent.float() @ passages.T if query_latent is not None else None
            teacher = query_explicit.float() @ teacher_passages.T if query_explicit is not None else None
            if self.latent_weight:
                terms.latent = info_nce(_required(student, "query_latent"), targets, self.temperature)
            if self.explicit_weight:
                terms.explicit = info_nce(_required(teacher, "query_explicit"), targets, self.temperature)
            if self.output_weight:
                student, teacher = _required(student, "query_latent"), _required(teacher, "query_explicit")
                terms.output_kl = distillation_kl(student, teacher, self.temperature)
            if self.trajectory_weight:
                student_steps = _flat_normalized(_required(thinking_states, "thinking_states"))
                teacher_steps = _flat_normalized(_required(trajectory_states, "trajectory_states"))
                if student_steps.shape != teacher_steps.shape:
                    raise ValueError(
                        f"the model thinks in {thinking_states.shape[1]} latent steps but the batch carries "
                        f"{trajectory_states.shape[1]} trajectory features; both come from the module's "
                        "num_thinking_steps, so set K on the model (load_model(..., num_thinking_steps=K))"
                    )
                terms.trajectory_kl = distillation_kl(
                    student_steps @ passages.T, teacher_steps @ teacher_passages.T, self.trajectory_temperature
                )
        return terms

    def weighted(self, terms: LaSERLossTerms) -> dict[str, Tensor]:
        """``{"loss_latent": w * L_latent, ...}`` for the terms that are on; the values sum to the loss."""
        weights = {
            "latent": self.latent_weight,
            "explicit": self.explicit_weight,
            "output_kl": self.output_weight,
            "trajectory_kl": self.trajectory_weight,
        }
        return {
            f"loss_{name}": weight * getattr(terms, name)
            for name, weight in weights.items()
            if weight and getattr(terms, name) is not None
        }

    @contextmanager
    def _frozen_teacher(self) -> Iterator[nn.Module]:
        """The fixed teacher under ``no_grad``: ``teacher_model``, or the training model without its adapters."""
        with torch.no_grad():
            if self.teacher_model is not None:
                yield self.teacher_model
                return
            backbone = _backbone(self.model)
            backbone.disable_adapters()
            try:
                yield self.model
            finally:
                backbone.enable_adapters()

    def get_config_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "trajectory_temperature": self.trajectory_temperature,
            "latent_weight": self.latent_weight,
            "explicit_weight": self.explicit_weight,
            "output_weight": self.output_weight,
            "trajectory_weight": self.trajectory_weight,
            "explicit_view": self.explicit_view,
            "teacher": self.teacher,
        }

    @property
    def citation(self) -> str:
        return """
@misc{laser,
    title={LaSER: Internalizing Explicit Reasoning into Latent Space for Dense Retrieval},
    howpublished={\\url{https://github.com/ignorejjj/LaSER}},
}
"""


def _laser_module(model: nn.Module) -> Any:
    """The LatentThinkingEmbedding inside a (possibly DDP-wrapped) SentenceTransformer."""
    while not isinstance(model, SentenceTransformer) and hasattr(model, "module"):
        model = model.module
    return model[0]


def _backbone(model: nn.Module) -> nn.Module:
    return _laser_module(model).model


def _row_major(column_major: Tensor, group_size: int) -> Tensor:
    """(G*B, H) passages ordered column by column -> (B*G, H) grouped per query, positive first."""
    return column_major.reshape(group_size, -1, column_major.shape[-1]).transpose(0, 1).reshape(column_major.shape)


def _group_size(num_passages: int, batch_size: int) -> int:
    if num_passages % batch_size:
        raise ValueError(f"{num_passages} passages for {batch_size} queries: expected G passages per query")
    return num_passages // batch_size


def _flat_normalized(states: Tensor) -> Tensor:
    """(B, K, H) -> (B*K, H) L2-normalized float32 rows (the K per-step representations)."""
    return F.normalize(states.float().reshape(-1, states.shape[-1]), p=2, dim=-1)


def _required(value: Tensor | None, name: str) -> Tensor:
    if value is None:
        raise ValueError(f"this LaSERLoss configuration needs {name}, which was not provided")
    return value


def _autocast_off(device: torch.device) -> Any:
    if device.type in ("cuda", "cpu", "xpu", "mps"):
        return torch.autocast(device_type=device.type, enabled=False)
    return nullcontext()
