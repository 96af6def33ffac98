"""The one writer of benchmarks/RESULTS.md: each benchmark owns one ``## ...`` section and replaces only it."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def write_section(section: str, results: Path = RESULTS) -> None:
    """Replace the section whose ``## `` title is ``section``'s first line, in place, or append it."""
    title = section.splitlines()[0]
    existing = results.read_text(encoding="utf8") if results.exists() else "# Benchmark results\n"
    start = existing.find(title)
    if start == -1:
        updated = existing.rstrip("\n") + "\n\n" + section
    else:
        following = existing.find("\n## ", start + len(title))
        updated = existing[:start] + section.rstrip("\n") + "\n" + ("" if following == -1 else existing[following:])
    results.write_text(updated.rstrip("\n") + "\n", encoding="utf8")
