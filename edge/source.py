"""What the rest of the edge knows of a source, one door by which events come in: its name (an
arrival's `source`, a label in the figures), whether its requests are believed about the shopper,
how its stored arrivals read back as events, and the routes it answers on.

Each source is a module of `edge.sources` exporting one `Source`; the registry there lists them,
the app serves their routes and processing reads their arrivals through it (`Sources`), never
importing a source. Adding a source: docs/architecture.md#adding-a-source.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from starlette.routing import BaseRoute

from edge.events import Event
from edge.settings import Settings
from edge.store.values import Arrival


def no_routes(settings: Settings) -> Sequence[BaseRoute]:
    """A source with no door on the web service (an import, run as a command)."""
    return ()


@dataclass(frozen=True, slots=True)
class Source:
    name: str
    # Whether its requests are a browser's, believed about the shopper: their IP address, user
    # agent, Sec-GPC and the edge's cookie enrich the events (`edge.capture.attribution`). A
    # server's never are: its events are stitched to what browsers showed for the same ids.
    browser: bool
    # The events of a stored arrival, exactly as intake read them when it stored the request.
    read: Callable[[Arrival], list[Event]]
    # The routes it answers on, for the app's settings; built once per app (a source may keep
    # per-app state in them).
    routes: Callable[[Settings], Sequence[BaseRoute]] = no_routes


class UnknownSource(LookupError):
    """An arrival stored by a source this edge does not have (a newer version's, say)."""


class Sources:
    """The registered sources, by name."""

    def __init__(self, sources: Iterable[Source]) -> None:
        self._by_name: dict[str, Source] = {}
        for source in sources:
            if source.name in self._by_name:
                raise ValueError(f"two sources are named {source.name!r}")
            self._by_name[source.name] = source

    def __iter__(self) -> Iterator[Source]:
        return iter(self._by_name.values())

    def __getitem__(self, name: str) -> Source:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(self._by_name)
            raise UnknownSource(f"no source named {name!r} (known: {known})") from None

    def read(self, arrival: Arrival) -> list[Event]:
        """The events of a stored arrival, read by the source that stored it."""
        return self[arrival.source].read(arrival)
