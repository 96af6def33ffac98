"""scripts/build_training_set.py on a tiny dictd slice written here: format, determinism, and that nothing of the
held-out split, of WordNet or of the pyref evaluation set reaches the training rows. No apt package needed."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from laser_integrations.evaluation import load_beir
from laser_integrations.training import prepare_laser_dataset

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("build_training_set", ROOT / "scripts" / "build_training_set.py")
build_training_set = importlib.util.module_from_spec(SPEC)
sys.modules.setdefault("build_training_set", build_training_set)  # dataclasses look their module up there
SPEC.loader.exec_module(build_training_set)

PYREF_QUERY = json.loads((ROOT / "src/laser_integrations/data/pyref/queries.jsonl").read_text().splitlines()[0])


def b64(number: int) -> str:
    digits = ""
    while True:
        digits = build_training_set.B64[number % 64] + digits
        number //= 64
        if number == 0:
            return digits


def write_dictd(folder: Path, name: str, entries: list[tuple[str, str]]) -> None:
    data, index = b"", []
    for headword, text in [("00-database-info", "metadata, not an entry\n"), *entries]:
        encoded = text.encode("utf8")
        index.append(f"{headword}\t{b64(len(data))}\t{b64(len(encoded))}")
        data += encoded
    (folder / f"{name}.index").write_text("\n".join(index) + "\n", encoding="utf8")
    with gzip.open(folder / f"{name}.dict.dz", "wb") as file:
        file.write(data)


def foldoc_entry(word: str, number: int) -> str:
    return (
        f"{word}\n{word}ing\n\n   <topic{number % 3}> /{word}/ A device number {number} that moves "
        f"{{signals}} between two {word}s in a computer network.  The {word} was built in {1970 + number} "
        f"and is described in {{RFC {number}}}.  See also {{{word} protocol}}.\n\n   (1999-01-0{number % 9 + 1})\n"
    )


@pytest.fixture
def dictd(tmp_path):
    folder = tmp_path / "dictd"
    folder.mkdir()
    words = [f"zorb{chr(97 + i)}{chr(97 + j)}" for i in range(6) for j in range(6)]
    foldoc = [(word, foldoc_entry(word, n)) for n, word in enumerate(words)]
    foldoc.append(("wordy", "wordy\n\n   <misc> A long sentence about words in English. From [WordNet 1.5] text.\n"))
    leak = f"leaky\n\n   <misc> A thing that leaks many small items over time. {PYREF_QUERY['text']}\n"
    foldoc.append(("leaky", leak))
    foldoc.append(("stub", "stub\n\n   <misc> Too short.\n"))
    jargon = [
        ("blarg", "blarg\n /blarg/, n.\n\n    [from noise] A loud cry made when a program dies. Hackers say it.\n"),
        ("zorbaa", "zorbaa\n n.\n\n    A duplicate of a FOLDOC entry, dropped by target. It repeats.\n"),
    ]
    vera = [("zba", "ZBA\n       Zorb Bus Adapter (networking)\n")]
    for name, entries in (("foldoc", foldoc), ("jargon", jargon), ("vera", vera)):
        write_dictd(folder, name, entries)
    return folder


def build(dictd, output, *extra):
    argv = ["-o", str(output), "--dictd-dir", str(dictd), "--held-out-fraction", "0.3", "--eval-queries", "5"]
    assert build_training_set.main([*argv, *extra]) == 0
    train = [json.loads(line) for line in (output / "train.jsonl").read_text(encoding="utf8").splitlines()]
    return train, json.loads((output / "metadata.json").read_text(encoding="utf8"))


def test_rows_train_with_laser_and_the_held_out_split_is_a_beir_folder(dictd, tmp_path):
    train, metadata = build(dictd, tmp_path / "out")
    assert train and all(row["query"] and row["rationale"] and row["positive"] and row["negative"] for row in train)
    prepared = prepare_laser_dataset(train, num_negatives=1)
    assert prepared.column_names == ["query", "positive", "negative_1", "explicit"]

    for row in train:
        word = row["target"]
        assert word not in row["query"].lower() and word[:5] not in row["query"].lower()  # the name is hidden
        assert row["positive"].startswith(row["positive"].split(":")[0] + ": ")
        assert row["query"].rstrip("?").split(" a ", 1)[-1][:30] not in row["positive"]  # not a lexical copy
        assert len(row["rationale"].split("\n\n")) == 3 and row["target"] in row["rationale"].lower()
        assert row["negative"] != row["positive"]
    zorb = next(row for row in train if row["target"].startswith("zorb"))
    assert "signals" in zorb["rationale"] and "category: topic" in zorb["rationale"]

    heldout = load_beir(tmp_path / "out" / "heldout")
    assert 1 <= len(heldout.queries) <= 5 and len(heldout.corpus) >= len(heldout.queries)
    held_passages = {passage.text for passage in heldout.corpus.values()}
    train_texts = {row["positive"] for row in train} | {row["negative"] for row in train}
    assert not held_passages & train_texts  # disjoint by target
    assert set(metadata["sources"]) == {"foldoc", "jargon", "vera"}
    assert all(source["license"] for source in metadata["sources"].values())
    assert "GNU Free Documentation License" in (tmp_path / "out" / "README.md").read_text(encoding="utf8")


def test_wordnet_pyref_and_duplicate_targets_never_reach_training(dictd, tmp_path):
    train, metadata = build(dictd, tmp_path / "out")
    heldout = load_beir(tmp_path / "out" / "heldout")
    every_text = " ".join(
        [value for row in train for value in row.values()] + [passage.text for passage in heldout.corpus.values()]
    )
    assert "WordNet" not in every_text and "wordy" not in {row["target"] for row in train}
    assert PYREF_QUERY["text"] not in every_text
    assert metadata["counts"]["pyref_overlap"] == 1
    assert metadata["counts"]["duplicate_target"] == 1
    assert [row["source"] for row in train if row["target"] == "zorbaa"] in ([], ["foldoc"])


def test_the_build_is_deterministic_and_the_seed_moves_the_split(dictd, tmp_path):
    first, _ = build(dictd, tmp_path / "a")
    again, _ = build(dictd, tmp_path / "b")
    other, _ = build(dictd, tmp_path / "c", "--seed", "7")
    assert first == again
    assert {row["target"] for row in first} != {row["target"] for row in other}


def test_a_missing_dictionary_package_is_a_one_line_apt_hint(dictd, tmp_path):
    (dictd / "vera.dict.dz").unlink()
    with pytest.raises(SystemExit, match=r"apt-get install -y dict-vera"):
        build(dictd, tmp_path / "out")


def test_the_dictd_offsets_are_base64_numbers():
    assert [build_training_set.decode_b64_number(b64(n)) for n in (0, 1, 63, 64, 977417)] == [0, 1, 63, 64, 977417]
