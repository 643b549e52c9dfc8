"""Print the raw and gzip -9 sizes of the served browser snippet, static/rokt-edge.js.

    python bench/snippet_size.py [FILE]

Size is the snippet's first design goal: tests/test_snippet_size.py fails above BUDGET.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

SNIPPET = Path(__file__).resolve().parent.parent / "static" / "rokt-edge.js"
BUDGET = 1150  # gzip -9 bytes: a hard limit, enforced in CI (1,500 until the goal was met)
GOAL = 1100  # gzip -9 bytes: what we aim for


def sizes(path: Path = SNIPPET) -> tuple[int, int]:
    """(raw bytes, gzip -9 bytes) of the file at path."""
    data = path.read_bytes()
    return len(data), len(gzip.compress(data, compresslevel=9, mtime=0))


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else SNIPPET
    raw, gz = sizes(path)
    print(
        f"{path.name}: {raw:,} bytes raw, {gz:,} bytes gzip -9 (budget {BUDGET:,}, goal {GOAL:,})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
