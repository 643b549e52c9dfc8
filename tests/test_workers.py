"""`rokt-edge serve --workers N`: several serving processes on one port, for a shared store."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_cli


def test_several_workers_on_a_sqlite_store_are_refused_saying_what_they_need(
    tmp_path: Path,
) -> None:
    env = {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'edge.db'}"}
    result = run_cli("serve", "--workers", "2", "--port", "0", env=env)
    assert result.returncode == 2
    assert "several serving processes need a PostgreSQL store" in result.stderr
    assert not (tmp_path / "edge.db").exists()  # refused before anything was created


def test_a_worker_count_that_is_not_one_to_64_is_refused() -> None:
    for given in ("0", "many", "65"):
        result = run_cli("serve", "--workers", given)
        assert result.returncode == 2
        assert f"a whole number from 1 to 64, not {given!r}" in result.stderr
