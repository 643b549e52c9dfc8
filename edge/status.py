"""`rokt-edge status`: what the store says about delivery, as a document and as text.

The document (`--json`) has the same facts as the text; times are ISO 8601 in UTC. The upstream
and whether it is a dry run come from this command's own settings, not from the running service
(which the store does not record): both outputs say so.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from edge.settings import Settings, without_password
from edge.store.liveness import SILENT_SECONDS
from edge.store.values import Stats

SETTINGS_FROM: Final = (
    "this command's environment and --config file; the running service's may differ"
)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: float) -> float:
    """`2h`, `30m`, `7d` (that long ago) or an ISO 8601 time (UTC unless it says) → epoch s."""
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 2h, 7d) nor an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def document(stats: Stats, settings: Settings, now: float) -> dict[str, Any]:
    oldest = stats.oldest_pending
    if stats.paused is not None:
        delivery = "paused"
    elif settings.dry_run:
        delivery = "dry run"
    else:
        delivery = "sending"
    return {
        "store": without_password(settings.database_url),
        "upstream": settings.upstream_url,
        "delivery": delivery,
        "settings_from": SETTINGS_FROM,  # for upstream and dry run
        "paused": None
        if stats.paused is None
        else {"since": iso(stats.paused.since), "reason": stats.paused.reason},
        "arrivals": {
            "waiting": stats.arrivals,
            "oldest_age_seconds": None
            if stats.oldest_arrival is None
            else round(now - stats.oldest_arrival, 1),
        },
        "queue": {
            "pending": stats.pending,
            "retrying": stats.retrying,
            "in_flight": stats.in_flight,
            "oldest_pending": iso(oldest),
            "oldest_pending_age_seconds": None if oldest is None else round(now - oldest, 1),
        },
        "delivered": stats.delivered,
        "delivered_dry_run": stats.delivered_dry_run,
        "dead_letters": {
            "total": sum(stats.dead.values()),
            "by_reason": stats.dead,
            "messages": [
                {"reason": reason, "message": message, "count": count}
                for reason, message, count in stats.dead_messages
            ],
        },
        "skipped": stats.skipped,
        "upstream_errors": [
            {"at": iso(error.at), "status": error.status, "message": error.message}
            for error in stats.upstream_errors
        ],
        "dry_run_bodies_kept": stats.dry_run_bodies,
        "conversions": [
            {
                "source": share.source,
                "window": share.window,
                "conversions": share.conversions,
                "with_click_id": share.with_click_id,
                "with_email": share.with_email,
            }
            for share in stats.conversions
        ],
        "processes": [  # the edges (and deliver commands) on this store
            {
                "host": owner.host,
                "pid": owner.pid,
                "alive": now - owner.seen_at < SILENT_SECONDS,
                "started": iso(owner.started_at),
                "seen_age_seconds": round(now - owner.seen_at, 1),
                "arrivals_held": owner.arrivals,
                "items_claimed": owner.items,
            }
            for owner in stats.owners
        ],
    }


def text(doc: dict[str, Any]) -> str:
    return "\n".join(
        [
            f"rokt-edge status  (store {doc['store']})",
            _delivery_line(doc),
            "                (upstream and dry run: this command's settings, not the service's)",
            _arrivals_line(doc["arrivals"]),
            _queue_line(doc["queue"]),
            f"delivered       {doc['delivered']:,} (dry run: {doc['delivered_dry_run']:,}; "
            "the last 30 days)",
            *_dead_lines(doc["dead_letters"]),
            f"skipped         {sum(doc['skipped'].values()):,}",
            *(f"  {n:>8,}  {reason}" for reason, n in sorted(doc["skipped"].items())),
            f"upstream errors {len(doc['upstream_errors'])} recent (newest first)",
            *(
                f"  {error['at']}  {error['status'] or 'none':<4}  {error['message'][:120]}"
                for error in doc["upstream_errors"]
            ),
            f"dry-run bodies  {doc['dry_run_bodies_kept']:,} kept",
            *_attribution_lines(doc["conversions"]),
            *_process_lines(doc["processes"]),
        ]
    )


def _process_lines(processes: list[dict[str, Any]]) -> list[str]:
    """The processes on the store (a fleet's edges), each alive or silent, and what it holds."""
    alive = sum(process["alive"] for process in processes)
    lines = [f"processes       {alive} alive on this store"]
    for process in processes:
        state = "alive" if process["alive"] else "silent"
        lines.append(
            f"  {process['host']}/{process['pid']:<8} {state}, seen "
            f"{_ago(process['seen_age_seconds'])} ago, since {process['started']}; holds "
            f"{process['arrivals_held']:,} arrivals, {process['items_claimed']:,} items"
        )
    return lines


def _attribution_lines(shares: list[dict[str, Any]]) -> list[str]:
    """The share of conversions sent with a click id (and with an email), by source."""
    if not shares:
        return ["conversions     none in the last 24h"]
    lines = ["conversions     put in the outbox; share with a click id, with an email"]
    for share in shares:
        total = share["conversions"]
        lines.append(
            f"  {share['window']:<4}{share['source']:<14}{total:>8,}"
            f"  click id {_share(share['with_click_id'], total)}"
            f"  email {_share(share['with_email'], total)}"
        )
    return lines


def _share(part: int, total: int) -> str:
    return f"{part:>7,} ({part / total:4.0%})" if total else f"{part:>7,}"


def _delivery_line(doc: dict[str, Any]) -> str:
    if doc["paused"]:
        paused = doc["paused"]
        return f"delivery        PAUSED since {paused['since']}: {paused['reason']}"
    if doc["delivery"] == "dry run":
        return "delivery        dry run (no credentials): bodies recorded, nothing sent"
    return f"delivery        sending to {doc['upstream']}"


def _arrivals_line(arrivals: dict[str, Any]) -> str:
    age = arrivals["oldest_age_seconds"]
    oldest = "" if age is None else f"; oldest came {_ago(age)} ago"
    return f"arrivals        {arrivals['waiting']:,} requests not processed yet{oldest}"


def _queue_line(queue: dict[str, Any]) -> str:
    age = queue["oldest_pending_age_seconds"]
    oldest = "" if age is None else f"; oldest stored {_ago(age)} ago ({queue['oldest_pending']})"
    return (
        f"queue           {queue['pending']:,} pending ({queue['retrying']:,} retrying), "
        f"{queue['in_flight']:,} in flight{oldest}"
    )


def _dead_lines(dead: dict[str, Any]) -> list[str]:
    hint = " (rokt-edge replay puts them back)" if dead["total"] else ""
    lines = [f"dead letters    {dead['total']:,}{hint}"]
    lines.extend(f"  {reason:<14}{n:,}" for reason, n in sorted(dead["by_reason"].items()))
    lines.extend(
        f"    {m['count']:>6,}  {m['reason']}: {m['message'][:120]}" for m in dead["messages"]
    )
    return lines


def _ago(seconds: float) -> str:
    rounded = timedelta(seconds=int(seconds))
    days, rest = rounded.days, rounded.seconds
    hours, minutes, secs = rest // 3600, rest % 3600 // 60, rest % 60
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{value}{unit}" for value, unit in parts if value][:2]
    return " ".join(shown) or "0s"
