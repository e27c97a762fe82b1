"""Write a benchmark's results into its own section of docs/benchmarks.md.

Each benchmark owns the text between ``<!-- bench:NAME:start -->`` and
``<!-- bench:NAME:end -->``; the rest of the file (the prose around the numbers) is kept.
"""

from __future__ import annotations

import pathlib

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def update_section(name: str, text: str) -> None:
    """Replace section `name` of docs/benchmarks.md with `text` (appending it if missing)."""
    start, end = f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    block = f"{start}\n{text}\n{end}"
    if start in doc and end in doc:
        before, rest = doc.split(start, 1)
        doc = before + block + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + f"\n\n## {name}\n\n{block}\n"
    DOC.write_text(doc)
    print(f"updated {DOC} section {name}")
