"""Build the offline LaSER training set (issue 20) from Debian dictionary packages, with privileged rationales.

Sources (dictd ``.index`` + ``.dict.dz`` files under /usr/share/dictd, installed offline with apt):

- ``dict-foldoc``: the Free On-line Dictionary of Computing (GFDL 1.1+): queries, passages, categories;
- ``dict-jargon``: the Jargon File 4.4.7 (public domain): queries and passages;
- ``dict-vera``: V.E.R.A., computing acronyms (GFDL 1.1+): acronym expansions inside rationales only.

The task is a reverse dictionary: the query is a user's description of a concept (an entry's first sentence)
with the headword and its stems replaced by "this"; the positive passage is the rest of that entry, titled by
its headword, so the query sentence never appears in it and a retriever must work out which concept is meant.
The rationale is what a reasoner would write, taken from the entry's structure: the concept's name (and
acronym expansion), its category, its cross-references. The hard negative is another entry of the same category.

Held out for evaluation, disjoint by target: a seeded share of the headwords, written in BEIR layout (every
held-out passage in the corpus, a subset of its queries with qrels) for ``laser eval --dataset``. Any entry
that mentions WordNet is dropped (WordNet is reserved for evaluation), and any row sharing text with the
bundled pyref set (evaluation only) is dropped and counted.

    python scripts/build_training_set.py -o laser-output/training-set          # ~10 s
    laser train laser-output/training-set/train.jsonl ...
    laser eval --dataset laser-output/training-set/heldout --modes single latent:3
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import random
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

DICTD_DIR = Path("/usr/share/dictd")
SOURCES = {
    "foldoc": {
        "package": "dict-foldoc",
        "title": "FOLDOC, the Free On-line Dictionary of Computing (editor Denis Howe)",
        "license": "GNU Free Documentation License 1.1 or later, no invariant sections",
        "role": "queries, passages, categories and cross-references",
    },
    "jargon": {
        "package": "dict-jargon",
        "title": "The Jargon File 4.4.7",
        "license": "public domain",
        "role": "queries, passages and cross-references",
    },
    "vera": {
        "package": "dict-vera",
        "title": "V.E.R.A., Virtual Entity of Relevant Acronyms (Oliver Heidelbach)",
        "license": "GNU Free Documentation License 1.1 or later, no invariant sections",
        "role": "acronym expansions in rationales only",
    },
}
PASSAGE_SOURCES = ("foldoc", "jargon")
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
QUERY_TEMPLATES = (
    "What is the term for {description}",
    "What do you call {description}",
    "I am looking for the name of {description}",
    "Which concept is {description}",
    "Explain the thing described as {description}",
)
PYREF_DIR = Path(__file__).resolve().parents[1] / "src/laser_integrations/data/pyref"
SHINGLE_WORDS = 10
"""A training row that shares any run of this many words with a pyref query or passage is dropped."""


@dataclass
class Entry:
    """One dictionary entry, cleaned: headword, category, definition sentence, the rest, cross-references."""

    source: str
    headword: str
    category: str
    description: str
    rest: str
    references: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


# -- dictd files -------------------------------------------------------------------------------------------


def decode_b64_number(text: str) -> int:
    """A dictd index offset or length: base64 digits, most significant first.

    >>> decode_b64_number("Dp8J"), decode_b64_number("B")
    (958217, 1)
    """
    value = 0
    for char in text:
        value = value * 64 + B64.index(char)
    return value


def read_dictd(index_text: str, data: bytes) -> Iterator[tuple[str, str]]:
    """``(headword, raw entry text)`` for every index line, skipping dictd's ``00-database-*`` metadata."""
    seen: set[tuple[int, int]] = set()
    for line in index_text.splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith(("00-database", "00database")):
            continue
        span = (decode_b64_number(parts[1]), decode_b64_number(parts[2]))
        if span in seen:  # several index words may point at one entry
            continue
        seen.add(span)
        yield parts[0], data[span[0] : span[0] + span[1]].decode("utf8", errors="replace")


def load_dictd(name: str, directory: Path = DICTD_DIR) -> list[tuple[str, str]]:
    """All entries of one installed dictd database, or exit with a one-line apt hint."""
    index, dz = directory / f"{name}.index", directory / f"{name}.dict.dz"
    if not index.is_file() or not dz.is_file():
        package = SOURCES[name]["package"]
        sys.exit(f"build_training_set: {dz} is missing: run `apt-get install -y {package}` (offline Debian package)")
    return list(read_dictd(index.read_text(encoding="utf8"), gzip.open(dz).read()))


# -- cleaning ----------------------------------------------------------------------------------------------

REFERENCE = re.compile(r"\{\s*([^{}]+?)\s*\}")
DATE = re.compile(r"\(\d{4}-\d{2}-\d{2}\)")
JARGON_POS = re.compile(r"^\s*(?:n|v|vt|vi|adj|adv|interj|prov|pref|suff|excl|pl)\.")
LEADING_MARKUP = re.compile(
    r"^\s*(?:1\.\s|<(?P<category>[^<>]{1,80})>|/[^/\s][^/\n]{0,40}/,?|\[[^\[\]]*\]|"
    r"(?:n|v|vt|vi|adj|adv|interj|prov|pref|suff|excl|pl)\.,?(?=\s))\s*"
)
SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]])[.?!](?=\s+[A-Z(]|\s*$)")
WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9'+#-]*")


def references(text: str) -> list[str]:
    """The ``{cross reference}`` targets of an entry, in order, without repeats.

    >>> references("See {byte-code compiler}, {native\\n   compiler} and {byte-code compiler}.")
    ['byte-code compiler', 'native compiler']
    """
    found = [" ".join(match.split()) for match in REFERENCE.findall(text)]
    return list(dict.fromkeys(found))


def plain(text: str) -> str:
    """Markup removed and whitespace collapsed: ``{x}`` becomes ``x``, edit dates go.

    >>> plain("A {program}  that\\n   runs. (1994-11-07)")
    'A program that runs.'
    """
    text = DATE.sub("", REFERENCE.sub(r"\1", text))
    return " ".join(text.replace("[{Jargon File}]", "").split())


def first_sentence(text: str) -> tuple[str, str]:
    """Split plain text after its first sentence.

    >>> first_sentence("A program that converts code. It is fast. Really.")
    ('A program that converts code.', 'It is fast. Really.')
    """
    match = SENTENCE_END.search(text)
    if match is None:
        return text.strip(), ""
    return text[: match.end()].strip(), text[match.end() :].strip()


def parse_entry(source: str, headword: str, raw: str) -> Entry | None:
    """One raw dictd entry as an :class:`Entry`, or ``None`` when it has no usable definition (or cites WordNet).

    The header (lines before the first blank one) holds the title and, in FOLDOC, alternative names; the body
    may open with a sense number, a ``<category>``, a ``/pronunciation/``, a part of speech, an ``[etymology]``.

    >>> entry = parse_entry("foldoc", "cache", "cache\\ncaching\\n\\n   <memory management> /kash/ A small fast "
    ...     "{memory}. Most often used for CPUs.\\n")
    >>> entry.headword, entry.aliases, entry.category, entry.description, entry.rest
    ('cache', ['caching'], 'memory management', 'A small fast memory.', 'Most often used for CPUs.')
    """
    if "wordnet" in raw.lower():
        return None
    header, _, body = raw.strip("\n").partition("\n\n")
    names = [line.strip() for line in header.split("\n") if line.strip()]
    title = names[0] if names else headword
    aliases = [name for name in names[1:] if not LEADING_MARKUP.match(name) and not JARGON_POS.match(name)]
    category = "" if source != "jargon" else "hacker jargon"
    body = body.strip()
    while True:
        match = LEADING_MARKUP.match(body)
        if match is None:
            break
        if match.group("category"):
            category = match.group("category").strip()
        body = body[match.end() :]
    description, rest = first_sentence(plain(body))
    if not description or not rest:
        return None
    return Entry(source, title, category, description, rest, references(body), aliases)


STOPWORDS = frozenset("a an and the of for to in on at by or with from as is it its not no".split())


def stems(names: Sequence[str]) -> list[str]:
    """Lower-case prefixes that identify a concept's names in a query (and their inflections), plus the
    initials of a multi-word name (its likely acronym).

    >>> stems(["Byte-code compiler", "copy and paste"])
    ['byte', 'code', 'compil', 'bcc', 'copy', 'paste', 'cap']
    """
    out: list[str] = []
    for name in names:
        words = [word for word in re.split(r"[^a-z0-9+#]+", name.lower()) if word]
        content = [word for word in words if word not in STOPWORDS]
        out += [word if len(word) <= 5 else word[: max(5, len(word) - 2)] for word in content if len(word) >= 2]
        if len(words) >= 2:
            out.append("".join(word[0] for word in words if word))
    return list(dict.fromkeys(out))


def hide_headword(description: str, names: Sequence[str]) -> str | None:
    """The description with every word that starts with a stem of the concept's names replaced by "this",
    or ``None`` when too little is left to describe (fewer than five other words).

    >>> hide_headword("A compiler that turns source code into byte code quickly.", ["byte-code compiler"])
    'A this that turns source this into this this quickly.'
    """
    prefixes = stems(names)
    if not prefixes:
        return None
    kept = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal kept
        word = match.group(0).lower()
        if any(word.startswith(prefix) for prefix in prefixes):
            return "this"
        kept += 1
        return match.group(0)

    hidden = WORD.sub(replace, description)
    return hidden if kept >= 5 else None


def make_query(description: str, rng: random.Random) -> str:
    """A user-style question around a definition sentence.

    >>> make_query("A program that converts code.", random.Random(0))
    'Which concept is a program that converts code?'
    """
    text = description.rstrip(".!? ")
    text = text[0].lower() + text[1:] if text[:1].isupper() and not text[1:2].isupper() else text
    return rng.choice(QUERY_TEMPLATES).format(description=text) + "?"


def make_rationale(entry: Entry, expansions: dict[str, str]) -> str:
    """Three paragraphs (the explicit view's trajectory segments): the concept, its context, the conclusion."""
    name = entry.headword
    expansion = expansions.get(name.upper())
    named = f"This describes {name}" + (f" ({expansion})" if expansion and expansion.lower() != name.lower() else "")
    if entry.aliases:
        named += ", also called " + ", ".join(entry.aliases[:3])
    kind = f" (category: {entry.category})" if entry.category else ""
    related = [ref for ref in entry.references if ref.lower() != name.lower()][:6]
    context = "Related concepts: " + ", ".join(related) + "." if related else "It has no cross-references."
    conclusion = f"So the relevant passage is the one about {name}."
    return f"{named}{kind}.\n\n{context}\n\n{conclusion}"


def make_passage(entry: Entry, max_chars: int) -> str:
    """The entry without its first sentence, titled by the headword, cut at a word boundary."""
    text = f"{entry.headword}: {entry.rest}"
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0] + " ..."
    return text


def target_key(headword: str) -> str:
    """What "the same target" means across sources: the headword, case and spacing folded."""
    return " ".join(headword.lower().split())


def is_held_out(key: str, seed: int, fraction: float) -> bool:
    """A stable, seeded split by target (independent of the order and the number of entries)."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def vera_expansions(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Acronym -> its first expansion, from V.E.R.A. entries (``ACRONYM\\n   Expansion (context)``).

    >>> vera_expansions([("ftp", "FTP\\n       File Transfer Protocol (Internet, RFC 959)\\n")])
    {'FTP': 'File Transfer Protocol'}
    """
    out: dict[str, str] = {}
    for _, raw in entries:
        lines = [line.strip() for line in raw.strip("\n").split("\n") if line.strip()]
        if len(lines) >= 2 and "wordnet" not in raw.lower():
            out[lines[0].upper()] = re.sub(r"\s*\([^)]*\)\s*$", "", lines[1]).strip(' ,"')
    return out


# -- pyref disjointness ------------------------------------------------------------------------------------


def shingles(text: str, size: int = SHINGLE_WORDS) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def pyref_shingles(directory: Path = PYREF_DIR) -> set[tuple[str, ...]]:
    """Every word run of the bundled pyref queries and passages (evaluation only)."""
    out: set[tuple[str, ...]] = set()
    for name in ("corpus.jsonl", "queries.jsonl"):
        for line in (directory / name).read_text(encoding="utf8").splitlines():
            record = json.loads(line)
            out |= shingles(record.get("title", "") + " " + record["text"])
    return out


# -- the build ---------------------------------------------------------------------------------------------


def build(
    raw_sources: dict[str, list[tuple[str, str]]],
    *,
    seed: int = 0,
    held_out_fraction: float = 0.1,
    eval_queries: int = 200,
    max_passage_chars: int = 600,
    reserved: set[tuple[str, ...]] | None = None,
) -> dict:
    """Train rows, the held-out BEIR split and the counts, from raw ``{source: [(headword, text)]}``."""
    rng = random.Random(seed)
    expansions = vera_expansions(raw_sources.get("vera", []))
    counts = {"entries": 0, "no_definition": 0, "headword_not_hideable": 0, "duplicate_target": 0, "pyref_overlap": 0}
    by_key: dict[str, dict] = {}
    for source in PASSAGE_SOURCES:
        for headword, raw in raw_sources.get(source, []):
            counts["entries"] += 1
            entry = parse_entry(source, headword, raw)
            if entry is None:
                counts["no_definition"] += 1
                continue
            hidden = hide_headword(entry.description, [entry.headword, *entry.aliases])
            if hidden is None:
                counts["headword_not_hideable"] += 1
                continue
            key = target_key(entry.headword)
            if key in by_key:  # FOLDOC repeats many Jargon File entries; the first source wins
                counts["duplicate_target"] += 1
                continue
            row = {
                "id": f"{source}:{key}",
                "target": key,
                "source": source,
                "category": entry.category,
                "query": make_query(hidden, rng),
                "rationale": make_rationale(entry, expansions),
                "positive": make_passage(entry, max_passage_chars),
            }
            if reserved and any(shingles(row[key]) & reserved for key in ("query", "positive", "rationale")):
                counts["pyref_overlap"] += 1
                continue
            by_key[key] = row
    rows = [by_key[key] for key in sorted(by_key)]
    train = [row for row in rows if not is_held_out(row["target"], seed, held_out_fraction)]
    held = [row for row in rows if is_held_out(row["target"], seed, held_out_fraction)]
    add_negatives(train, rng)
    rng.shuffle(train)
    queried = sorted(rng.sample(range(len(held)), min(eval_queries, len(held))))
    corpus = [{"_id": f"d{i}", "title": "", "text": row["positive"]} for i, row in enumerate(held)]
    queries = [{"_id": f"q{i}", "text": held[i]["query"]} for i in queried]
    qrels = [(f"q{i}", f"d{i}") for i in queried]
    counts.update(train_rows=len(train), heldout_passages=len(corpus), heldout_queries=len(queries))
    return {"train": train, "corpus": corpus, "queries": queries, "qrels": qrels, "counts": counts}


def add_negatives(rows: list[dict], rng: random.Random) -> None:
    """One hard negative per row: another training entry of the same category (any other when alone)."""
    by_category: dict[str, list[int]] = {}
    for index, row in enumerate(rows):
        by_category.setdefault(row["category"], []).append(index)
    for index, row in enumerate(rows):
        pool = by_category[row["category"]]
        other = index
        while other == index:
            other = rng.choice(pool) if len(pool) > 1 else rng.randrange(len(rows))
        row["negative"] = rows[other]["positive"]


def write(result: dict, output: Path, *, seed: int) -> None:
    (output / "heldout" / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(output / "train.jsonl", result["train"])
    write_jsonl(output / "heldout" / "corpus.jsonl", result["corpus"])
    write_jsonl(output / "heldout" / "queries.jsonl", result["queries"])
    qrels = "".join(f"{query}\t{doc}\t1\n" for query, doc in result["qrels"])
    (output / "heldout" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + qrels, encoding="utf8")
    metadata = {"seed": seed, "sources": SOURCES, "counts": result["counts"], "command": " ".join(sys.argv)}
    (output / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf8")
    (output / "README.md").write_text(readme(metadata), encoding="utf8")


def write_jsonl(path: Path, records: Iterable[dict]) -> None:
    path.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), encoding="utf8")


def readme(metadata: dict) -> str:
    lines = [
        "# LaSER training set: a computing reverse dictionary (scripts/build_training_set.py)",
        "",
        "Rows: `query` (a description of a concept, its name hidden), `rationale` (the concept, its category and",
        "cross-references: privileged information for the explicit view), `positive` (the rest of the entry, titled",
        "by its headword), `negative` (another entry of the same category). `heldout/` is a BEIR split whose targets",
        "never occur in `train.jsonl`. No WordNet text; no text shared with the bundled pyref set.",
        "",
        f"Built with `{metadata['command']}` (seed {metadata['seed']}).",
        "",
        "| source | Debian package | license | used for |",
        "|---|---|---|---|",
    ]
    for info in metadata["sources"].values():
        lines.append(f"| {info['title']} | {info['package']} | {info['license']} | {info['role']} |")
    lines += ["", "Counts: " + ", ".join(f"{key} {value}" for key, value in metadata["counts"].items()), ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--held-out-fraction", type=float, default=0.1, help="share of targets held out (0.1)")
    parser.add_argument("--eval-queries", type=int, default=200, help="held-out queries with qrels (200)")
    parser.add_argument("--max-passage-chars", type=int, default=600)
    parser.add_argument("--dictd-dir", default=str(DICTD_DIR))
    args = parser.parse_args(argv)
    if not 0 < args.held_out_fraction < 1:
        parser.error("--held-out-fraction must be in (0, 1)")
    raw = {name: load_dictd(name, Path(args.dictd_dir)) for name in SOURCES}
    options = dict(held_out_fraction=args.held_out_fraction, eval_queries=args.eval_queries)
    result = build(raw, seed=args.seed, max_passage_chars=args.max_passage_chars, reserved=pyref_shingles(), **options)
    write(result, Path(args.output), seed=args.seed)
    print(json.dumps(result["counts"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
