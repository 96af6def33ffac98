"""LaSERLoss: each term against a slow reference written from spec section 4, gradients, ablations, bad data."""

from __future__ import annotations

import logging
import math
import tempfile

import pytest
import torch
from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

from laser_integrations import load_model
from laser_integrations.training import LaSERLoss, add_lora, prepare_laser_dataset
from laser_integrations.training.recipe import TrainConfig, enable_checkpointing

WEIGHTS = {"latent": 1.0, "explicit": 1.0, "output_kl": 10.0, "trajectory_kl": 0.1}
ROWS = [
    {
        "query": "why is the sky blue",
        "rationale": "First idea.\n\nSecond idea.\n\nThird idea.\n\nA line\nand a paragraph.\n\nEnd.",
        "positive": "Rayleigh scattering of sunlight by molecules in the atmosphere.",
        "negative_1": "Photosynthesis converts light energy into chemical energy.",
        "negative_2": "Python is a programming language.",
    },
    {
        "query": "what is python",
        "rationale": "Python is a programming language.",
        "positive": "Python is a programming language. Its default arguments are evaluated once.",
        "negative_1": "Why is the sky blue?",
        "negative_2": "Glucose stores chemical energy.",
        "instruction": "Given a question, retrieve code documentation",
    },
    {
        "query": "what does photosynthesis produce",
        "rationale": "",  # falls back to the query alone
        "positive": "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "negative_1": "Lists grow when a default argument is mutated.",
        "negative_2": "Molecules scatter short wavelengths.",
        "instruction": None,
    },
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def collated_features(model, rows, **prepare):
    """The per-column features exactly as SentenceTransformerTrainer hands them to a loss."""
    dataset = prepare_laser_dataset(rows, **prepare)
    with tempfile.TemporaryDirectory() as scratch:
        args = SentenceTransformerTrainingArguments(output_dir=scratch, report_to="none", use_cpu=True)
        trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=LaSERLoss(model))
        batch = trainer.data_collator([dataset[index] for index in range(len(dataset))])
        features, _ = trainer.collect_features(batch)
    return dataset, features


@pytest.fixture(scope="module")
def model(tiny_dirs):
    return load_model(str(tiny_dirs["qwen3"]), device="cpu")


@pytest.fixture(scope="module")
def batch(model):
    return collated_features(model, ROWS)


# -- the slow reference: one text at a time, plain Python floats, formulas straight from the spec ----------


def embed_alone(model, item):
    """One text (latent view) or (query, rationale) pair (explicit view), in a batch of its own: no padding."""
    module = model[0]
    with torch.no_grad():
        out = module(module.preprocess([item]))
    states = out.get("thinking_states", out.get("trajectory_states"))
    return out["sentence_embedding"][0].tolist(), [normalized(state.tolist()) for state in states[0]]


def normalized(vector):
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b, strict=True))


def log_softmax(scores, temperature):
    scaled = [s / temperature for s in scores]
    top = max(scaled)
    log_sum = top + math.log(sum(math.exp(s - top) for s in scaled))
    return [s - log_sum for s in scaled]


def kl(teacher_scores, student_scores, temperature):
    log_p, log_q = log_softmax(teacher_scores, temperature), log_softmax(student_scores, temperature)
    return sum(math.exp(lp) * (lp - lq) for lp, lq in zip(log_p, log_q, strict=True))


def reference_terms(model, dataset, tau=0.02, tau_traj=0.05):
    rows = [dataset[index] for index in range(len(dataset))]
    groups = [[row["positive"]] + [row[key] for key in sorted(row) if key.startswith("negative_")] for row in rows]
    group_size = len(groups[0])
    passages = [embed_alone(model, text)[0] for group in groups for text in group]  # query i's positive: i * G
    student = [embed_alone(model, row["query"]) for row in rows]
    teacher = [embed_alone(model, tuple(row["explicit"])) for row in rows]
    terms = {"latent": 0.0, "explicit": 0.0, "output_kl": 0.0, "trajectory_kl": 0.0}
    steps = 0
    for i, ((q_latent, latent_states), (q_explicit, trajectory)) in enumerate(zip(student, teacher, strict=True)):
        s_scores = [dot(q_latent, p) for p in passages]
        t_scores = [dot(q_explicit, p) for p in passages]
        terms["latent"] -= log_softmax(s_scores, tau)[i * group_size]
        terms["explicit"] -= log_softmax(t_scores, tau)[i * group_size]
        terms["output_kl"] += kl(t_scores, s_scores, tau)
        for h_k, t_k in zip(latent_states, trajectory, strict=True):
            steps += 1
            terms["trajectory_kl"] += kl([dot(t_k, p) for p in passages], [dot(h_k, p) for p in passages], tau_traj)
    batch_size = len(rows)
    return {
        "latent": terms["latent"] / batch_size,
        "explicit": terms["explicit"] / batch_size,
        "output_kl": terms["output_kl"] / batch_size,
        "trajectory_kl": terms["trajectory_kl"] / steps,
    }


# -- exactness ------------------------------------------------------------------------------------------


def test_every_term_and_the_total_match_the_slow_reference(model, batch):
    dataset, features = batch
    with torch.no_grad():
        losses = LaSERLoss(model)(features)
    expected = reference_terms(model, dataset)
    assert set(losses) == {f"loss_{name}" for name in WEIGHTS}
    for name, weight in WEIGHTS.items():
        assert losses[f"loss_{name}"].item() / weight == pytest.approx(expected[name], abs=1e-5), name
    total = sum(WEIGHTS[name] * expected[name] for name in WEIGHTS)
    # Each term is within 1e-5 of its reference, so the weighted total is within 1e-5 times the weights' sum.
    assert sum(losses.values()).item() == pytest.approx(total, abs=1e-5 * sum(WEIGHTS.values()))
    assert expected["output_kl"] > 1e-4 and expected["trajectory_kl"] > 1e-4  # the KL terms are not trivially 0


def test_temperatures_and_weights_are_settable(model, batch):
    dataset, features = batch
    loss = LaSERLoss(
        model,
        temperature=0.05,
        trajectory_temperature=0.02,
        latent_weight=2.0,
        explicit_weight=0.5,
        output_weight=3.0,
        trajectory_weight=1.0,
    )
    with torch.no_grad():
        losses = loss(features)
    expected = reference_terms(model, dataset, tau=0.05, tau_traj=0.02)
    for name, weight in {"latent": 2.0, "explicit": 0.5, "output_kl": 3.0, "trajectory_kl": 1.0}.items():
        assert losses[f"loss_{name}"].item() == pytest.approx(weight * expected[name], abs=1e-5), name


# -- gradients --------------------------------------------------------------------------------------------


def leaf(tensor):
    return tensor.detach().clone().requires_grad_(True)


def random_views(batch_size=3, group_size=2, steps=3, hidden=8):
    generator = torch.Generator().manual_seed(0)

    def unit(*shape):
        return torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)

    return {
        "query_latent": leaf(unit(batch_size, hidden)),
        "query_explicit": leaf(unit(batch_size, hidden)),
        "passages": leaf(unit(batch_size * group_size, hidden)),
        "thinking_states": leaf(torch.randn(batch_size, steps, hidden, generator=generator)),
        "trajectory_states": leaf(torch.randn(batch_size, steps, hidden, generator=generator)),
    }


def grad_of(term, tensor):
    (grad,) = torch.autograd.grad(term, tensor, retain_graph=True, allow_unused=True)
    return grad


def test_teacher_is_detached_only_inside_the_two_kl_terms(model):
    views = random_views()
    terms = LaSERLoss(model).compute_terms(**views)
    nonzero = lambda grad: grad is not None and grad.abs().sum() > 0  # noqa: E731
    assert not nonzero(grad_of(terms.output_kl, views["query_explicit"]))
    assert nonzero(grad_of(terms.output_kl, views["query_latent"]))
    assert nonzero(grad_of(terms.output_kl, views["passages"]))
    assert nonzero(grad_of(terms.explicit, views["query_explicit"]))  # the teacher learns from its own InfoNCE
    assert not nonzero(grad_of(terms.trajectory_kl, views["trajectory_states"]))
    assert nonzero(grad_of(terms.trajectory_kl, views["thinking_states"]))
    assert not nonzero(grad_of(terms.latent, views["query_explicit"]))
    # Through the weighted total, the teacher's gradient is exactly that of its InfoNCE term.
    total = sum(LaSERLoss(model).weighted(terms).values())
    teacher = views["query_explicit"]
    torch.testing.assert_close(grad_of(total, teacher), grad_of(terms.explicit, teacher))


def test_gradients_reach_the_lora_parameters_through_both_views(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), device="cpu")
    add_lora(model, TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    lora_b = {name: param for name, param in model.named_parameters() if "lora_B" in name}
    assert lora_b and all(param.requires_grad for param in lora_b.values())
    assert not any(param.requires_grad for name, param in model.named_parameters() if "lora_" not in name)
    _, features = collated_features(model, ROWS)
    views = {}

    def keep_output(module, args, output):
        view = "explicit" if "explicit_input_ids" in output else "query" if "query" not in views else "passages"
        views[view] = output["sentence_embedding"]

    model.train()
    hook = model[0].register_forward_hook(keep_output)
    try:
        total = sum(LaSERLoss(model)(features).values())
    finally:
        hook.remove()
    assert set(views) == {"query", "passages", "explicit"}
    for view, embedding in views.items():
        (from_loss,) = torch.autograd.grad(total, embedding, retain_graph=True)
        assert from_loss.abs().sum() > 0, view
        # lora_A starts random and lora_B at zero, so a first gradient lands on every lora_B.
        grads = torch.autograd.grad(embedding, list(lora_b.values()), from_loss, retain_graph=True)
        assert all(grad.abs().sum() > 0 for grad in grads), view


# -- ablations --------------------------------------------------------------------------------------------


def test_without_the_explicit_view_it_is_plain_latent_infonce(model):
    rows = [{key: value for key, value in row.items() if key != "rationale"} for row in ROWS]
    dataset, features = collated_features(model, rows, explicit_view=False)
    assert "explicit" not in dataset.column_names
    with torch.no_grad():
        losses = LaSERLoss(model, explicit_view=False)(features)
    assert list(losses) == ["loss_latent"]
    with_rationales, _ = collated_features(model, ROWS)
    assert losses["loss_latent"].item() == pytest.approx(reference_terms(model, with_rationales)["latent"], abs=1e-5)


def test_zero_weights_drop_their_terms(model, batch):
    _, features = batch
    with torch.no_grad():
        losses = LaSERLoss(model, output_weight=0, trajectory_weight=0)(features)
    assert set(losses) == {"loss_latent", "loss_explicit"}
    with pytest.raises(ValueError, match="nothing to train"):
        LaSERLoss(model, latent_weight=0, explicit_weight=0, output_weight=0, trajectory_weight=0)


def test_without_its_infonce_the_teacher_only_gives_targets(model, batch):
    _, features = batch

    def gradients(losses):
        model.zero_grad()
        sum(losses.values()).backward()
        return [param.grad.clone() for param in model.parameters()]

    distill_only = LaSERLoss(model, explicit_weight=0)(features)  # the teacher runs without autograd here
    full = LaSERLoss(model)(features)
    assert set(distill_only) == {"loss_latent", "loss_output_kl", "loss_trajectory_kl"}
    same_terms = {name: full[name] for name in distill_only}
    for name, value in distill_only.items():
        assert value.item() == pytest.approx(same_terms[name].item(), rel=1e-6), name
    for skipped, kept in zip(gradients(distill_only), gradients(same_terms), strict=True):
        torch.testing.assert_close(skipped, kept)


def test_one_thinking_step(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), num_thinking_steps=1, device="cpu")
    dataset, features = collated_features(model, ROWS)
    assert features[-1]["trajectory_positions"].shape == (3, 1)
    with torch.no_grad():
        losses = LaSERLoss(model)(features)
    expected = reference_terms(model, dataset)
    for name, weight in WEIGHTS.items():
        assert losses[f"loss_{name}"].item() / weight == pytest.approx(expected[name], abs=1e-5), name


def embed_rows(model, dataset, query_column):
    """(queries, passages in i*G order) of a prepared dataset, one text at a time."""
    rows = [dataset[index] for index in range(len(dataset))]
    as_input = (lambda value: value) if query_column == "query" else tuple
    queries = [embed_alone(model, as_input(row[query_column]))[0] for row in rows]
    columns = ("positive", "negative_1", "negative_2")
    passages = [embed_alone(model, row[column])[0] for row in rows for column in columns]
    return queries, passages


def output_kl(student, teacher):
    """Reference L_out for a fixed teacher: its query and passage embeddings against the student's."""
    (student_queries, student_passages), (teacher_queries, teacher_passages) = student, teacher
    return sum(
        kl([dot(t, p) for p in teacher_passages], [dot(s, p) for p in student_passages], 0.02)
        for s, t in zip(student_queries, teacher_queries, strict=True)
    ) / len(student_queries)


def test_frozen_teacher_is_the_backbone_without_adapters(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), device="cpu")
    add_lora(model, TrainConfig(lora_r=4, lora_alpha=8, lora_dropout=0.0))
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # make the adapters matter
            param.data.normal_(0, 0.05)
    dataset, features = collated_features(model, ROWS)
    with torch.no_grad():
        losses = LaSERLoss(model, teacher="frozen")(features)
    assert set(losses) == {"loss_latent", "loss_output_kl", "loss_trajectory_kl"}  # the fixed teacher does not learn
    assert all(param.requires_grad for name, param in model.named_parameters() if "lora_" in name)

    student = embed_rows(model, dataset, "query")
    online_teacher = embed_rows(model, dataset, "explicit")
    model.transformers_model.disable_adapters()
    base_teacher = embed_rows(model, dataset, "explicit")
    model.transformers_model.enable_adapters()
    assert losses["loss_output_kl"].item() / 10 == pytest.approx(output_kl(student, base_teacher), abs=1e-5)
    assert output_kl(student, base_teacher) != pytest.approx(output_kl(student, online_teacher), abs=1e-3)


def test_frozen_teacher_model(tiny_dirs, model):
    teacher = load_model(str(tiny_dirs["llama"]), device="cpu")  # another backbone, same tokenizer
    dataset, features = collated_features(model, ROWS)
    with torch.no_grad():
        losses = LaSERLoss(model, teacher="frozen", teacher_model=teacher)(features)
    expected = output_kl(embed_rows(model, dataset, "query"), embed_rows(teacher, dataset, "explicit"))
    assert losses["loss_output_kl"].item() / 10 == pytest.approx(expected, abs=1e-5)
    assert not any(param.requires_grad for param in teacher.parameters())

    other = load_model(str(tiny_dirs["llama"]), device="cpu")
    other[0].tokenizer.add_tokens(["<an-extra-token>"])
    with pytest.raises(ValueError, match="share the model's tokenizer"):
        LaSERLoss(model, teacher="frozen", teacher_model=other)


def test_frozen_teacher_needs_a_teacher_or_adapters(model):
    with pytest.raises(ValueError, match="teacher_model"):
        LaSERLoss(model, teacher="frozen")
    with pytest.raises(ValueError, match="teacher='frozen'"):
        LaSERLoss(model, teacher_model=model)


def test_gradient_checkpointing_gives_the_same_loss_and_gradients(tiny_dirs):
    model = load_model(str(tiny_dirs["qwen3"]), device="cpu")
    _, features = collated_features(model, ROWS)
    model.train()
    runs = []
    for checkpointing in (False, True):
        if checkpointing:
            enable_checkpointing(model)  # transformers then drops the KV cache; the latent loop recomputes
        model.zero_grad()
        losses = LaSERLoss(model)(features)
        sum(losses.values()).backward()
        runs.append((losses, {name: param.grad.clone() for name, param in model.named_parameters()}))
    (plain, plain_grads), (checkpointed, checkpointed_grads) = runs
    for name, value in plain.items():
        assert checkpointed[name].item() == pytest.approx(value.item(), rel=1e-5), name
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, rtol=1e-3, atol=1e-4)


# -- data the loss gets -------------------------------------------------------------------------------------


def test_trajectory_features_sit_at_the_rationale_paragraph_ends(model, batch):
    _, features = batch
    explicit = features[-1]  # as the trainer hands it over: the 'explicit_' prefix is stripped
    tokenizer = model[0].tokenizer
    break_id = tokenizer.encode("\n\n", add_special_tokens=False)[-1]
    ids, positions = explicit["input_ids"], explicit["trajectory_positions"]
    # Row 0 has 5 paragraphs (4 breaks + the last token): K=3 picks ends 0, 2 and 4 (floor of linspace(0, 4, 3)).
    first = ids[0, positions[0]].tolist()
    assert first[:2] == [break_id, break_id] and first[2] != break_id
    assert positions[0, 2] == ids.shape[1] - 2  # the rationale's last token, just before the appended EOS
    # Row 1 is one paragraph: its last token, repeated K times.
    assert positions[1].tolist() == [ids.shape[1] - 2] * 3
    # Row 2 has an empty rationale: the final (EOS) state K times.
    assert positions[2].tolist() == [ids.shape[1] - 1] * 3
    assert ids[2, -1] == tokenizer.eos_token_id and explicit["attention_mask"][:, -1].all()


def test_passages_are_all_candidates_for_every_query(model, batch):
    _, features = batch
    views = {
        "query_latent": torch.nn.functional.normalize(torch.randn(3, 64), dim=-1),
        "passages": torch.nn.functional.normalize(torch.randn(9, 64), dim=-1),
    }
    loss = LaSERLoss(model, explicit_view=False)
    terms = loss.compute_terms(**views)
    scores = views["query_latent"] @ views["passages"].T / 0.02
    expected = torch.nn.functional.cross_entropy(scores, torch.tensor([0, 3, 6]))
    torch.testing.assert_close(terms.latent, expected)


def test_rationale_is_stripped_and_instruction_goes_into_both_views(batch):
    dataset, _ = batch
    assert dataset.column_names == ["query", "positive", "negative_1", "negative_2", "explicit"]
    assert dataset[1]["query"] == "Instruct: Given a question, retrieve code documentation\nQuery: what is python"
    assert dataset[1]["explicit"] == [dataset[1]["query"], "Python is a programming language."]
    assert dataset[0]["query"].startswith("Instruct: Given a query, retrieve relevant passages")  # the default
    assert dataset[2]["explicit"][1] == ""


def without(column):
    return lambda rows: [{key: value for key, value in row.items() if key != column} for row in rows]


def with_value(row_number, **values):
    return lambda rows: [{**row, **values} if index == row_number else row for index, row in enumerate(rows)]


@pytest.mark.parametrize(
    ("change", "options", "match"),
    [
        (without("rationale"), {}, "lacks column.*'rationale'.*laser rationales"),
        (without("positive"), {}, "lacks column.*'positive'"),
        (with_value(1, query="  "), {}, "row 1: column 'query' must be a non-empty string"),
        (with_value(2, positive=""), {}, "row 2: column 'positive' must be a non-empty string"),
        (with_value(1, negative_2=None), {"num_negatives": 2}, "row 1 has 1 negative passage.* 2 are configured"),
        (with_value(0), {"num_negatives": 3}, "row 0 has 2 negative passage.* 3 are configured"),
        (with_value(0), {"columns": {"reasoning": "x"}}, "unknown fields"),
        (with_value(0), {"columns": {"rationale": "reasoning_path"}}, "'rationale' \\(as 'reasoning_path'\\)"),
    ],
)
def test_bad_data_is_refused_with_the_row_and_the_fix(change, options, match):
    with pytest.raises(ValueError, match=match):
        prepare_laser_dataset(change(ROWS), **options)


def test_missing_rationale_values_fall_back_to_the_query(caplog):
    rows = [dict(row) for row in ROWS]
    rows[0]["rationale"] = None
    with caplog.at_level(logging.WARNING):
        dataset = prepare_laser_dataset(rows)
    assert dataset[0]["explicit"][1] == "" and "2 of 3 rows have an empty rationale" in caplog.text


def test_list_valued_passages_and_mapped_columns():
    rows = [
        {"question": "q one", "reasoning_path": "r", "positive_passages": ["p1", "p1b"], "negs": ["n1", "n2", "n3"]},
        {"question": "q two", "reasoning_path": "r", "positive_passages": ["p2"], "negs": ["m1", "m2"]},
    ]
    columns = {"query": "question", "rationale": "reasoning_path", "positive": "positive_passages", "negative": "negs"}
    dataset = prepare_laser_dataset(rows, num_negatives=2, instruction="", columns=columns)
    assert dataset[0] == {"query": "q one", "positive": "p1", "negative_1": "n1", "negative_2": "n2",
                          "explicit": ["q one", "r"]}  # fmt: skip


def test_a_raw_dataset_without_the_pair_column_gets_a_clear_error(model):
    features = [model.preprocess(["q"]), model.preprocess(["p"]), model.preprocess(["a rationale"])]
    with pytest.raises(ValueError, match="prepare_laser_dataset"):
        LaSERLoss(model)(features)
