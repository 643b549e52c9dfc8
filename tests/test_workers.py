"""`rokt-edge serve --workers N`: several serving processes on one port, for a shared store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, run_cli
from tests.fake_capi import FakeCapi
from tests.test_fault_injection import WRITE_KEY, edge_env, free_port, order, wait_for


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


def test_two_workers_on_postgresql_share_the_port_and_stop_together(
    tmp_path: Path,
    fleet_database: str,
) -> None:
    with FakeCapi() as fake:
        env = edge_env(tmp_path / "unused.db", fake) | {"ROKT_EDGE_DATABASE_URL": fleet_database}
        port = free_port()
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
        log = tmp_path / "edge.log"
        with log.open("ab") as stderr:
            serve = ["serve", "--port", str(port), "--workers", "2"]
            process = subprocess.Popen(
                [sys.executable, "-m", "edge", *serve],
                env=inherited | env | {"PYTHONPATH": str(ROOT)},
                stderr=stderr,
            )
        try:
            # Given `rokt-edge serve --workers 2` on a PostgreSQL store
            url = f"http://127.0.0.1:{port}"

            def up() -> bool:
                with contextlib.suppress(httpx.HTTPError):
                    return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
                return False

            wait_for(up, f"the workers to start (log: {log})")

            # Then orders sent to the port reach Rokt, and both workers are alive on the store
            orders = [order("workers", n) for n in range(20)]
            for start in range(0, 20, 2):
                answer = httpx.post(
                    f"{url}/v1/batch", json={"batch": orders[start : start + 2]},
                    auth=(WRITE_KEY, ""),
                )  # fmt: skip
                assert answer.status_code == 200, answer.text
            wanted = {event["messageId"] for event in orders}
            wait_for(lambda: wanted <= set(fake.accepted_message_ids()), "the orders at Rokt")

            def alive() -> list[int]:
                status = run_cli("status", "--json", env=env)
                return [p["pid"] for p in json.loads(status.stdout)["processes"] if p["alive"]]

            wait_for(lambda: len(alive()) == 2, "two workers alive on the store")
            assert process.pid not in alive()  # the supervisor serves nothing itself

            # and SIGTERM stops them all
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
            for pid in alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 0)
                    raise AssertionError(f"worker {pid} outlived the supervisor")
        finally:
            if process.poll() is None:
                process.kill()
