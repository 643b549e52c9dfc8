"""The SQLite store's writer: a process of its own that holds the write connection and commits
groups of jobs, one transaction each (the group commit `edge.store.sqlite` describes).

A process and not a thread: a writer thread spent most of its time waiting for the interpreter
lock behind a busy event loop, and stalled the loop in turn (measured: see
docs/architecture.md#the-writer-process).

Protocol, over a socket pair (`multiprocessing.connection`: length-prefixed pickles):

    writer → parent   None once the database is open, else the StoreUnavailable that says why
    parent → writer   a group: [(function, args, durable), …]; each job is `function(connection,
                      *args)`, a module-level function (pickled by name)
    writer → parent   (transactions so far, [(True, result) | (False, exception), …]) per group
    parent → writer   None: finish and exit. End of file (the parent died) does the same.

The writer ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the whole
process group: it ends when its parent does, after the group it is writing, so a commit is never
cut in two by a signal meant for the parent.

The write-ahead log is kept to the size of what is being written, and emptied when idle and after
a failed commit, so a full disk recovers by itself (docs/architecture.md#the-sqlite-store). The
database file is created readable by its owner only.

    python -m edge.store.sqlite_writer FD PATH
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat
import sys
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from edge.store import sqlite_schema as schema
from edge.store.errors import StoreUnavailable

PAGE_SIZE: Final = 16384
BUSY_TIMEOUT_MS: Final = 5000  # another process (the CLI, a second edge) holding the lock
WAL_BYTES: Final = 4 << 20  # checkpointed, and cut back after a checkpoint, at this size
IDLE_SECONDS: Final = 1.0  # without a write: the log is emptied
RESCUE_SECONDS: Final = 1.0  # after a failed commit, at most one checkpoint this often
FILE_MODE: Final = 0o600  # the database, its log and its shared-memory index
FOLDER_MODE: Final = 0o700  # a folder the store creates for it (the default location's)

Job = tuple[Callable[..., Any], tuple[Any, ...], bool]  # function, its args, durable
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception it raised)


def own(path: Path, *, make_folders: bool = False) -> list[tuple[Path, int]]:
    """Make the database file private before SQLite opens it: created 0600, and an existing
    file, log or index that others may read narrowed to 0600 (SQLite gives the log and index
    the file's mode); with `make_folders` (the default location only), its missing folders are
    created 0700, else a missing folder is FileNotFoundError. Returns each file narrowed with
    its mode before, for the caller to log."""
    if make_folders:
        missing = [folder for folder in (path.parent, *path.parent.parents) if not folder.exists()]
        for folder in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made meanwhile by another process
                folder.mkdir(FOLDER_MODE)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT, FILE_MODE))  # the mode is for a new file
    narrowed = []
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            mode = stat.S_IMODE(file.stat().st_mode)
        except FileNotFoundError:
            continue
        if mode & ~FILE_MODE:
            file.chmod(mode & FILE_MODE)
            narrowed.append((file, mode))
    return narrowed


def connect(path: Path) -> sqlite3.Connection:
    own(path)
    # isolation_level=None: transactions are begun and committed explicitly by the writer.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file only
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        connection.close()
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode is {mode})")
    connection.execute("PRAGMA synchronous = FULL")
    page_size = connection.execute("PRAGMA page_size").fetchone()[0]  # an old file's may differ
    connection.execute(f"PRAGMA wal_autocheckpoint = {max(WAL_BYTES // page_size, 1)}")
    connection.execute(f"PRAGMA journal_size_limit = {WAL_BYTES}")
    # Deleted rows (an arrival's unhashed events, a delivered item's body) are overwritten in
    # the file. Debian's SQLite does so by default, but only as a build option: a build without
    # it would leave them in freed space.
    connection.execute("PRAGMA secure_delete = ON")
    schema.create(connection)
    return connection


class Writer:
    """Commits groups on one connection; `synchronous` follows what each group needs."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self.connection = connection
        self.path = path
        self.transactions = 0
        self._synced = True  # the connection's synchronous setting is FULL (as connect leaves it)
        self._changes = connection.total_changes
        # When the log was last written (monotonic; None: it is empty). A log left by an earlier
        # run counts as written now: emptied after the first idle second too.
        self._written_at: float | None = time.monotonic()
        self._rescued_at = -RESCUE_SECONDS  # the last checkpoint after a failure (monotonic)

    def commit(self, group: Sequence[Job]) -> list[Outcome]:
        """Run each job inside a savepoint of one transaction and commit once: a job that fails
        rolls back its savepoint without failing the others; a failed commit fails them all."""
        connection = self.connection
        outcomes: list[Outcome] = []
        durable = any(sync for _, _, sync in group)
        try:
            if durable != self._synced:
                connection.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
                self._synced = durable
            connection.execute("BEGIN IMMEDIATE")
            if len(group) == 1:  # alone, a job needs no savepoint: a failure rolls back all
                function, args, _ = group[0]
                try:
                    outcomes.append((True, function(connection, *args)))
                except Exception as error:
                    connection.rollback()
                    outcomes.append((False, self._error(error)))
            for function, args, _ in group if len(group) > 1 else ():
                connection.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, function(connection, *args)))
                except Exception as error:  # one bad job must not fail the group
                    connection.execute("ROLLBACK TO job")
                    outcomes.append((False, self._error(error)))
                connection.execute("RELEASE job")
            if connection.in_transaction:
                connection.execute("COMMIT")
        except sqlite3.Error as error:
            if connection.in_transaction:
                connection.rollback()
            self._rescue()
            failure = StoreUnavailable(f"{self.path}: {error}")
            return [(False, failure) for _ in group]
        self.transactions += 1
        if connection.total_changes != self._changes:
            self._changes = connection.total_changes
            self._written_at = time.monotonic()
        return outcomes

    def idle_in(self) -> float | None:
        """Seconds until the log is due to be emptied (0: now; None: it holds nothing new)."""
        if self._written_at is None:
            return None
        return max(self._written_at + IDLE_SECONDS - time.monotonic(), 0.0)

    def checkpoint(self) -> bool:
        """Copy the log into the database file and truncate it to nothing, unless a reader is
        still using it (never waits for one: the writer would wait with it); whether it was."""
        connection = self.connection
        try:
            connection.execute("PRAGMA busy_timeout = 0")
            try:
                busy, _, _ = connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error:  # no room for the log's pages in the file yet: next time
            busy = 1
        if busy:
            self._written_at = time.monotonic()  # tried again after the next idle second
            return False
        self._written_at = None
        return True

    def _rescue(self) -> None:
        """After a failed commit (a full disk, most often): empty the log, which gives its space
        back once its pages fit in the database file; at most once a second, as failures come
        as fast as requests do."""
        now = time.monotonic()
        if now - self._rescued_at >= RESCUE_SECONDS:
            self._rescued_at = now
            self.checkpoint()
        elif self._written_at is None:
            self._written_at = now  # emptied when idle, then

    def _error(self, error: Exception) -> Exception:
        """What the parent raises: a database error as StoreUnavailable, others as they are
        (a job's own refusal, such as a newer schema), made sure to survive pickling."""
        if isinstance(error, sqlite3.Error):
            return StoreUnavailable(f"{self.path}: {error}")
        return error


def pragma(connection: sqlite3.Connection, name: str) -> Any:
    """A setting of the writer's connection, as it is inside the running transaction."""
    return connection.execute(f"PRAGMA {name}").fetchone()[0]


def serve(channel: Connection, path: Path) -> None:
    try:
        connection = connect(path)
    except (sqlite3.Error, OSError) as error:
        channel.send(StoreUnavailable(f"cannot open {path}: {error}"))
        return
    writer = Writer(connection, path)
    channel.send(None)
    try:
        while True:
            idle_in = writer.idle_in()
            if idle_in is not None and not channel.poll(idle_in):  # nothing written for a while
                writer.checkpoint()
                continue
            try:
                group = channel.recv()
            except EOFError:  # the parent is gone
                return
            if group is None:
                return
            outcomes = writer.commit(group)
            try:
                channel.send((writer.transactions, outcomes))
            except Exception as error:  # a result that cannot be pickled: say so, per job
                failure = StoreUnavailable(f"{path}: unsendable result: {error}")
                channel.send((writer.transactions, [(False, failure)] * len(group)))
    finally:
        connection.close()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    descriptor, path = int(sys.argv[1]), Path(sys.argv[2])
    channel = Connection(descriptor)
    try:
        serve(channel, path)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent went away while we answered: nothing is waiting for the answer
    finally:
        channel.close()


if __name__ == "__main__":
    main()
