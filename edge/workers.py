"""`rokt-edge serve --workers N`: N serving processes sharing one listening socket, forked from
this one after the app is built and the port bound, each with its own event loop, processing and
sender on the shared store (PostgreSQL); a worker that dies is started again. SIGTERM or SIGINT
stops them all (each finishes its requests, as one edge does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Final

log = logging.getLogger("rokt_edge.workers")

RESTART_PAUSE_SECONDS: Final = 1.0  # between a worker's death and its replacement


def supervise(count: int, run: Callable[[], int]) -> int:
    """Fork `count` workers, each calling `run` (its exit status is the worker's); keep them
    running until a stop signal; the exit status: 0, or the first failure's at start."""
    stopping = False
    workers: dict[int, int] = {}  # pid → worker number

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for pid in workers:
            _signal(pid, signum)

    for number in range(count):
        workers[_fork(run)] = number
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving with %d workers: %s", count, ", ".join(map(str, sorted(workers))))
    status = 0
    while workers:
        try:
            pid, code = os.wait()
        except ChildProcessError:
            break
        if pid not in workers:
            continue
        number = workers.pop(pid)
        exit_code = os.waitstatus_to_exitcode(code)
        if stopping:
            continue
        log.error("worker %d (pid %d) ended (exit %d); starting another", number, pid, exit_code)
        if exit_code != 0 and status == 0:
            status = exit_code
        time.sleep(RESTART_PAUSE_SECONDS)
        if not stopping:
            workers[_fork(run)] = number
    return 0 if stopping else status


def _fork(run: Callable[[], int]) -> int:
    pid = os.fork()
    if pid == 0:  # the worker: default signal handling, as a single edge has
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = 1
        try:
            code = run()
        finally:
            os._exit(code)
    return pid


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended
        os.kill(pid, signum)
