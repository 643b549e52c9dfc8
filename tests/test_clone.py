"""A clone of this repository alone holds everything its tests read: a new user's clone, with
no other folder beside it, collects the whole suite as CI's does (it once stopped at collection,
reading files from ../shared)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import ROOT


def needs(reason: str) -> NoReturn:
    """Skip saying why; under CI=true, where git and the checkout must be there, fail."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


def test_a_clone_of_this_repository_alone_collects_every_test(tmp_path: Path) -> None:
    git = shutil.which("git")
    if git is None:
        needs("git is not installed")
    inside = subprocess.run(
        [git, "-C", str(ROOT), "rev-parse", "--is-inside-work-tree"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if inside.stdout.strip() != "true":
        needs(f"{ROOT} is not a git checkout")

    # Given a clone of the repository's last commit, in a folder with nothing else in it
    clone = tmp_path / "alone" / "rokt-edge"
    subprocess.run(
        [git, "clone", "--quiet", "--no-local", str(ROOT), str(clone)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert sorted(path.name for path in clone.parent.iterdir()) == ["rokt-edge"]

    # When pytest collects its test suite there, with this environment's Python and packages
    env = {key: value for key, value in os.environ.items() if not key.startswith("ROKT_EDGE_")}
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    # Then every test file is collected, without an error
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " tests collected in " in summary, summary
    assert "error" not in summary, summary
    collected = int(summary.split()[0])
    assert collected > 100, summary  # the whole suite, not a corner of it
