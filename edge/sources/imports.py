"""Imports (`rokt-edge import`): an export's rows, read as canonical events by the command
(`edge.imports`), stored a chunk at a time as this source's arrivals and processed like every
other source's: a server's events, stitched to what browsers showed for the same ids.

An arrival's body holds the chunk's events and the file row each came from, so that whoever
processes it (the command itself, or, if the command died first, any edge on the store) reads
the same events: `{"rows": [2, 3, 5], "batch": [event, event, event]}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from edge.capture.stitch import arrival_keys
from edge.events import Event
from edge.jsontext import encode
from edge.source import Source
from edge.store.values import Arrival

NAME: Final = "import"


def arrival(events: Sequence[Event], rows: Sequence[int], received_at: float) -> Arrival:
    """A chunk of an import, the events in file order with their row numbers."""
    body = {"rows": list(rows), "batch": [event.body for event in events]}
    return Arrival(NAME, received_at, encode(body), keys=arrival_keys(events))


def arrived_events(arrival: Arrival) -> list[Event]:
    """The events of a stored chunk, as the command read them from the file's rows."""
    return [Event(body) for body in json.loads(arrival.body)["batch"]]


SOURCE: Final = Source(NAME, browser=False, read=arrived_events)
