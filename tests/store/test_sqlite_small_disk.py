"""A full disk: the store refuses while it is full, `status` still reads it, and once space is
freed it writes again by itself, its log truncated when idle.

The volume is a real tmpfs of 12 MiB (a real ENOSPC, not a simulation), mounted in a user and
mount namespace of the test's own (`unshare`), where the story runs (`tests.store.small_disk`).
A machine that forbids unprivileged namespaces skips it, saying so; under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.conftest import ROOT

VOLUME = "12m"
MiB = 1 << 20


def unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: this test must run)", pytrace=False)
    pytest.skip(reason)


def on_a_small_volume(mount: Path) -> dict[str, Any]:
    """Run the story on a fresh tmpfs mounted at `mount`, seen only by its own processes."""
    unshare = shutil.which("unshare")
    if unshare is None:
        unavailable("no unshare(1) to mount a small tmpfs")
    script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && exec "$3" -m tests.store.small_disk "$2"'
    done = subprocess.run(
        [unshare, "--user", "--map-root-user", "--mount", "sh", "-c", script, "sh", VOLUME,
         str(mount), sys.executable],
        capture_output=True, text=True, cwd=ROOT, timeout=120, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    if done.returncode and not done.stdout and ("unshare" in done.stderr or "mount" in done.stderr):
        unavailable(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_a_full_volume_refuses_then_writes_again_by_itself_once_space_is_freed(
    tmp_path: Path,
) -> None:
    # Given a store on a 12 MiB volume, beside 2 MiB of other files
    # When something else fills the volume to the last byte, `status` opens the store; then
    # events are stored until the volume is full, and the operator deletes the other files
    seen = on_a_small_volume(tmp_path)

    # Then `status` could open the full store and read it
    assert seen.get("status_error") is None
    assert seen["status_pending"] == 50
    # and the store refused while full (intake answers 503, the client keeps the events)
    assert "database or disk is full" in seen["refused"]
    # and most of the volume held data, not log: the log is sized to its 4 MiB checkpoint
    assert seen["stored"] > 50
    assert seen["wal_when_full"] < 6 * MiB
    # and once space was freed the same store wrote again, without a restart
    assert seen.get("written_again_after_tries") is not None
    assert seen["pending"] == seen["stored"] + 50
    # and, idle, its log gave all its space back
    assert seen["wal_when_idle"] == 0
