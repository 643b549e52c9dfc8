"""A merchant's engineer's first hour with the real command: where the store is, and no silent
surprise when it is not where a command looks, or when the port is taken.

The default store is one place whatever the working directory (`$XDG_DATA_HOME/rokt-edge/
rokt-edge.db`, `~/.local/share/…` without XDG_DATA_HOME): `status` run from another directory
than `serve` reads the same store. The commands that read or fill the service's store refuse one
that does not exist, naming where they looked, instead of creating an empty one no service reads.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, run_cli
from tests.live import wait_for

SECONDS = 30  # how long the edge may take to start here before the test fails


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def home_env(home: Path) -> dict[str, str]:
    """A user whose home is `home`, with XDG_DATA_HOME empty (as unset) and no ROKT_EDGE_
    setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
    return env | {"HOME": str(home), "XDG_DATA_HOME": "", "PYTHONPATH": str(ROOT)}


@contextlib.contextmanager
def serving(env: dict[str, str], cwd: Path, log: Path) -> Iterator[str]:
    """`rokt-edge serve` on a free loopback port, run from `cwd`, until the block ends."""
    port = free_port()
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "edge", "serve", "--port", str(port)],
            env=env, cwd=cwd, stderr=stderr, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"rokt-edge serve exited: {log.read_text()}")
        try:
            return httpx.get(url + "/healthz", timeout=SECONDS).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(answers, timeout=SECONDS)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=SECONDS)


def test_the_default_store_is_one_place_whatever_the_working_directory(tmp_path: Path) -> None:
    # Given a user with no database setting, whose data directory does not exist yet
    home, shop, elsewhere = tmp_path / "home", tmp_path / "shop", tmp_path / "elsewhere"
    for folder in (home, shop, elsewhere):
        folder.mkdir()
    env = home_env(home)
    store = home / ".local" / "share" / "rokt-edge" / "rokt-edge.db"

    # When the edge is served from one directory and takes an event
    with serving(env, cwd=shop, log=tmp_path / "serve.log") as url:
        answer = httpx.post(url + "/e", json={"type": "page", "messageId": "m-1"}, timeout=30)
        assert answer.status_code in (200, 202, 204), answer.text

    # Then its store is in the XDG data directory, in a folder made private, not in the shop
    assert store.is_file()
    assert oct(stat.S_IMODE(store.parent.stat().st_mode)) == oct(0o700)
    assert not list(shop.iterdir())

    # and `rokt-edge status` run from another directory reads that same store, named in full
    status = run_cli("status", "--json", env=env, cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert status.stdout.count(f'"store": "sqlite:///{store}"') == 1
    assert not list(elsewhere.iterdir())


def test_xdg_data_home_moves_the_default_store(tmp_path: Path) -> None:
    # Given XDG_DATA_HOME set, and no store there yet
    env = home_env(tmp_path / "home") | {"XDG_DATA_HOME": str(tmp_path / "data")}

    # When `rokt-edge status` looks for the store
    result = run_cli("status", env=env, cwd=tmp_path)

    # Then it names the default under XDG_DATA_HOME, and creates nothing
    expected = tmp_path / "data" / "rokt-edge" / "rokt-edge.db"
    assert result.returncode == 2
    assert f"no store at {expected} (ROKT_EDGE_DATABASE_URL's default)" in result.stderr
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    "command",
    [
        ["status"],
        ["status", "--json"],
        ["replay"],
        ["replay", "--dry-run"],
        ["recent"],
        ["import", "orders.csv", "--map", "orders.toml"],
    ],
    ids=" ".join,
)
def test_a_command_refuses_a_store_that_does_not_exist_naming_where_it_looked(
    tmp_path: Path, command: list[str]
) -> None:
    # Given a database URL naming a file that does not exist (a typo, another machine's path)
    (tmp_path / "orders.csv").write_text("order_id,email\n1,a@example.com\n")
    (tmp_path / "orders.toml").write_text(
        '[user_identities]\nemail = "email"\n[event]\nsource_message_id = "order_id"\n'
        '[custom_attributes]\nconversiontype = { value = "purchase" }\n'
    )
    database = tmp_path / "typo.db"
    env = {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}"}
    if command == ["replay", "--dry-run"]:
        env |= {"ROKT_EDGE_API_KEY": "key", "ROKT_EDGE_API_SECRET": "secret"}

    # When the command runs
    result = run_cli(*command, env=env, cwd=tmp_path)

    # Then it refuses, naming the path and the setting, and creates no empty store
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no store at {database} (ROKT_EDGE_DATABASE_URL = 'sqlite:///{database}')" in (
        result.stderr
    )
    assert "`rokt-edge serve` creates it" in result.stderr
    assert not database.exists()
    assert result.stdout == ""


def test_a_relative_database_url_is_resolved_once_and_shown_absolute(tmp_path: Path) -> None:
    # Given a relative URL, from a directory where no store is
    env = {"ROKT_EDGE_DATABASE_URL": "sqlite:///edge.db"}

    # When `rokt-edge status` runs there
    result = run_cli("status", env=env, cwd=tmp_path)

    # Then the message shows the path it resolved, in full
    assert result.returncode == 2
    assert f"no store at {tmp_path / 'edge.db'} (ROKT_EDGE_DATABASE_URL = " in result.stderr
    assert f"'sqlite:///{tmp_path / 'edge.db'}'" in result.stderr


def test_a_database_in_a_folder_that_does_not_exist_stops_start_up(tmp_path: Path) -> None:
    # Given a database URL in a folder that does not exist
    database = tmp_path / "no" / "such" / "dir" / "x.db"
    env = {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}"}

    # When the edge is started
    result = run_cli("serve", "--port", str(free_port()), env=env, cwd=tmp_path)

    # Then it stops before serving, naming the setting and the folder, and creates nothing
    assert result.returncode == 2, result.stderr
    assert f"rokt-edge: ROKT_EDGE_DATABASE_URL = 'sqlite:///{database}'" in result.stderr
    assert f"the folder {database.parent} does not exist" in result.stderr
    assert "rokt-edge ready" not in result.stderr
    assert not (tmp_path / "no").exists()


def test_serve_on_a_port_in_use_says_so_and_never_says_ready(tmp_path: Path) -> None:
    # Given another process listening on the port
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        env = {"ROKT_EDGE_DATABASE_URL": f"sqlite:///{tmp_path / 'edge.db'}"}

        # When the edge is started on it
        result = run_cli("serve", "--port", str(port), env=env, cwd=tmp_path)

    # Then it says which address it cannot listen on and why, and exits without starting
    assert result.returncode == 3, result.stderr
    assert f"rokt-edge serve: cannot listen on 127.0.0.1:{port}: Address already in use" in (
        result.stderr
    )
    assert "rokt-edge ready" not in result.stderr
    assert "startup complete" not in result.stderr


def test_serve_names_the_demos_full_address_in_its_log(tmp_path: Path) -> None:
    # Given a new user serving the edge in a dry run (the demo is on)
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "serve.log"
    with serving(home_env(home), cwd=tmp_path, log=log) as url:
        pass
    # Then the log says where to open the demo, in full
    assert f"demo: the shop at {url}/demo, its panel at {url}/demo/inspect" in log.read_text()
