"""`rokt-edge recent`: the latest outcomes of events, and the bodies a dry run recorded, as a
document (`--json`) and as text.

Each outcome has its time, message id and mapping, and the body that was or would be sent while
the store keeps it (waiting, dead-lettered and dry-run items; a delivered item's is deleted).
Personal data is shown as the store holds it (hashed where the mapping hashes it): the command
is for the operator's own shell, unlike the demo panel, which masks it. Times are ISO 8601 UTC.
"""

from __future__ import annotations

import json
from typing import Any, Final

from edge.settings import Settings, without_password
from edge.status import iso
from edge.store.values import DEAD, SKIPPED, Outcome, Recent

PERSONAL_DATA: Final = "as stored: hashed where the mapping hashes it, raw otherwise"


def document(recent: Recent, settings: Settings) -> dict[str, Any]:
    return {
        "store": without_password(settings.database_url),
        "personal_data": PERSONAL_DATA,
        "outcomes": [_outcome(outcome) for outcome in recent.outcomes],
        "dry_run_requests": [
            {"at": iso(request.at), "path": request.path, "body": _json(request.body)}
            for request in recent.requests
        ],
    }


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "at": iso(outcome.at),
        "outcome": outcome.state,
        "message_id": outcome.message_id,
        "mapping": outcome.mapping,
        "reason": outcome.reason,
        "message": outcome.message,
        "dead_at": iso(outcome.dead_at),
        "body": None if outcome.body is None else _json(outcome.body),
    }


def _json(text: str) -> Any:
    """A stored body as JSON, or as the text it is if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def text(doc: dict[str, Any]) -> str:
    outcomes, requests = doc["outcomes"], doc["dry_run_requests"]
    lines = [
        f"rokt-edge recent  (store {doc['store']}; newest first; personal data as stored)",
        f"events          {len(outcomes) or 'no'} outcome(s)",
    ]
    for outcome in outcomes:
        lines.append(
            f"  {outcome['at']}  {outcome['outcome']:<9}  {outcome['mapping'] or '-':<14}  "
            f"{outcome['message_id']}{_detail(outcome)}"
        )
        if outcome["body"] is not None:
            body = json.dumps(outcome["body"], indent=2, ensure_ascii=False)
            lines.extend("      " + line for line in body.splitlines())
    if requests:
        lines.append(
            f"dry-run requests {len(requests)} latest (their bodies: rokt-edge recent --json)"
        )
        lines.extend(f"  {request['at']}  POST {request['path']}" for request in requests)
    return "\n".join(lines)


def _detail(outcome: dict[str, Any]) -> str:
    if outcome["outcome"] == SKIPPED:
        return f"  {outcome['reason']}"
    if outcome["outcome"] == DEAD:
        return f"  {outcome['reason']}: {outcome['message']} (dead-lettered {outcome['dead_at']})"
    if outcome["message"]:
        return f"  last error: {outcome['message']}"
    return ""
