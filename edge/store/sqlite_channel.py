"""The SQLite store's channel to its writer process (`edge.store.sqlite_writer`): the process
started, checked ready and stopped (`WriterProcess`), and the socket between them driven by one
event loop (`Channel`) with group commit.

The loop hands over the jobs waiting (up to `max_group`) as one group, length-prefixed pickles
over a socket pair; the writer runs each inside a savepoint of one transaction, commits once, and
only then answers, and the loop resolves their futures. While one commit waits for the disk, the
next jobs queue up and share the next commit. No thread, so no interpreter lock is shared with
anything (`edge.store.sqlite_writer` says why that matters).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pickle
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from edge.store import sqlite_writer
from edge.store.errors import StoreUnavailable

# A job: a module-level function run as `function(connection, *args)` in the writer (pickled by
# name), or a callable that makes one when its group is handed over (`Coalescer`).
Job = tuple[Callable[..., Any], tuple[Any, ...]]
Deferred = Callable[[], Job]
SOCKET_BUFFER_BYTES: Final = 8 << 20
STOP_SECONDS: Final = 30.0  # for the writer to finish its group at close


class WriterProcess:
    """The writer (`edge.store.sqlite_writer`): started, checked ready, and stopped."""

    def __init__(self, path: Path, *, wait_until_open: bool = True) -> None:
        self.path = path
        ours, theirs = socket.socketpair()
        for end in (ours, theirs):  # a claim crosses in a read or two (up to the system limit)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER_BYTES)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER_BYTES)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "edge.store.sqlite_writer", str(theirs.fileno()), str(path)],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                env=child_environment(),
            )
        except OSError as error:
            ours.close()
            raise StoreUnavailable(f"cannot start the writer for {path}: {error}") from None
        finally:
            theirs.close()
        self.socket = ours
        # Whether it has the database open: known here when waited for, else set by its
        # channel when the writer's first message on the socket says so (`Channel._opened`).
        self.ready = wait_until_open
        if not wait_until_open:
            return
        try:  # read as the writer sent it, on a copy of our end that the reader then closes
            with Connection(os.dup(ours.fileno())) as channel:
                ready = channel.recv()
        except (EOFError, OSError):
            ready = StoreUnavailable(f"cannot open {path}: the writer process ended at start")
        if ready is not None:
            self.stop()
            raise ready

    def stop(self) -> None:
        """Close our end: the writer finishes the group it has, sees the end, and exits."""
        self.socket.close()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Channel:
    """The writer's socket, driven by one event loop: jobs submitted while a group is out wait
    for its answer and go together as the next group. No thread, so no interpreter lock is
    shared with anything (`edge.store.sqlite_writer` says why that matters)."""

    def __init__(
        self,
        writer: WriterProcess,
        loop: asyncio.AbstractEventLoop,
        *,
        max_group: int,
        committed: Callable[[int], None],
    ) -> None:
        """`max_group`: jobs per transaction at most; `committed(n)`: n more commits made."""
        self.writer = writer
        self.loop = loop
        self.max_group = max_group
        self.committed = committed
        self.lost = False
        self._socket = writer.socket
        self._socket.setblocking(False)
        self._pending: list[tuple[Job | Deferred, asyncio.Future[Any], bool]] = []
        self._out: list[asyncio.Future[Any]] | None = None  # the group the writer has
        self._flush_soon = False
        self._unsent = b""
        self._header = bytearray(4)  # of the answer being read: its size
        self._header_view = memoryview(self._header)
        self._buffer = bytearray()  # where answers are read, grown to the largest so far
        self._message: memoryview | None = None  # the answer's part of it, once its size is known
        self._filled = 0  # bytes of the header, or of the message, read so far
        self._transactions = 0  # as the writer counts them
        loop.add_reader(self._socket.fileno(), self._readable)

    def submit(self, job: Job | Deferred, durable: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self.loop.create_future()
        self._pending.append((job, future, durable))
        if self._out is None and not self._flush_soon:
            # At the end of this turn of the loop: what else it submits goes along.
            self._flush_soon = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_soon = False
        if self._out is not None or self.lost or not self.writer.ready:
            return
        group = self._pending[: self.max_group]
        del self._pending[: len(group)]
        sent: list[asyncio.Future[Any]] = []
        jobs = []
        for job, future, durable in group:
            if future.cancelled():  # its caller went away before it was written: not written
                continue
            try:
                jobs.append((*made(job), durable))
            except Exception as error:  # a job that cannot be made: a bug, failed loudly
                future.set_exception(error)
                continue
            sent.append(future)
        if not sent:
            return
        try:
            payload = pickle.dumps(jobs, pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # a job that cannot be sent: a bug, failed loudly
            for future in sent:
                future.set_exception(error)
            self._flush_soon = True
            self.loop.call_soon(self._flush)
            return
        self._out = sent
        self._send(struct.pack("!i", len(payload)) + payload)

    def _send(self, data: bytes) -> None:
        try:
            written = self._socket.send(data)
        except BlockingIOError:
            written = 0
        except OSError as error:
            self._lose(error)
            return
        self._unsent = data[written:]
        if self._unsent:
            self.loop.add_writer(self._socket.fileno(), self._writable)

    def _writable(self) -> None:
        self.loop.remove_writer(self._socket.fileno())
        self._send(self._unsent)

    def _readable(self) -> None:
        # Straight into a buffer kept from answer to answer (a claim's is most of a megabyte:
        # fresh memory each time costs a page fault per 4 KB), and until the socket is empty:
        # one wake-up per answer where it can be.
        while not self.lost:
            target = self._header_view if self._message is None else self._message
            try:
                count = self._socket.recv_into(target[self._filled :])
            except BlockingIOError:
                return
            except OSError as error:
                self._lose(error)
                return
            if not count:
                self._lose(EOFError("end of file"))
                return
            self._filled += count
            if self._filled < len(target):
                continue
            self._filled = 0
            if self._message is None:
                (size,) = struct.unpack("!i", self._header)
                if len(self._buffer) < size:
                    self._buffer = bytearray(size)
                self._message = memoryview(self._buffer)[:size]
            else:
                message, self._message = self._message, None
                with message:  # released before the buffer may be replaced
                    reply = pickle.loads(message)
                if self.writer.ready:
                    self._answer(reply)
                else:
                    self._opened(reply)

    def _answer(self, reply: tuple[int, list[tuple[bool, Any]]]) -> None:
        transactions, outcomes = reply
        self.committed(transactions - self._transactions)
        self._transactions = transactions
        futures, self._out = self._out or [], None
        for future, (ok, value) in zip(futures, outcomes, strict=True):
            if future.cancelled():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self._pending:
            self._flush()

    def _opened(self, hello: StoreUnavailable | None) -> None:
        """The writer's first message: None once it has the database open, else the reason
        it could not (it then ends); the jobs that waited for it go, or fail with that."""
        if hello is not None:
            self._fail(hello)
            return
        self.writer.ready = True
        if self._pending:
            self._flush()

    def _lose(self, error: BaseException) -> None:
        """The writer is gone: what it had, and what waited, fails (callers answer 503 or try
        again later); the next call starts a new writer."""
        code = self.writer.process.poll()
        ended = f"exit code {code}" if code is not None else f"{type(error).__name__}: {error}"
        self._fail(StoreUnavailable(f"{self.writer.path}: the writer process failed ({ended})"))

    def _fail(self, failure: StoreUnavailable) -> None:
        if self.lost:
            return
        self.lost = True
        with contextlib.suppress(ValueError, OSError):  # a closed loop keeps no readers
            self.loop.remove_reader(self._socket.fileno())
            self.loop.remove_writer(self._socket.fileno())
        waiting = [future for _, future, _ in self._pending] + (self._out or [])
        self._pending, self._out = [], None
        for future in waiting:
            if not future.done():
                future.set_exception(failure)

    def detach(self, failure: StoreUnavailable) -> None:
        """Stop using the socket, from any thread: on the loop's thread at once, else through
        the loop (and a loop that has ended has nothing registered any more)."""
        if self.loop.is_closed():
            self.lost = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop or not self.loop.is_running():
            self._fail(failure)
            return
        done = threading.Event()

        def fail() -> None:
            self._fail(failure)
            done.set()

        self.loop.call_soon_threadsafe(fail)
        done.wait(STOP_SECONDS)


def made(job: Job | Deferred) -> Job:
    """The job itself, or the one a deferred job makes now (as its group is handed over)."""
    return job() if callable(job) else job


def child_environment() -> dict[str, str]:
    """This environment, with the directory `edge` was imported from first on the path: the
    writer imports the same code whether rokt-edge is installed or run from a checkout."""
    root = str(Path(sqlite_writer.__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": root if not path else f"{root}{os.pathsep}{path}"}
