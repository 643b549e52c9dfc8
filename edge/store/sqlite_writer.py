"""The SQLite store's writer: a process of its own that holds the write connection and commits
groups of jobs, one transaction each (the group commit `edge.store.sqlite` describes).

Why a process and not a thread: Python's sqlite3 lets go of the interpreter lock around every
statement and must take it back after, and while an event loop in the same process is busy
(intake or delivery under load) that takes 0.75 ms at the median and 5 ms (the switch interval)
at the 90th percentile, measured. A write transaction is a dozen such hand-overs, so a writer
thread spent most of its time waiting for the lock, not writing; and every hand-over also
stalled the event loop (the convoy effect: the loop gives the lock away at each socket call and
waits to get it back). Here the parent's proxy thread hands over one message per group and
gets one back; the statements run under this process's own lock.

Protocol, over a socket pair (`multiprocessing.connection`: length-prefixed pickles):

    writer → parent   None once the database is open, else the StoreUnavailable that says why
    parent → writer   a group: [(function, args, durable), …]; each job is `function(connection,
                      *args)`, a module-level function (pickled by name)
    writer → parent   (transactions so far, [(True, result) | (False, exception), …]) per group
    parent → writer   None: finish and exit. End of file (the parent died) does the same.

The writer ignores SIGINT and SIGTERM, which a terminal or a service manager sends to the whole
process group: it ends when its parent does, after the group it is writing, so a commit is never
cut in two by a signal meant for the parent.

    python -m edge.store.sqlite_writer FD PATH
"""

from __future__ import annotations

import signal
import sqlite3
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final

from edge.store import sqlite_schema as schema
from edge.store.base import StoreUnavailable

PAGE_SIZE: Final = 16384
BUSY_TIMEOUT_MS: Final = 5000  # another process (the CLI, a second edge) holding the lock

Job = tuple[Callable[..., Any], tuple[Any, ...], bool]  # function, its args, durable
Outcome = tuple[bool, Any]  # (True, result) or (False, the exception it raised)


def connect(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: transactions are begun and committed explicitly by the writer.
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # a new file only
    mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        connection.close()
        raise sqlite3.OperationalError(f"cannot switch to WAL mode (journal_mode is {mode})")
    connection.execute("PRAGMA synchronous = FULL")
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
            failure = StoreUnavailable(f"{self.path}: {error}")
            return [(False, failure) for _ in group]
        self.transactions += 1
        return outcomes

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
