"""Fault injection: the real `rokt-edge serve`, its writer process and the server killed (SIGKILL)
under load while the upstream fails in each way it can; every acknowledged event still reaches
the fake Rokt (or, refused by it, is a dead letter with the upstream's reason).

The durability promise ("nothing acknowledged is ever lost; duplicates carry the same
`source_message_id`"), checked end to end: browsers post beacons and a merchant's backend posts
tracking API batches from threads, each request resent until it is answered 2xx (as the snippet
and Segment's libraries do); an event counts as acknowledged when a 2xx answered it. Each case:

    start the edge (upstream failing) ─ load ─ kill -9 the writer ─ load ─ kill -9 the server
    ─ start it again on the same database ─ load to the end ─ the upstream recovers ─ drained?

Counts are small (a few hundred events a case) so that the module runs in CI; nothing here
measures time, the waits only bound a hang.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ROOT, run_cli
from tests.fake_capi import FakeCapi, Reply

WRITE_KEY = "fault-injection-write-key"
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)
EVENTS = 240  # a case: a third before the writer is killed, a third before the server is
REQUEST_TIMEOUT = 0.75  # the edge's upstream timeout; a slow upstream answers after twice that
WAIT = 30.0  # seconds any one wait may take before the test fails (a hang, or a loss)


@dataclass(frozen=True)
class Upstream:
    """How the fake Rokt fails while the edge is killed and restarted."""

    recorded: int | None  # the status the edge records for the failure (None: no answer)
    outage: Reply | None = None  # answered to one request in two until the load is over
    refused: bool = False  # the first server's upstream URL is a port nobody listens on
    rejected: int = 0  # events (at most 3) the fake rejects as invalid each time it sees them


UPSTREAMS = {
    "500s": Upstream(500, Reply(500, {"errors": [{"message": "internal"}]})),
    "429-retry-after": Upstream(429, Reply(429, headers={"Retry-After": "1"})),
    "slow-past-timeout": Upstream(None, Reply(503, delay=2 * REQUEST_TIMEOUT)),
    "closed-without-answer": Upstream(None, Reply(close=True)),
    "connection-refused": Upstream(None, refused=True),
    "400-rejects-a-batch": Upstream(400, rejected=3),
}


@pytest.mark.parametrize("mode", list(UPSTREAMS))
def test_every_acknowledged_event_reaches_rokt_through_kills_and_upstream_failures(
    tmp_path: Path, mode: str
) -> None:
    require_proc()
    upstream = UPSTREAMS[mode]
    orders = [order(mode, n) for n in range(EVENTS)]
    # (the rejected events, if any: one in each third of the load)
    poison = {orders[n * EVENTS // 3 + EVENTS // 6]["messageId"] for n in range(upstream.rejected)}

    with FakeCapi() as fake, nobody_listening() as dead_url, contextlib.ExitStack() as stack:
        # Given a fake Rokt failing one request in two in this mode (or refusing connections, or
        # rejecting a few events as invalid whenever they come)
        if upstream.outage is not None:
            fake.outage(upstream.outage, every=2)
        fake.reject(*poison)
        env = edge_env(tmp_path / "edge.db", fake)
        port = free_port()

        # and the edge running against it, taking beacons and tracking API batches under load
        first_env = (env | {"ROKT_EDGE_ROKT_URL": dead_url}) if upstream.refused else env
        first = stack.enter_context(EdgeProcess.started(first_env, port, tmp_path / "edge-1.log"))
        load = stack.enter_context(Load(first.url, orders))

        # When its writer process is killed (SIGKILL) while requests come in
        load.wait_acknowledged(EVENTS // 3)
        writer = first.writer_pid()
        assert writer is not None
        os.kill(writer, signal.SIGKILL)

        # and, once the store has a new writer, the server itself is killed under load
        load.wait_acknowledged(2 * EVENTS // 3)
        wait_for(lambda: first.writer_pid(required=False) not in (None, writer), "a new writer")
        replacement = first.writer_pid()
        assert replacement is not None
        first.kill()

        # and the server is started again on the same database, and the load goes on to the end
        second = stack.enter_context(EdgeProcess.started(env, port, tmp_path / "edge-2.log"))
        load.finish()
        exited(replacement)  # the killed server's writer ended with it

        # and the upstream recovers
        fake.outage(None)

        # Then every acknowledged event reaches Rokt, or is dead-lettered because Rokt rejected it
        assert load.refused == []  # (no request was refused as invalid: the test's own events)
        acknowledged = load.acknowledged()
        assert acknowledged == {event["messageId"] for event in orders}  # (each, after resends)

        def missing() -> set[str]:
            return acknowledged - poison - set(fake.accepted_message_ids())

        wait_for(lambda: not missing(), "every acknowledged event at the fake Rokt", fail=False)
        assert not missing(), report(missing(), fake, env, first, second)
        status = wait_for(lambda: drained(env), "the outbox drained", fail=False)
        assert status, report(set(), fake, env, first, second)

        # (duplicates are allowed, each copy with the event's own source_message_id)
        sent = {event["properties"]["order_id"]: event["messageId"] for event in orders}
        for ref, message_ids in conversions_by_order(fake).items():
            assert message_ids == {sent[ref]}, (ref, message_ids)
        assert not set(fake.accepted_message_ids()) & poison

        # and the rejected ones are dead letters, with Rokt's message naming the event
        assert status["dead_letters"]["by_reason"] == ({"rejected": len(poison)} if poison else {})
        messages = " ".join(letter["message"] for letter in status["dead_letters"]["messages"])
        assert all(f"Event {message_id} rejected" in messages for message_id in poison), messages

        # (and the faults did happen: the edge recorded the upstream's failure, clients saw the
        # server or its store down)
        assert upstream.recorded in {error["status"] for error in status["upstream_errors"]}
        assert load.unanswered > 0


# -- the load ------------------------------------------------------------------------------


def order(mode: str, n: int) -> dict[str, Any]:
    """A sendable conversion (a known user) with its own message id and order id."""
    return {
        "type": "track",
        "event": "Order Completed",
        "messageId": f"{mode}-{n}",
        "userId": f"shopper-{n}",
        "properties": {"order_id": f"{mode}-order-{n}", "revenue": 10 + n, "currency": "USD"},
    }


class Load:
    """Two browsers posting beacons and a backend posting tracking API batches (1 to 3 events a
    request), each request resent until it is answered 2xx, as the snippet and Segment's
    libraries resend; `acknowledged()` are the message ids of events a 2xx answered.

    Given several edges' URLs (a fleet behind a load balancer), the senders start on different
    edges and a request that gets no answer, or a 5xx, is resent to the next edge."""

    def __init__(self, url: str | list[str], events: list[dict[str, Any]]) -> None:
        self.urls = [url] if isinstance(url, str) else url
        self._events = events
        self._next = 0
        self._acknowledged: list[str] = []
        self.unanswered = 0  # requests that got no answer or a 5xx (resent)
        self.refused: list[tuple[int, str]] = []  # 4xx other than 429: not resent
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._errors: list[BaseException] = []
        self._threads = [
            threading.Thread(
                target=self._run,
                args=(kind, i % len(self.urls)),
                name=f"load-{kind}-{i}",
                daemon=True,
            )
            for i, kind in enumerate(("beacon", "beacon", "api"))
        ]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def acknowledged(self) -> set[str]:
        with self._lock:
            return set(self._acknowledged)

    def wait_acknowledged(self, count: int) -> None:
        wait_for(lambda: len(self.acknowledged()) >= count or self._errors, f"{count} answered")
        assert not self._errors, self._errors

    def finish(self) -> None:
        """Wait until every event was sent and answered 2xx (or refused)."""
        for thread in self._threads:
            thread.join(timeout=WAIT)
        assert not any(thread.is_alive() for thread in self._threads), "the load did not finish"
        assert not self._errors, self._errors

    def _take(self) -> list[dict[str, Any]]:
        with self._lock:
            start = self._next
            self._next = min(len(self._events), start + 1 + start % 3)
            return self._events[start : self._next]

    def _run(self, kind: str, first: int) -> None:
        try:
            with contextlib.ExitStack() as stack:
                clients = [
                    stack.enter_context(httpx.Client(base_url=url, timeout=5)) for url in self.urls
                ]
                at = first
                while not self._stop.is_set() and (events := self._take()):
                    while not self._stop.is_set() and not self._post(clients[at], kind, events):
                        at = (at + 1) % len(clients)  # the next edge, if there is one
                        time.sleep(0.05)  # the server is down, or its store: resend soon
                    time.sleep(0.005)
        except BaseException as error:  # reported by the main thread
            self._errors.append(error)

    def _post(self, client: httpx.Client, kind: str, events: list[dict[str, Any]]) -> bool:
        """Send once; whether the request is settled (answered 2xx, or refused)."""
        try:
            if kind == "beacon":
                headers = {"content-type": "text/plain", "user-agent": CHROME}
                body = json.dumps({"batch": events})
                response = client.post("/e", content=body, headers=headers)
            else:
                response = client.post("/v1/batch", json={"batch": events}, auth=(WRITE_KEY, ""))
        except httpx.HTTPError:
            with self._lock:
                self.unanswered += 1
            return False
        if response.status_code == 429 or response.status_code >= 500:
            with self._lock:
                self.unanswered += 1
            return False
        answer = response.json() if response.status_code == 200 else {}
        with self._lock:
            if response.status_code != 200 or "errors" in answer:
                self.refused.append((response.status_code, response.text))
            else:
                self._acknowledged.extend(event["messageId"] for event in events)
        return True


# -- the edge ------------------------------------------------------------------------------


def edge_env(database: Path, fake: FakeCapi) -> dict[str, str]:
    """Settings for a quick recovery: short polls, backoff, timeouts and leases; no limits."""
    return {
        "ROKT_EDGE_DATABASE_URL": f"sqlite:///{database}",
        "ROKT_EDGE_API_KEY": fake.api_key,
        "ROKT_EDGE_API_SECRET": fake.api_secret,
        "ROKT_EDGE_ROKT_URL": fake.url,
        "ROKT_EDGE_WRITE_KEYS": WRITE_KEY,
        "ROKT_EDGE_CLIENT_RATE_LIMIT": "0",
        "ROKT_EDGE_RATE_LIMIT": "0",
        "ROKT_EDGE_POLL_INTERVAL": "0.05",
        "ROKT_EDGE_BACKOFF_BASE": "0.05",
        "ROKT_EDGE_BACKOFF_CAP": "0.5",
        "ROKT_EDGE_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
        "ROKT_EDGE_LEASE_SECONDS": "2",
        "ROKT_EDGE_PAUSE_RETRY": "0.2",
    }


@dataclass
class EdgeProcess:
    """`rokt-edge serve` in a subprocess (run from this checkout), its log in a file."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    database_url: str
    pids: list[int] = field(default_factory=list)  # its writers seen, to clean up after

    @classmethod
    @contextlib.contextmanager
    def started(cls, env: dict[str, str], port: int, log: Path) -> Iterator[EdgeProcess]:
        inherited = {
            name: value for name, value in os.environ.items() if not name.startswith("ROKT_EDGE_")
        }
        serve = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        with log.open("ab") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "edge", *serve],
                env=inherited | env | {"PYTHONPATH": str(ROOT)},
                stderr=stderr,
                cwd=log.parent,
            )
        edge = cls(process, f"http://127.0.0.1:{port}", log, env["ROKT_EDGE_DATABASE_URL"])
        try:
            wait_for(edge.healthy, f"the edge to start (log: {log})")
            yield edge
        finally:
            edge.stop()

    def healthy(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()[-3000:]
        try:
            return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def writer_pid(self, *, required: bool = True) -> int | None:
        """The pid of the store's writer (`python -m edge.store.sqlite_writer`), a child."""
        for proc in Path("/proc").glob("[0-9]*"):
            with contextlib.suppress(OSError, IndexError):  # a process that just ended
                pid = int(proc.name)
                if parent_pid(pid) == self.process.pid and self._is_writer(pid):
                    self.pids.append(pid)
                    return pid
        assert not required, "the server has no writer process"
        return None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        for pid in self.pids:  # a writer of this database that outlived its server
            with contextlib.suppress(OSError):
                if self._is_writer(pid):
                    os.kill(pid, signal.SIGKILL)

    def _is_writer(self, pid: int) -> bool:
        """Whether `pid` is (still) a writer of this test's database, not a reused pid."""
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        database = self.database_url.removeprefix("sqlite:///").encode()
        return b"edge.store.sqlite_writer" in command and database in command


def require_proc() -> None:
    """The writer is found through /proc (Linux): skip without it, saying so; fail in CI."""
    if not Path(f"/proc/{os.getpid()}/stat").exists():
        message = "no /proc/<pid>/stat: the server's writer process cannot be found to kill it"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


def process_state(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, parent pid, …"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def parent_pid(pid: int) -> int:
    return int(process_state(pid)[1])


def exited(pid: int) -> None:
    """Wait until `pid` has exited (not our child: its parent, or init, reaps it)."""

    def gone() -> bool:
        try:
            return process_state(pid)[0] in ("Z", "X")
        except OSError:
            return True

    wait_for(gone, f"the writer {pid} to exit")


def drained(env: dict[str, str]) -> dict[str, Any] | None:
    """`rokt-edge status --json` once nothing waits: no arrivals, nothing pending or claimed."""
    result = run_cli("status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    status: dict[str, Any] = json.loads(result.stdout)
    queue = status["queue"]
    if status["arrivals"]["waiting"] or queue["pending"] or queue["in_flight"]:
        return None
    return status


def conversions_by_order(fake: FakeCapi) -> dict[str, set[str]]:
    """The source_message_ids Rokt accepted conversions with, by order (confirmation ref)."""
    found: dict[str, set[str]] = defaultdict(set)
    for request in fake.requests():
        for batch in request.accepted:
            for event in batch["events"]:
                data = event["data"]
                ref = (data.get("custom_attributes") or {}).get("confirmationref")
                if ref is not None:
                    found[ref].add(data["source_message_id"])
    return found


def report(missing: set[str], fake: FakeCapi, env: dict[str, str], *edges: EdgeProcess) -> str:
    """What a failure shows: the events missing, the upstream's answers, status, the logs."""
    answers: dict[int, int] = defaultdict(int)
    for request in fake.requests():
        answers[request.status] += 1
    logs = "\n".join(f"--- {edge.log.name}\n{edge.log.read_text()[-4000:]}" for edge in edges)
    return (
        f"{len(missing)} missing, e.g. {sorted(missing)[:10]}; the fake answered {dict(answers)}"
        f"\n{run_cli('status', env=env).stdout}\n{logs}"
    )


# -- helpers -------------------------------------------------------------------------------


def wait_for(check: Callable[[], Any], what: str, *, fail: bool = True) -> Any:
    """Poll `check()` until it returns something true; that value (or None after WAIT s)."""
    deadline = time.monotonic() + WAIT
    while not (value := check()):
        if time.monotonic() > deadline:
            assert not fail, f"timed out waiting for {what}"
            return None
        time.sleep(0.05)
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def nobody_listening() -> Iterator[str]:
    """A URL whose port is bound but not listening: every connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/s2s/v2"
