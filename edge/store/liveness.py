"""The loop that keeps a process's owner alive on its store and frees the dead's leases at once
(`edge.store.owners`): every `BEAT_SECONDS`, a heartbeat, then a sweep of the owners silent for
`SILENT_SECONDS` or known gone. A process on this host whose owner is registered but which no
longer runs (a killed edge, the previous life of one restarted) is known gone at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Final

from edge.store.errors import StoreError
from edge.store.interface import Store
from edge.store.values import Owner

BEAT_SECONDS: Final = 1.0
# Silent this long, an owner is dead: several beats missed (a loop blocked for a moment, a
# database failing over), yet a killed edge's work resumes within seconds.
SILENT_SECONDS: Final = 5.0

log = logging.getLogger("rokt_edge.liveness")


def running(pid: int) -> bool:
    """Whether a process with this id runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        return True
    return True


def gone(owners: Iterable[Owner], own: str, host: str = socket.gethostname()) -> list[str]:
    """The owners on this host, other than `own`, whose process no longer runs."""
    return [
        owner.owner
        for owner in owners
        if owner.host == host and owner.owner != own and not running(owner.pid)
    ]


class Liveness:
    """The loop; `freed` is called after a sweep freed something (wake processing and delivery)."""

    def __init__(self, store: Store, freed: Callable[[], None] = lambda: None) -> None:
        self.store = store
        self.freed = freed
        self._stopping = asyncio.Event()

    async def beat(self) -> int:
        """One heartbeat and one sweep; how many leases and claims it freed."""
        await self.store.heartbeat()
        dead = gone(await self.store.owners(), self.store.owner)
        freed = await self.store.sweep_dead_owners(SILENT_SECONDS, dead)
        if freed:
            log.warning(
                "%d lease(s) and claim(s) of a process that died are taken again at once", freed
            )
            self.freed()
        return freed

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.beat()
            except StoreError as failure:
                log.error("liveness: the store could not record this process alive: %s", failure)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), BEAT_SECONDS)
