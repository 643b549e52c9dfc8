"""What `rokt-edge serve` does with connections before the app sees a request: request heads
bounded (414, 431), slow and silent clients closed, a cap on connections (503), malformed HTTP
answered in JSON, its open-files limit raised; through real sockets against the real command."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge import server
from edge.app import create_app
from edge.settings import Settings
from edge.store.sqlite import SQLiteStore
from tests.conftest import ROOT
from tests.live import wait_for
from tests.serving import served

GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n"
SECONDS = 30  # how long a client here waits for an answer before the test fails


class Edge:
    """`rokt-edge serve` in a subprocess, on a free loopback port."""

    def __init__(self, process: subprocess.Popen[str], port: int, log: Path) -> None:
        self.process, self.port, self.log = process, port, log
        self.url = f"http://127.0.0.1:{port}"

    def connect(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.settimeout(SECONDS)
        return connection

    def peak_memory_kib(self) -> int:
        """The server's peak resident memory so far (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM")

    def healthy(self) -> bool:
        healthy: bool = httpx.get(self.url + "/healthz", timeout=SECONDS).json() == {"status": "ok"}
        return healthy


@contextlib.contextmanager
def serve_command(tmp: Path, shell: str = "", **settings: str) -> Iterator[Edge]:
    """Run `rokt-edge serve` with these settings (ROKT_EDGE_ names without the prefix), after
    the shell commands `shell` (e.g. a ulimit)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROKT_EDGE_")}
    env |= {"PYTHONPATH": str(ROOT), "ROKT_EDGE_DATABASE_URL": f"sqlite:///{tmp / 'edge.db'}"}
    env |= {f"ROKT_EDGE_{name.upper()}": value for name, value in settings.items()}
    log = tmp / "serve.log"
    command = f"{shell} exec {sys.executable} -m edge serve --port {port}"
    with log.open("w") as stderr:
        process = subprocess.Popen(["sh", "-c", command], env=env, stderr=stderr, text=True)
    edge = Edge(process, port, log)
    try:
        wait_for(lambda: _answers(edge), timeout=SECONDS)
        yield edge
    finally:
        process.terminate()
        process.wait(timeout=SECONDS)


def _answers(edge: Edge) -> bool:
    if edge.process.poll() is not None:
        raise AssertionError(f"rokt-edge serve exited: {edge.log.read_text()}")
    try:
        return edge.healthy()
    except httpx.TransportError:
        return False


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    """An edge with short timeouts, so that the tests wait little."""
    tmp = tmp_path_factory.mktemp("edge")
    with serve_command(tmp, header_timeout="1", keep_alive_timeout="1") as edge:
        yield edge


def answer(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response: status, headers (lowercase names), body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            raise AssertionError(f"closed without a complete answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(":") for x in lines)}
    while len(body) < int(headers.get("content-length", 0)):
        body += connection.recv(65536)
    return int(status_line.split()[1]), headers, body


def closed(connection: socket.socket) -> bool:
    """True when the server closed the connection (a read gives end of file or a reset)."""
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:
        return True


def ask(edge: Edge, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with edge.connect() as connection:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(request)  # the server may refuse before reading it all
        return answer(connection)


def error_of(body: bytes) -> dict[str, Any]:
    document = json.loads(body)
    assert set(document) == {"error"}
    return dict(document["error"])


def test_a_64_mib_header_gets_431_without_the_edge_holding_it_and_the_edge_stays_healthy(
    edge: Edge,
) -> None:
    # Given an edge that has served a request
    assert edge.healthy()
    peak_before = edge.peak_memory_kib()

    # When a client sends a request whose one header is 64 MiB
    with edge.connect() as connection:
        head = b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Huge: "
        chunk = b"a" * 65536
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(head)
            for _ in range(1024):
                connection.sendall(chunk)
            connection.sendall(b"\r\n\r\n")
        status, headers, body = answer(connection)

    # Then it gets a JSON 431, its bytes were never held (the peak memory barely moved), and the
    # edge goes on answering
    assert status == 431
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert error_of(body)["code"] == "headers_too_large"
    assert edge.peak_memory_kib() - peak_before < 16 * 1024
    assert edge.healthy()


def test_one_header_line_over_8_kib_gets_431_and_a_6_kib_cookie_is_served(edge: Edge) -> None:
    # Given a shop whose cookies take 6 KiB, as the edge under its origin receives them
    cookie = b"Cookie: " + b"; ".join(b"c%d=%s" % (n, b"v" * 1000) for n in range(6)) + b"\r\n"
    served = ask(edge, b"GET /healthz HTTP/1.1\r\nHost: edge\r\n" + cookie + b"\r\n")
    assert served[0] == 200

    # When one header line is over 8 KiB, then the request is refused with a JSON 431
    status, _, body = ask(
        edge, b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Long: " + b"a" * 8200 + b"\r\n\r\n"
    )
    assert status == 431
    assert error_of(body) == {
        "code": "header_too_large",
        "message": "a header line is over 8,192 bytes",
    }


def test_headers_over_32_kib_in_all_get_431(edge: Edge) -> None:
    # Given 40 headers of 1 KiB each: every line within 8 KiB, the head over 32 KiB
    lines = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 1024) for n in range(40))

    status, _, body = ask(edge, b"GET /healthz HTTP/1.1\r\nHost: edge\r\n" + lines + b"\r\n")

    assert status == 431
    assert error_of(body)["message"] == "the request's head is over 32,768 bytes"
    assert edge.healthy()


def test_a_request_target_over_8_kib_gets_414(edge: Edge) -> None:
    status, _, body = ask(edge, b"GET /healthz?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: e\r\n\r\n")
    assert status == 414
    assert error_of(body)["code"] == "uri_too_long"


def test_malformed_http_gets_a_json_400(edge: Edge) -> None:
    # uvicorn's own answer is a plain-text 400 ("Invalid HTTP request received.")
    status, headers, body = ask(edge, b"NOT HTTP AT ALL\r\n\r\n")
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert error_of(body) == {"code": "bad_request", "message": "the request is not valid HTTP/1.1"}
    assert edge.healthy()


def test_a_slowloris_connection_is_closed_while_it_still_trickles_its_head(edge: Edge) -> None:
    # Given a client that sends its request's head a byte at a time, each within the timeout
    with edge.connect() as connection:
        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n")
        trickle = iter(b"X-Slow: " + b"a" * 300)  # 30 s of bytes, if the server let it go on
        answered = False
        for byte in trickle:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                connection.sendall(bytes([byte]))
            readable, _, _ = select.select([connection], [], [], 0.1)
            if readable:
                answered = True
                break
        # Then the edge gave up on the head (header_timeout = 1 s), answering a JSON 408
        assert answered, "the server kept reading a head that never ends"
        assert next(trickle, None) is not None
        status, _, body = answer(connection)
        assert status == 408
        assert error_of(body)["code"] == "request_timeout"
        assert closed(connection)
    assert edge.healthy()


def test_a_connection_that_sends_nothing_is_closed(edge: Edge) -> None:
    with edge.connect() as connection:
        # (uvicorn alone keeps such a connection open for as long as the client wants)
        assert closed(connection)


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(edge: Edge) -> None:
    with edge.connect() as connection:
        # Given a keep-alive connection that made one request
        connection.sendall(GET_HEALTHZ)
        status, headers, _ = answer(connection)
        assert status == 200
        assert "connection" not in headers  # kept alive
        # When it stays idle, then the edge closes it (keep_alive_timeout = 1 s)
        assert closed(connection)


def test_a_request_beyond_the_connection_cap_gets_a_json_503(tmp_path: Path) -> None:
    with serve_command(tmp_path, max_connections="4", header_timeout="60") as edge:
        # Given 4 keep-alive connections that the edge has served
        held = [edge.connect() for _ in range(4)]
        for connection in held:
            connection.sendall(GET_HEALTHZ)
            assert answer(connection)[0] == 200

        # When a fifth connection sends a request, then it gets a JSON 503 and is closed
        status, headers, body = ask(edge, GET_HEALTHZ)
        assert status == 503
        assert headers["retry-after"] == "1"
        assert error_of(body)["code"] == "overloaded"
        assert ask(edge, GET_HEALTHZ)[0] == 503  # and so does a sixth

        # And once the others are gone, a new connection is served again
        for connection in held:
            connection.close()
        wait_for(lambda: ask(edge, GET_HEALTHZ)[0] == 200, timeout=SECONDS)
    refusals = [line for line in edge.log.read_text().splitlines() if "refused" in line]
    assert len(refusals) == 1  # the first at once; the others go in the next line, a minute on
    assert refusals[0].endswith("503 overloaded: 1")


def test_serve_raises_its_open_files_limit_to_the_hard_limit_and_says_so(tmp_path: Path) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 1024:
        pytest.skip(f"the hard limit ({hard}) leaves no room below it to start from")
    # Given a shell whose soft limit is far below its hard limit (as `ulimit -n 1024` was)
    soft = 512
    with serve_command(tmp_path, shell=f"ulimit -S -n {soft};") as edge:
        limits = Path(f"/proc/{edge.process.pid}/limits").read_text()
    # Then the edge raised its soft limit to the hard limit, and logged it
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    assert line.split()[3:5] == [str(hard), str(hard)]
    assert f"open files: soft limit raised from {soft} to {hard:,} (the hard limit)" in (
        edge.log.read_text()
    )


def test_the_connection_cap_leaves_room_for_the_stores_files() -> None:
    assert server.connection_cap(2048, open_files=1_048_576) == 2048
    assert server.connection_cap(2048, open_files=1024) == 1024 - server.FD_RESERVE
    assert server.connection_cap(2048, open_files=None) == 2048  # no limit known
    assert server.connection_cap(2048, open_files=100) == 1


def test_serve_configures_uvicorn_from_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'edge.db'}", keep_alive_timeout=7,
        header_timeout=3, header_line_max_bytes=4096, header_max_bytes=16384, max_connections=9,
    )  # fmt: skip
    config = server.config(create_app(settings), settings, host="127.0.0.1", port=8080)
    config.load()
    limits = config.http_protocol_class.limits  # type: ignore[attr-defined]
    assert limits == server.Limits(line_bytes=4096, head_bytes=16384, head_seconds=3.0,
                                   connections=9)  # fmt: skip
    assert config.timeout_keep_alive == 7
    assert config.limit_concurrency is None  # the protocol's own cap, answered in JSON
    assert (config.proxy_headers, config.server_header, config.access_log) == (False,) * 3


class BuggyStore(SQLiteStore):
    """A store with a bug: checking it raises what nothing expects."""

    async def check_writable(self) -> None:
        raise RuntimeError("a bug, with a detail nobody outside should read")


def test_an_unhandled_exception_is_a_json_500_without_traceback_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an edge whose store has a bug that /readyz runs into
    store = BuggyStore(tmp_path / "edge.db")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'edge.db'}")
    with caplog.at_level(logging.ERROR), served(settings, store=store) as port:
        url = f"http://127.0.0.1:{port}"
        # When /readyz is asked
        response = httpx.get(url + "/readyz", timeout=SECONDS)
        # Then the answer is a JSON 500 that shows neither the traceback nor the detail
        assert response.status_code == 500
        assert response.json() == {
            "error": {"code": "internal", "message": "the edge failed to handle this request"}
        }
        assert "Traceback" not in response.text
        assert "nobody outside" not in response.text
        # And the edge still answers
        assert httpx.get(url + "/healthz", timeout=SECONDS).status_code == 200
    store.close()
    # And the exception was logged once, with its traceback
    logged = [record for record in caplog.records if record.exc_info]
    assert len(logged) == 1
    assert "nobody outside" in str(logged[0].exc_info[1])  # type: ignore[index]
