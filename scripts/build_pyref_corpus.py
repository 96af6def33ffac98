#!/usr/bin/env python3
"""Build the ``pyref`` BEIR-format retrieval dataset shipped in ``src/laser_integrations/data/pyref/``.

The corpus is cut from the Python Language Reference as bundled with CPython in ``pydoc_data.topics``
(PSF License Agreement, see the dataset README): the topics in TOPICS are split into passages of roughly
MIN_WORDS..MAX_WORDS words at paragraph boundaries. The questions are written by hand in QUESTIONS_SPEC at the end of
this file: each names its relevant passages by ``(topic, anchor)`` pairs, where the anchor is a verbatim excerpt
(whitespace-insensitive) that must occur in exactly one passage of that topic. The qrels are computed from the
anchors, so they stay correct if passage ids shift, and the build fails loudly if an anchor matches no passage or
several.

Usage (standard library only; run from anywhere)::

    python3 scripts/build_pyref_corpus.py          # rewrite corpus.jsonl, queries.jsonl and qrels/test.tsv
    python3 scripts/build_pyref_corpus.py --check  # exit 1 if the committed files differ from a fresh build

Output is deterministic for a given Python build: passages are emitted topic by topic (sorted by topic key) in
document order, with ids ``<topic>-<n>`` (n counts from 1 within each topic). ``pydoc_data`` text differs between
patch releases, so rebuild with the version recorded in ``BUILT_WITH`` to reproduce the committed files exactly.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from pydoc_data import topics as pydoc_topics

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "src" / "laser_integrations" / "data" / "pyref"
BUILT_WITH = (3, 11, 7)

MIN_WORDS = 60
MAX_WORDS = 180
HARD_MAX_WORDS = 220

# Topics kept in the corpus. Several pydoc topics are verbatim excerpts of bigger ones ("compound" contains
# "if", "while", "for", "try", "with", "function", "class" and "async"; "specialnames" contains "customization",
# "attribute-access", "numeric-types", "sequence-types", "callable-types" and "context-managers"; "execmodel"
# contains "naming", "dynamic-features" and "exceptions"; "assignment" contains "augassign"; "comparisons" contains
# "in"; "typesseq" contains "typesseq-mutable"; "identifiers" contains "id-classes"), so only the containing topic is
# kept to avoid duplicate passages. Big topics that no question needs ("types", "string-methods", "debugger") are left
# out to keep the corpus small enough to embed quickly on a CPU.
TOPICS: tuple[str, ...] = (
    "assert",
    "assignment",
    "atom-identifiers",
    "attribute-references",
    "binary",
    "bitwise",
    "booleans",
    "break",
    "calls",
    "comparisons",
    "compound",
    "continue",
    "conversions",
    "del",
    "dict",
    "execmodel",
    "exprlists",
    "floating",
    "formatstrings",
    "global",
    "identifiers",
    "imaginary",
    "import",
    "integers",
    "lambda",
    "lists",
    "nonlocal",
    "numbers",
    "objects",
    "operator-summary",
    "pass",
    "power",
    "raise",
    "return",
    "shifting",
    "slicings",
    "specialattrs",
    "specialnames",
    "strings",
    "subscriptions",
    "truth",
    "typesfunctions",
    "typesmapping",
    "typesmethods",
    "typesmodules",
    "typesseq",
    "unary",
    "yield",
)

# (query id, question text, ((topic, anchor), ...)), see QUESTIONS_SPEC at the end of the file.
Question = tuple[str, str, tuple[tuple[str, str], ...]]

HEADING_LEVELS = {"*": 0, "=": 1, "-": 2, "~": 3}
SENTENCE_END = re.compile(r"(?<=[.!?][ \n])(?=[A-Z\"*(])")
TABLE_ROW = re.compile(r"^(?=\s*\+-)", re.MULTILINE)
LINE_END = re.compile(r"(?<=\n)")
SENTENCE_GAP = re.compile(r"(?<=[.!?:])  (?=\S)")
TABLE_GAP = re.compile(r"(?<=\S) {2,}")
RUBRIC = re.compile(r"-\[ (.+) \]-")  # e.g. "-[ Footnotes ]-", treated as a section heading


@dataclass(frozen=True)
class Block:
    """A heading or a paragraph of one pydoc topic."""

    text: str
    level: int | None = None  # heading level, None for paragraphs

    @property
    def words(self) -> int:
        return len(self.text.split())


@dataclass(frozen=True)
class Passage:
    """One corpus entry."""

    id: str
    title: str
    text: str

    @property
    def words(self) -> int:
        return len(self.text.split())


def normalise_line(line: str) -> str:
    """Normalise whitespace inside one line; code lines keep their spacing.

    Trailing blanks go, the two spaces that pydoc puts after a sentence become one, and the padding of table cells
    (lines starting with "|") is collapsed.
    """
    line = line.expandtabs().rstrip()
    if line.lstrip().startswith("|"):
        return TABLE_GAP.sub(" ", line)
    return SENTENCE_GAP.sub(" ", line)


def is_underline(line: str, previous: str) -> bool:
    return (
        len(line) >= 3
        and len(set(line)) == 1
        and line[0] in HEADING_LEVELS
        and len(line) == len(previous)
        and bool(previous.strip())
        and not previous[0].isspace()
    )


def parse_blocks(raw: str) -> list[Block]:
    """Split a pydoc topic into headings and paragraphs (blank-line separated, lines normalised).

    Headings are lines underlined with one of HEADING_LEVELS' characters; a "-[ Footnotes ]-" rubric becomes a
    section heading too, so that footnotes do not end up under the title of the last section.
    """
    lines = raw.expandtabs().split("\n")
    blocks: list[Block] = []
    para: list[str] = []

    def flush() -> None:
        if para:
            text = "\n".join(normalise_line(x) for x in para)
            rubric = RUBRIC.fullmatch(text.strip())
            blocks.append(Block(rubric.group(1), 1) if rubric else Block(text))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and is_underline(lines[i + 1], line):
            flush()
            blocks.append(Block(line.strip(), HEADING_LEVELS[lines[i + 1][0]]))
            i += 2
            continue
        if line.strip():
            para.append(line)
        else:
            flush()
        i += 1
    flush()
    return blocks


def group_pieces(text: str, boundary: re.Pattern[str]) -> list[str]:
    """Cut ``text`` at the zero-width ``boundary`` matches into groups of at most MAX_WORDS words.

    A single piece longer than that stays whole. The text of each group is kept verbatim (only stripped).
    """
    groups: list[str] = [""]
    for piece in boundary.split(text):
        if groups[-1].strip() and len((groups[-1] + piece).split()) > MAX_WORDS:
            groups.append("")
        groups[-1] += piece
    return [group.lstrip("\n").rstrip() for group in groups if group.strip()]


def split_long(block: Block) -> list[Block]:
    """Split a paragraph over HARD_MAX_WORDS: tables at row separators, prose at sentence ends.

    A piece still over HARD_MAX_WORDS after that (a single huge table row) is split between lines.
    """
    if block.words <= HARD_MAX_WORDS:
        return [block]
    text = textwrap.dedent(block.text)
    boundary = TABLE_ROW if text.startswith("+-") else SENTENCE_END
    out: list[str] = []
    for piece in group_pieces(text, boundary):
        out.extend(group_pieces(piece, LINE_END) if len(piece.split()) > HARD_MAX_WORDS else [piece])
    return [Block(piece) for piece in out]


def indent(block: Block) -> int:
    return len(block.text) - len(block.text.lstrip(" "))


def introduces(previous: Block, block: Block) -> bool:
    """Tell whether ``previous`` leads into ``block`` (ends with ":" or is the term that ``block`` indents under)."""
    return previous.text.rstrip().endswith(":") or (previous.level is None and indent(block) > indent(previous))


def pack(blocks: list[Block]) -> list[tuple[list[str], list[Block]]]:
    """Greedily pack paragraphs into (heading path, blocks) chunks of about MIN_WORDS..MAX_WORDS words.

    A heading closes the current chunk when it is at least MIN_WORDS long; otherwise the heading is kept inside the
    chunk as a line of its own. A paragraph that introduces the next one (see ``introduces``) is not separated from
    it unless that would exceed HARD_MAX_WORDS.
    """
    chunks: list[tuple[list[str], list[Block]]] = []
    path: list[str] = []
    current: list[Block] = []
    current_path: list[str] = []

    def size() -> int:
        return sum(b.words for b in current)

    def flush() -> None:
        nonlocal current
        if current:
            chunks.append((current_path, current))
        current = []

    for block in blocks:
        if block.level is not None:
            path = [*path[: block.level], block.text]
            if size() >= MIN_WORDS:
                flush()
            if current:
                current.append(block)
            else:
                current_path = list(path)
            continue
        for para in split_long(block):
            total = size() + para.words
            keep_together = (size() < MIN_WORDS or introduces(current[-1], para)) if current else True
            if total > HARD_MAX_WORDS or (total > MAX_WORDS and not keep_together):
                flush()
            if not current:
                current_path = list(path)
            current.append(para)
    flush()
    return merge_short_tail(chunks)


def merge_short_tail(chunks: list[tuple[list[str], list[Block]]]) -> list[tuple[list[str], list[Block]]]:
    """Merge chunks under MIN_WORDS into the previous chunk when the result stays under HARD_MAX_WORDS."""
    merged: list[tuple[list[str], list[Block]]] = []
    for chunk_path, chunk in chunks:
        words = sum(b.words for b in chunk)
        if merged and words < MIN_WORDS:
            prev_path, prev = merged[-1]
            if sum(b.words for b in prev) + words <= HARD_MAX_WORDS:
                heading = [Block(chunk_path[-1], len(chunk_path) - 1)] if chunk_path != prev_path else []
                merged[-1] = (prev_path, prev + heading + chunk)
                continue
        merged.append((chunk_path, chunk))
    return merged


def topic_passages(topic: str) -> list[Passage]:
    """Cut one pydoc topic into passages.

    The title is the heading path where the passage starts, followed by " / <heading>" for every heading that occurs
    inside the passage (short sections are merged with their neighbours, see ``pack``).
    """
    blocks = parse_blocks(pydoc_topics.topics[topic])
    passages = []
    for n, (path, chunk) in enumerate(pack(blocks), start=1):
        text = textwrap.dedent("\n\n".join(b.text for b in chunk)).strip("\n")
        title = " / ".join([" > ".join(path)] + [b.text for b in chunk if b.level is not None])
        passages.append(Passage(f"{topic}-{n}", title, text))
    return passages


def build_corpus(topics: tuple[str, ...] = TOPICS) -> list[Passage]:
    return [p for topic in sorted(topics) for p in topic_passages(topic)]


def squash(text: str) -> str:
    return " ".join(text.split())


def find_passage(corpus: list[Passage], topic: str, anchor: str) -> str:
    """Return the id of the single passage of ``topic`` containing ``anchor`` (whitespace-insensitive)."""
    needle = squash(anchor)
    hits = [p.id for p in corpus if p.id.rsplit("-", 1)[0] == topic and needle in squash(p.text)]
    if len(hits) != 1:
        raise ValueError(f"anchor {anchor!r} in topic {topic!r} matches {len(hits)} passages: {hits}")
    return hits[0]


def build_qrels(corpus: list[Passage], questions: tuple[Question, ...]) -> list[tuple[str, str]]:
    """Resolve every question's anchors to passage ids; report all broken anchors at once."""
    qrels: list[tuple[str, str]] = []
    errors: list[str] = []
    for qid, _text, anchors in questions:
        ids: set[str] = set()
        for topic, anchor in anchors:
            try:
                ids.add(find_passage(corpus, topic, anchor))
            except ValueError as exc:
                errors.append(f"{qid}: {exc}")
        if not 1 <= len(ids) <= 4:
            errors.append(f"{qid}: {len(ids)} relevant passages (need 1 to 4)")
        qrels.extend((qid, pid) for pid in sorted(ids, key=passage_sort_key))
    if errors:
        raise ValueError("\n".join(errors))
    return qrels


def passage_sort_key(pid: str) -> tuple[str, int]:
    topic, n = pid.rsplit("-", 1)
    return topic, int(n)


def render(corpus: list[Passage], questions: tuple[Question, ...]) -> dict[str, str]:
    """Return {relative path: file content} for the three output files."""
    qids = [q[0] for q in questions]
    if len(set(qids)) != len(qids) or qids != sorted(qids):
        raise ValueError("question ids must be unique and sorted")

    def jsonl(rows: list[dict[str, str]]) -> str:
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)

    corpus_rows = [{"_id": p.id, "title": p.title, "text": p.text} for p in corpus]
    query_rows = [{"_id": qid, "text": text} for qid, text, _ in questions]
    qrels = "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{p}\t1\n" for q, p in build_qrels(corpus, questions))
    return {"corpus.jsonl": jsonl(corpus_rows), "queries.jsonl": jsonl(query_rows), "qrels/test.tsv": qrels}


def read_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.is_file() else None


def print_stats(corpus: list[Passage], files: dict[str, str]) -> None:
    """Print corpus/qrels statistics after checking that the three files are consistent with each other."""
    words = [p.words for p in corpus]
    passage_ids = {json.loads(line)["_id"] for line in files["corpus.jsonl"].splitlines()}
    query_ids = [json.loads(line)["_id"] for line in files["queries.jsonl"].splitlines()]
    qrel_rows = [line.split("\t") for line in files["qrels/test.tsv"].splitlines()[1:]]
    per_query = dict.fromkeys(query_ids, 0)
    for qid, pid, _score in qrel_rows:
        if pid not in passage_ids or qid not in per_query:
            raise ValueError(f"qrel {qid} -> {pid} points outside the corpus or the queries")
        per_query[qid] += 1
    counts = sorted(per_query.values())
    if len(passage_ids) != len(corpus) or counts[0] < 1:
        raise ValueError("duplicate passage ids or a query without relevant passages")
    print(f"passages: {len(corpus)} from {len({p.id.rsplit('-', 1)[0] for p in corpus})} topics")
    print(f"words per passage: min {min(words)}, median {statistics.median(words)}, max {max(words)}")
    print(f"queries: {len(per_query)}, qrels: {len(qrel_rows)}, per query: min {counts[0]}, max {counts[-1]}")
    print("queries by number of relevant passages:", {n: counts.count(n) for n in sorted(set(counts))})


# ---------------------------------------------------------------------------------------------------------------------
# Hand-written questions, parsed by ``parse_questions``. A question starts with ``<id> | <text>``; lines starting with
# ``|`` continue the text; each ``- <topic> | <anchor>`` line names one relevant passage by a verbatim excerpt of it
# (whitespace-insensitive) that must match exactly one passage of that topic. Every listed passage was read and judged
# to answer the question, fully or in a necessary part. Lines starting with ``#`` are section comments.
# ---------------------------------------------------------------------------------------------------------------------
QUESTIONS_SPEC = r"""
# Functions, calls and parameters
q001 | I append to a parameter that defaults to an empty list, and items from earlier calls are still there the
     | next time I call the function. Why?
     - compound | Default parameter values are evaluated from left to right
     - calls | a mutable object such as a list or dictionary used as default value will be shared

q002 | How can I force callers to pass `timeout` by name, and what does a lone `/` in a def line mean?
     - compound | Parameters after “"*"” or

q003 | What types do the catch-all extra positional and keyword parameters of my function receive?
     - compound | it is initialized to a tuple receiving any excess positional
     - calls | that formal parameter receives a tuple containing the excess positional arguments

q004 | What causes a 'got multiple values for argument' TypeError when I call a function?
     - calls | If the slot is already filled, a "TypeError" exception is raised
     - calls | TypeError: f() got multiple values for keyword argument 'a'
     - calls | If a parameter matching a key has already been given a value

q005 | Can I spread a dictionary into a function call with ** if its keys are integers?
     - calls | When "**expression" is used, each key in this mapping must be a string

q006 | With two decorators stacked on one function, which one is applied first?
     - compound | Multiple decorators are applied in nested fashion

q007 | Why does `key=lambda x: y = x + 1` fail to compile? What is allowed inside an inline anonymous function?
     - lambda | Note that functions created with lambda expressions cannot contain
     - compound | allows the execution of multiple statements and annotations

q008 | My method's return annotation names the class that is being defined and I get a NameError at import time.
     | How can I delay evaluating it?
     - compound | annotations are preserved as strings at runtime

q009 | When I call obj.method(5), how does the function end up receiving obj as its first argument?
     - typesmethods | you get a special object: a *bound method*
     - calls | an argument list that is one longer than the argument list of the call

q010 | Can instances of my class be invoked with parentheses like a function, e.g. `scorer(x)`?
     - specialnames | Called when the instance is “called” as a function
     - calls | The class must define a "__call__()" method; the effect is then the

# Scoping and name binding
q011 | I build a list of lambdas in a for loop and every one of them returns the value from the last iteration.
     | Why?
     - execmodel | Name resolution of free variables occurs at runtime, not at compile

q012 | Reading a module-level counter inside my function works, but once I add `counter += 1` further down, the
     | first read fails with UnboundLocalError. Why?
     - execmodel | an "UnboundLocalError" exception is raised
     - execmodel | If a name binding operation occurs anywhere within a code block
     - global | It would be impossible to assign to a global

q013 | In a nested helper function I want to update a counter that lives in the outer function, not in the module.
     | How?
     - nonlocal | The statement allows encapsulated code to rebind variables outside of the local scope
     - execmodel | causes corresponding names to refer to previously bound variables in the nearest enclosing

q014 | Inside a method I refer to a class-level constant by its bare name and get NameError. Why isn't it visible
     | there?
     - specialnames | methods defined inside the class still cannot see names defined at the
     - execmodel | The scope of names defined in a class block is limited to the class block

q015 | A generator expression in my class body that uses another class attribute raises NameError, although the
     | same line works at module level. Why?
     - execmodel | this includes comprehensions and generator expressions since they are

q016 | After my loop finishes, can I still use the loop variable, and what value does it hold if I left the loop
     | early?
     - compound | Names in the target list are not deleted when the loop is finished
     - break | the loop control target keeps its current value

q017 | I set `self.__token` in my class, but reading `obj.__token` from outside raises AttributeError. Where did
     | the attribute go?
     - atom-identifiers | Private name mangling
     - identifiers | Class-private names. Names in this category

q018 | Which names does `from mymodule import *` actually bring in, and how can the module restrict that list?
     - import | The *public names* defined by a module are determined
     - identifiers | Not imported by "from module import *"
     - execmodel | binds all names defined in the imported module, except those beginning with an

q019 | I run a code string through exec() that declares a variable global, but it doesn't change how my enclosing
     | function treats that name. Is that expected?
     - global | is a directive to the parser

# Exceptions
q020 | My function returns normally even though the try body raised ZeroDivisionError; the cleanup block contains
     | a return. Why did the error vanish?
     - compound | the saved exception is discarded
     - compound | a "return" statement executed in the "finally" clause will always be the

q021 | I named the caught error `e` in my handler, but using `e` after the handler block gives NameError. Why?
     - compound | it is cleared at the end of the "except" clause
     - compound | This means the exception must be assigned to a different name to be

q022 | How do I get rid of the 'During handling of the above exception, another exception occurred' part when I
     | convert one error into another?
     - raise | Exception chaining can be explicitly suppressed

q023 | What's the difference between raising a new error with the original as its cause and simply raising a new
     | error inside the handler?
     - raise | it will be attached to the raised exception as the "__cause__" attribute
     - raise | The previous exception is then attached as the new exception

q024 | What does a `raise` with nothing after it do, and why would I get 'No active exception to reraise'?
     - raise | re-raises the exception that is currently being handled

q025 | A task group failed with several errors at once. How do I handle only the OSErrors and let the rest
     | propagate?
     - compound | multiple "except*" clauses can execute
     - compound | Any remaining exceptions that were not handled by any "except*" clause

q026 | What's the point of putting code in the else part of a try statement instead of at the end of the try body?
     - compound | Exceptions in the "else" clause are not handled by the preceding "except" clauses

q027 | How do I handle ValueError and KeyError with one and the same handler?
     - compound | or a tuple containing an item that is the class or a non-virtual base class

q028 | Inside a bare `except:` block, how can I get at the exception object currently being handled?
     - compound | by calling "sys.exception()"

q029 | My input validation checks silently stopped working in production, where Python runs with -O. What
     | happened?
     - assert | when optimization is requested (command line option "-O")

# Context managers
q030 | What do I need to implement so that instances of my own class can be used after the `with` keyword?
     - specialnames | Enter the runtime context related to this object
     - compound | "__enter__()" method is invoked

q031 | My context manager's exit method returns True, and now errors raised inside the block just disappear. Is
     | that intended?
     - compound | If the return value was true, the exception is suppressed
     - specialnames | it should return a true value. Otherwise, the exception will be processed

q032 | How do I open an input file and an output file in a single with statement without nesting, maybe spread
     | over several lines?
     - compound | With more than one item, the context managers are processed as if

q033 | Is it safe to let the garbage collector close my files when the file object goes out of scope?
     - objects | so you should always close files explicitly
     - objects | Programs are strongly recommended to explicitly close such objects

# Generators and coroutines
q034 | If a generator function ends with `return 42`, where does the 42 go?
     - return | becomes the "StopIteration.value" attribute

q035 | I added a line that hands a value back in the middle of my function, and now calling the function no longer
     | runs its body but gives me some object. Why?
     - yield | Using yield in a function definition is sufficient

q036 | Is a function declared with `async def` still a coroutine if it never awaits anything, and where am I
     | allowed to use await?
     - compound | are always coroutine functions, even if they do not contain

q037 | What methods does an object need so that I can loop over it with `async for`?
     - compound | An *asynchronous iterable* provides an "__aiter__" method

# Data model: construction, representation, comparison, hashing
q038 | I'm subclassing int and setting the value in my initializer has no effect. Where should that customization
     | go?
     - specialnames | is intended mainly to allow subclasses of immutable
     - specialnames | Called to create a new instance of class *cls*

q039 | Why do I get a TypeError when my constructor method ends with `return self`?
     - specialnames | no non-"None" value may be returned by "__init__()"

q040 | I wrote a cleanup method that should run when my object goes away, but `del obj` didn't trigger it. Why
     | not?
     - specialnames | directly call "x.__del__()"
     - objects | Do not depend on immediate finalization of objects

q041 | Which method should I override so that print(obj) shows something friendly, and which one is used when I
     | inspect the object in the REPL or for debugging?
     - specialnames | to compute the “official” string representation of an object
     - specialnames | to compute the “informal” or nicely printable string

q042 | After adding an equality method to my class, putting its instances into a set fails with 'unhashable type'.
     | What happened?
     - specialnames | will have its "__hash__()" implicitly set to "None"
     - specialnames | if it defines "__eq__()" but not "__hash__()", its instances will not be usable

q043 | I implemented less-than and equality on my class, but `a <= b` still raises TypeError. Doesn't Python
     | derive it?
     - specialnames | does not imply "x<=y"

q044 | My custom collection class is always truthy in `if` checks, even when it holds nothing. How does Python
     | decide?
     - truth | By default, an object is considered true unless its class defines
     - specialnames | Called to implement truth value testing and the built-in operation
     - specialnames | method returns zero is considered to be false in a Boolean context

q045 | My Vector class supports `v * 2`, but `2 * v` raises TypeError. What am I missing?
     - specialnames | with reflected (swapped) operands

q046 | How can `+=` on my own container class modify the object in place instead of building a new one?
     - specialnames | These methods should attempt to do the operation in-place
     - assignment | the actual operation is performed *in-place*

q047 | My integer-like wrapper type can't be used as a list index or passed to hex(). What should it implement?
     - specialnames | Python needs to losslessly convert the numeric object to an integer

q048 | How can my Money class support its own codes after the colon in f-strings, like f'{amount:eur}'?
     - specialnames | The interpretation of the *format_spec* argument is up to the type

# Data model: attributes, descriptors, slots
q049 | Can my class compute a value on the fly when code reads an attribute that doesn't exist, instead of failing
     | with AttributeError?
     - specialnames | Called when the default attribute access fails with an
     - attribute-references | that method is called as a fallback

q050 | I overrode the hook that intercepts every attribute read, and now the program dies with 'maximum recursion
     | depth exceeded'. How should I read self's attributes inside it?
     - specialnames | In order to avoid infinite recursion in this method

q051 | Why can I shadow a method by assigning to the same name on an instance, while assigning to a property name
     | still goes through the property?
     - specialnames | non-data descriptors can be overridden by instances
     - specialnames | Accordingly, instances cannot override the behavior of a property

q052 | I'm writing a reusable validator object stored as a class attribute. How can it find out which attribute
     | name it was stored under?
     - specialnames | Automatically called at the time the owning class *owner* is
     - specialnames | Those "__set_name__" methods are called with the class being

q053 | How do I stop code from adding arbitrary new attributes to my instances, and save memory per object?
     - specialnames | deny the creation of "__dict__" and *__weakref__*
     - specialnames | instances cannot be assigned new variables not listed

q054 | I declared my fields in __slots__ and tried to give one a default with a class-level assignment of the same
     | name, and Python complains. Why?
     - specialnames | class attributes cannot be used to set default values for instance variables

q055 | I attached a length function to an instance at runtime, but len() still says the object has no len(). Why
     | is it ignored?
     - specialnames | are only guaranteed to work correctly if defined on an object

q056 | How can a module lazily create, or warn about, a deprecated name when someone accesses `mymodule.old_name`?
     - specialnames | can be also used to customize access to module attributes

q057 | I want a dict subclass that returns 0 for keys it doesn't have instead of raising KeyError. Which hook does
     | that?
     - typesmapping | If a subclass of dict defines a method
     - specialnames | to implement "self[key]" for dict subclasses when key is not in the dictionary

q058 | What does `x in obj` do for my own class if I never wrote a membership method?
     - comparisons | For user-defined classes which do not define "__contains__()" but do
     - specialnames | the membership test first tries iteration via

q059 | When someone writes `grid[1:3, ::2]` on my class, what exactly does my item-access method receive?
     - slicings | If the slice list contains at least one comma, the key is a tuple
     - specialnames | Missing slice items are always filled in with "None"

# Class creation and metaclasses
q060 | How can a base class automatically register every subclass in a plugin registry without writing a
     | metaclass?
     - specialnames | This method is called whenever the containing class is subclassed

q061 | I inherit from two classes that use different metaclasses, and class creation fails with a 'metaclass
     | conflict' error. How does Python pick the metaclass?
     - specialnames | The most derived metaclass is selected from the explicitly specified

q062 | Can a metaclass hand the class body a custom mapping object, so it sees every name as it's defined?
     - specialnames | it is called as "namespace = metaclass.__prepare__(name, bases,

q063 | How can `isinstance(x, MyInterface)` return True for objects whose classes never inherited from
     | MyInterface?
     - specialnames | If defined, called to implement "isinstance(instance, class)"

q064 | How can I let users write `MyContainer[int]` in type hints without making my instances indexable?
     - specialnames | A class can *generally* only be parameterized if it defines the
     - specialnames | or inherit from "typing.Generic", which has its

q065 | How does calling super() with no arguments know which class it is in?
     - specialnames | is an implicit closure reference created by the compiler

q066 | How can I see the order in which Python searches the base classes for a method?
     - specialattrs | This attribute is a tuple of classes that are considered when

q067 | Every instance of my class seems to share the same list that I declared right under the class line. Why?
     - compound | Variables defined in the class definition are class attributes; they are shared by instances

q068 | I increment a counter with `self.count += 1` where `count` is defined on the class, but the class's counter
     | never changes. Why?
     - assignment | writes inst.x as 4 leaving Cls.x as 3
     - assignment | the same caveat about class and instance attributes applies

# Pattern matching
q069 | Why does `case RED:` in my match statement catch every value and complain that it makes the remaining
     | patterns unreachable?
     - compound | Capture patterns always succeed
     - compound | The dotted name in the pattern is looked up using standard Python name

q070 | `case Point(x, y):` raises TypeError saying Point accepts 0 positional sub-patterns. How do I fix it?
     - specialnames | the class needs to define a *__match_args__*
     - compound | positional pattern "i" is converted to a keyword

q071 | Does a sequence pattern in a case clause match a plain string character by character?
     - compound | If the subject value is an instance of "str", "bytes" or
     - compound | Subject values of type "str", "bytes", and "bytearray" do not

q072 | Does a dictionary pattern in a case clause fail if the dict has extra keys that I didn't list?
     - compound | If every key given in the mapping pattern is present in the subject

q073 | Are the variables bound in a case clause still available after the whole match block has finished?
     - compound | Name bindings made during a successful pattern match outlive the

q074 | How do I add an extra condition to a case clause beyond the shape of the data?
     - compound | A "guard" (which is part of the "case") must succeed

# Operators, comparisons, numbers
q075 | Why does `-3 ** 2` give -9 instead of 9?
     - power | results in "-1"
     - operator-summary | | "+x", "-x", "~x" |

q076 | Is `0 < x < 10` evaluated like in C, comparing a boolean with 10?
     - comparisons | have the interpretation that is conventional in mathematics
     - comparisons | is equivalent to "a op1 b and b op2 c and ... y

q077 | Why does `name or 'anonymous'` give me a string rather than True or False?
     - booleans | return the last evaluated argument
     - booleans | The expression "x or y" first evaluates *x*
     - truth | always return one of their operands

q078 | Why does `a is b` say True for two small equal numbers but False for two lists with the same contents?
     - objects | after "a = 1; b = 1"
     - comparisons | "x is y" is true if and only if *x* and *y* are the same object
     - operator-summary | you may notice seemingly unusual behaviour

q079 | Should I check for a missing value with `x == None`, or is there a better way?
     - comparisons | comparisons for singletons should always be done with "is"

q080 | Why does `x == x` return False when x came from float('nan')?
     - comparisons | not-a-number values are not equal to themselves

q081 | Why does integer division of -7 by 2 give -4 rather than -3, and the remainder come out positive?
     - binary | function applied to the result
     - binary | Floor division and modulo are also

q082 | Why does `~5` give -6? I expected the bits to just be flipped.
     - unary | The bitwise inversion of "x" is defined as

q083 | Does `not a == b` mean `(not a) == b` or `not (a == b)`?
     - operator-summary | | "not x" | Boolean NOT |
     - booleans | not_test ::= comparison | "not" not_test

q084 | Why does `x > 1 & y > 2` behave strangely? I thought & would combine the two conditions.
     - comparisons | which is lower than that of any arithmetic, shifting or bitwise
     - operator-summary | | "&" | Bitwise AND |

q085 | Is `n >> 3` the same as dividing by 8, including for negative numbers?
     - shifting | A right shift by *n* bits is defined as floor division

q086 | What is the @ operator between two arrays, and does it work on plain lists?
     - binary | operator is intended to be used for matrix
     - specialnames | object.__matmul__(self, other)

q087 | If I add an int and a complex number, what type comes out?
     - conversions | If either argument is a complex number, the other is converted to

q088 | Why is `x = 0755` rejected, and how do I write an octal permission value?
     - integers | leading zeros in a non-zero decimal number are not allowed

q089 | Can I write a million with visual separators in my source code so the number is easier to read?
     - integers | They can be used to group digits for enhanced readability
     - floating | underscores are supported for digit grouping

q090 | Is `if my_list:` a reliable way to check that a list is non-empty? What else counts as false?
     - truth | empty sequences and collections
     - booleans | the following values are interpreted as false

# Sequences, slicing, assignment
q091 | I made a 3x3 grid with `[[0] * 3] * 3`, and setting one cell changes the same cell in every row. Why?
     - typesseq | items in the sequence *s* are not copied; they are referenced multiple times

q092 | How do slices with a negative step like `s[::-1]` decide where to start and stop?
     - typesseq | When *k* is negative, *i* and *j* are

q093 | Why does `items[5:100]` on a short list quietly work while `items[100]` raises IndexError?
     - typesseq | If *i* or *j* is greater than "len(s)", use "len(s)"
     - subscriptions | The resulting value must be a nonnegative integer less

q094 | Can I replace two elements of a list with five new ones in a single assignment?
     - assignment | The length of the slice may be different from the length of the assigned sequence
     - typesseq | replaced by the contents of the

q095 | In `i, x[i] = 1, 2`, which element of x gets updated?
     - assignment | i is updated, then x[i] is updated

q096 | How do I put the first element of a sequence into one name and all the others into a list in a single
     | assignment?
     - assignment | A list of the remaining items in the iterable is then

q097 | Why is `(5)` just an int and not a tuple, and how do I write a tuple with one item?
     - exprlists | The trailing comma is required only to create a single tuple
     - typesseq | Using a trailing comma for a singleton tuple
     - typesseq | it is actually the comma which makes a tuple

q098 | Why does `sorted_names = names.sort()` leave me with None?
     - typesseq | it does not return the sorted sequence

q099 | If I sort records by salary and then by department, do people in the same department keep their salary
     | order?
     - typesseq | is guaranteed to be stable

q100 | Building a long string with += in a loop is really slow. What should I do instead?
     - typesseq | will have a quadratic runtime cost in the total sequence length
     - typesseq | if concatenating "tuple" objects, extend a "list" instead

q101 | Does `range(10**9)` allocate a billion integers in memory?
     - typesseq | will always take the same (small) amount of

q102 | A tuple is supposed to be immutable, yet I just changed a list stored inside one. Is the tuple still
     | immutable, and can I still use it as a dict key?
     - objects | The value of an immutable container object that contains a reference to a mutable
     - objects | if an immutable container (like a tuple) contains a reference to a mutable object
     - typesseq | Attempting to hash an immutable sequence that contains unhashable

# Dictionaries
q103 | Can I rely on a dict giving back its keys in the order I inserted them?
     - typesmapping | Dictionaries preserve insertion order
     - typesmapping | This behavior was an implementation detail of CPython from 3.6

q104 | What's the idiomatic way to combine two dictionaries into a new one where the second wins on conflicting
     | keys?
     - typesmapping | Create a new dictionary with the merged keys and values
     - dict | Later values replace values already set by earlier dict

q105 | I initialised a dictionary of empty lists from a list of names in one call, and now appending to one entry
     | changes all of them. Why?
     - typesmapping | All of the values refer to just a

q106 | Why do I get 'dictionary changed size during iteration' when I delete entries inside a loop over the keys?
     - typesmapping | Iterating views while adding or deleting entries in the dictionary

q107 | Why does `{1: 'a', True: 'b'}` end up with only one entry?
     - typesmapping | Values that compare equal (such as

q108 | How can I find which keys two dictionaries have in common without converting them to sets first?
     - typesmapping | Keys views are set-like since their entries are unique
     - typesmapping | keys & {'eggs', 'bacon', 'salad'}

q109 | If my dict comprehension produces the same key twice, which value ends up in the result?
     - dict | the last value (textually rightmost in the display) stored for a given key value prevails

# Strings and formatting
q110 | Why is `r'C:\temp\'` a syntax error?
     - strings | a raw literal cannot end in a single backslash

q111 | Why does Python warn about an invalid escape sequence when I write '\d+' for a regex, and how do I avoid
     | it?
     - strings | all unrecognized escape sequences are left in the
     - strings | treat backslashes as literal characters

q112 | How do I show 1234567.891 as 1,234,567.89 in an f-string?
     - formatstrings | option signals the use of a comma for a thousands separator
     - formatstrings | how many digits should be displayed after the decimal point
     - formatstrings | Using the comma as a thousands separator

q113 | How do I pad an invoice number with leading zeros to six digits when formatting it?
     - formatstrings | enables sign-aware zero-padding for numeric

q114 | How do I output a literal `{` in a string that I call .format() on?
     - formatstrings | it can be escaped by doubling

q115 | How do I get the quotes around a string value to show inside a formatted message, the way the REPL shows
     | it?
     - formatstrings | Three conversion flags are currently supported
     - formatstrings | repr() shows quotes

q116 | What's the simplest way to turn 0.8636 into '86.36%' when formatting?
     - formatstrings | Percentage. Multiplies the number by 100
     - formatstrings | Expressing a percentage

q117 | How can I center a title in a 30-character line padded with asterisks?
     - formatstrings | Forces the field to be centered within the available
     - formatstrings | use '*' as a fill char

q118 | How do I print an integer in hexadecimal with the 0x in front using a format spec?
     - formatstrings | this option adds the respective prefix
     - formatstrings | with 0x, 0o, or 0b as prefix

q119 | The column width of my table is only known at runtime. Can I put a variable inside the format spec itself?
     - formatstrings | can also include nested replacement fields
     - formatstrings | Nesting arguments and more complex examples

# Imports
q120 | After `import os.path`, why is the name `os` available but not `path`?
     - import | the name of the top level package that contains the module is bound

q121 | From inside a subpackage, how do I import a module from a sibling package without spelling out the
     | top-level package name?
     - import | it is possible to make a relative import within

q122 | Why do I get a SyntaxError when my `from __future__` line comes after my other imports?
     - import | A future statement must appear near the top of the module

q123 | `from package import name` works even though `name` is a submodule that the package's __init__ never
     | imported. How?
     - import | if not, attempt to import a submodule with that name
"""


def parse_questions(spec: str = QUESTIONS_SPEC) -> tuple[Question, ...]:
    """Parse QUESTIONS_SPEC into (query id, question, ((topic, anchor), ...)) tuples."""
    questions: list[tuple[str, list[str], list[tuple[str, str]]]] = []
    for raw in spec.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.partition(" | ")
        if line.startswith("- "):
            questions[-1][2].append((head[2:], rest))
        elif line.startswith("| "):
            questions[-1][1].append(line[2:])
        else:
            questions.append((head, [rest], []))
    return tuple((qid, " ".join(text), tuple(anchors)) for qid, text, anchors in questions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    if sys.version_info[:3] != BUILT_WITH:
        built = ".".join(map(str, BUILT_WITH))
        print(f"warning: the data was built with Python {built}, this is {sys.version.split()[0]}", file=sys.stderr)

    corpus = build_corpus()
    files = render(corpus, parse_questions())
    print_stats(corpus, files)
    if args.check:
        stale = [name for name, text in files.items() if read_text(DATA_DIR / name) != text]
        if stale:
            print(f"out of date: {', '.join(stale)}", file=sys.stderr)
            return 1
        print("up to date")
        return 0
    for name, text in files.items():
        path = DATA_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
    print(f"wrote {', '.join(files)} to {DATA_DIR.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
