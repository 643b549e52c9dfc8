"""The browser snippet stays small, and the committed minified file matches its source."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from bench.snippet_size import BUDGET, SNIPPET, sizes

STATIC = SNIPPET.parent
TERSER = STATIC / "node_modules" / ".bin" / "terser"


def test_served_snippet_fits_the_gzip_budget() -> None:
    # given the minified snippet that the edge serves
    raw, gz = sizes(SNIPPET)
    # then gzip -9 keeps it within the hard budget
    assert raw > 0
    assert gz <= BUDGET, f"static/rokt-edge.js is {gz:,} bytes gzip -9, over the {BUDGET:,} budget"


def test_minified_snippet_is_built_from_the_current_source() -> None:
    # given the minifier installed by scripts/build-snippet (npm ci in static/)
    node = shutil.which("node")
    if node is None or not TERSER.exists():
        pytest.skip("node or static/node_modules missing: run scripts/build-snippet to check this")
    # when the source is minified again with the committed settings
    result = subprocess.run(
        [node, str(TERSER), "rokt-edge.src.js", "--config-file", "terser.json"],
        cwd=STATIC,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # then it is exactly the committed static/rokt-edge.js
    assert result.stdout.strip() == SNIPPET.read_text().strip(), (
        "static/rokt-edge.js is stale: run scripts/build-snippet and commit the result"
    )
