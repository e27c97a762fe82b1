"""Run the chaos suite (tests/chaos) and record what each scenario measured.

``python -m bench.chaos`` (or ``make chaos``) runs every scenario in the private pod network,
collects the numbers each one reports (``ZEN_LEAD_CHAOS_REPORT``), prints them as a table and
rewrites the ``chaos`` section of docs/benchmarks.md. The suite's pass/fail is the point; the
table shows the margins it passed with. ``make test`` runs the same scenarios without the table.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import tempfile

from bench import report

COLUMNS = (
    ("scenario", "scenario"),
    ("worst_unrouted_seconds", "worst unrouted s"),
    ("lease_holder_changes", "holder changes"),
    ("controller_writes", "writes checked"),
)


def main() -> int:
    """Run the suite, print the table, update the doc; return pytest's exit status."""
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as out:
        path = pathlib.Path(out.name)
    env = os.environ | {"ZEN_LEAD_CHAOS_REPORT": str(path)}
    root = pathlib.Path(__file__).resolve().parent.parent
    cmd = [sys.executable, "-m", "zenlead.testing.netns", sys.executable, "-m", "pytest"]
    status = subprocess.run([*cmd, "-q", "tests/chaos"], env=env, cwd=root, check=False).returncode
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    path.unlink()
    table = render(rows)
    print(table)
    if status == 0:
        report.update_section("chaos", table)
    return status


def render(rows: list[dict[str, object]]) -> str:
    """Return a Markdown table: the common columns, then each scenario's own numbers."""
    head = "| " + " | ".join(title for _, title in COLUMNS) + " | other measurements |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    common = {key for key, _ in COLUMNS} | {"slice_versions"}
    for row in rows:
        cells = [str(row.get(key, "")) for key, _ in COLUMNS]
        extra = ", ".join(f"{k}={v}" for k, v in row.items() if k not in common)
        lines.append("| " + " | ".join(cells) + f" | {extra} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
