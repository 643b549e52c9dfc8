"""Running an import: rows → canonical events → an arrival → processing → the outbox.

    read a chunk of rows ─▶ each row's event (`mapfile.row_event`), checked (`parse_event`)
    ─▶ the chunk stored as an arrival held by this command (`edge.sources.imports`) ─▶
    processed as every source's arrivals are (`edge.processing.attribute`: a server's events,
    stitched; the pipeline; identity links), row by row in order ─▶ settled: outbox items,
    skip records, identity links stored, conversions de-duplicated, the arrival forgotten (one
    transaction). A command killed in between leaves its arrival to the edges on the store.

Import only fills the outbox; the running edge's sender (or `rokt-edge deliver`)
delivers. A row's message id is stable (its `source_message_id` column, else a hash of the row),
so importing the same file again stores nothing new: the outbox holds one item per mapping and
message id. A dry run stores nothing and reads no identity store; it returns what would be sent,
in `rokt-edge preview`'s document shape.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Final

from edge.capture.attribution import IdentityView
from edge.events import Event, EventError, parse_event
from edge.imports.mapfile import ImportMap, RowError, row_event
from edge.imports.rows import BadRow, Row
from edge.pipeline.pipeline import Outbound, Pipeline
from edge.processing import attribute
from edge.sources import SOURCES, imports
from edge.store import Store
from edge.store.values import DUPLICATE, StoredArrival

CHUNK_ROWS: Final = 500
EXAMPLES_SHOWN: Final = 5


@dataclass
class Report:
    rows: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    queued: int = 0  # new outbox items
    already: int = 0  # items already in the outbox (an earlier run of the same rows)
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    skipped_rows: dict[str, list[int]] = field(default_factory=dict)  # some rows per reason
    # For a dry run: what would be sent.
    bodies: list[dict[str, Any]] = field(default_factory=list)
    skips: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    def skip(self, number: int, reason: str) -> None:
        self.skipped[reason] += 1
        shown = self.skipped_rows.setdefault(reason, [])
        if len(shown) < EXAMPLES_SHOWN:
            shown.append(number)


class Importer:
    def __init__(
        self,
        import_map: ImportMap,
        pipeline: Pipeline,
        store: Store | None,
        *,
        now: float,
    ) -> None:
        self.map = import_map
        self.pipeline = pipeline
        self.store = store  # None: a dry run
        self.now = now
        self.report = Report()

    async def run(self, rows: Iterable[Row | BadRow]) -> Report:
        iterator = iter(rows)
        while chunk := list(islice(iterator, CHUNK_ROWS)):
            await self._chunk(chunk)
        return self.report

    async def _chunk(self, chunk: list[Row | BadRow]) -> None:
        report = self.report
        events: list[Event] = []
        numbers: list[int] = []  # the row each event came from
        for row in chunk:
            report.rows += 1
            if isinstance(row, BadRow):
                report.invalid.append((row.number, row.reason))
                continue
            try:
                events.append(parse_event(row_event(row.values, self.map)))
            except RowError as error:
                report.invalid.append((row.number, str(error)))
                continue
            except EventError as error:
                report.invalid.append((row.number, f"{error.field}: {error.problem}"))
                continue
            numbers.append(row.number)
        if not events:
            return
        arrival = imports.arrival(events, numbers, self.now)
        if self.store is None:  # a dry run: nothing stored, no identity store read
            stored, view = StoredArrival(0, arrival), None
        else:
            stored = await self.store.hold_arrival(arrival)
            view = IdentityView(self.store.identities)
        # Rows are attributed in order: a row sees what the rows before it taught (an
        # identify's link from anonymousId to userId), as a request's events do.
        attributed = await attribute([stored], [events], self.pipeline, view, SOURCES)
        for number, outcomes in zip(numbers, attributed.outcomes, strict=True):
            for outcome in outcomes:
                where = {"row": number, "messageId": outcome.message_id,
                         "mapping": outcome.mapping}  # fmt: skip
                report.warnings.extend({**where, "warning": text} for text in outcome.warnings)
                if isinstance(outcome, Outbound):
                    if self.store is None:
                        report.bodies.append(outcome.body)
                else:
                    report.skip(number, outcome.reason)
                    if self.store is None:
                        report.skips.append({**where, "reason": outcome.reason})
        if self.store is None:
            return
        result = await self.store.settle([stored.id], attributed.collected.intake())
        report.queued += result.stored
        report.already += result.duplicates
        if result.deduplicated:  # the store knows which; the skip records name them
            report.skipped[DUPLICATE] += result.deduplicated


def dry_run_document(report: Report, pipeline: Pipeline) -> dict[str, Any]:
    """`rokt-edge preview`'s shape, with rows instead of events."""
    base = pipeline.settings.upstream_url
    requests = [
        {"method": "POST", "url": base + request.path, "body": request.body}
        for request in pipeline.contract.pack(report.bodies)
    ]
    return {
        "upstream": pipeline.settings.upstream,
        "dry_run": True,
        "rows": report.rows,
        "requests": requests,
        "skipped": report.skips,
        "invalid": [{"row": number, "error": reason} for number, reason in report.invalid],
        "warnings": report.warnings,
        "note": "a dry run: nothing was stored, and the identity store was not read "
        "(a real import adds the click id, IP and user agent browsers showed for a customer id)",
    }


def summary(report: Report, name: str) -> Iterator[str]:
    """The lines a person reads after an import."""
    yield f"{name}: {report.rows:,} rows read"
    yield f"  {report.queued:,} queued for delivery" + (
        f" ({report.already:,} more were already in the outbox from an earlier import)"
        if report.already
        else ""
    )
    for reason, count in report.skipped.most_common():
        rows = report.skipped_rows.get(reason, [])
        more = ", …" if count > len(rows) else ""
        label = "row" if count == 1 else "rows"
        shown = f" ({label} {', '.join(map(str, rows))}{more})" if rows else ""
        yield f"  {count:,} skipped: {reason}{shown}"
    if report.invalid:
        yield f"  {len(report.invalid):,} invalid, not imported (listed on stderr)"
    yield (
        "Import only fills the outbox: the running edge (rokt-edge serve), or "
        "rokt-edge deliver, delivers these items to Rokt."
    )
