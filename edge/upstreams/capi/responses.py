"""Reading the upstream's answers: error messages, and which batches of a request they name.

Contract A error bodies are `{"errors": [{"code": …, "message": …}]}`; messages name a batch of a
`/bulkevents` request by a path such as `Path '[1].device_info.ios_advertising_id'` and may carry
HTML entities (`&quot;`), unescaped here. `classify` turns an answer into a `Verdict`:

    2xx, no errors                       DELIVERED
    2xx, errors naming batches           PARTIAL: those batches fail with their messages
    2xx, an error naming no batch;       REJECTED: split until each bad batch is alone
    400, 413
    401, 403                             PAUSE
    429                                  RETRY, after Retry-After when given
    5xx, anything else                   RETRY
"""

from __future__ import annotations

import html
import re

import httpx

from edge.delivery.backoff import retry_after
from edge.delivery.verdict import MESSAGE_CHARS, Kind, Verdict

_PATH_INDEX = re.compile(r"Path '\[(\d+)\]")


def upstream_errors(response: httpx.Response) -> list[str]:
    """The messages of a `{"errors": [{"message": …}]}` body, HTML entities unescaped."""
    try:
        document = response.json() if response.content else None
    except ValueError:
        return []
    errors = document.get("errors") if isinstance(document, dict) else None
    if not isinstance(errors, list):
        return []
    messages = []
    for error in errors:
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("code") or error)
        else:
            text = str(error)
        messages.append(html.unescape(text))
    return messages


def failed_batches(errors: list[str], count: int) -> dict[int, str] | None:
    """Which batches (by index) the errors name; None when some error names none."""
    failed: dict[int, str] = {}
    for message in errors:
        match = _PATH_INDEX.search(message)
        if match is None and count == 1:
            failed[0] = message  # a single batch: the error can only be about it
            continue
        if match is None or int(match.group(1)) >= count:
            return None
        index = int(match.group(1))
        failed[index] = f"{failed[index]}; {message}" if index in failed else message
    return failed


def upstream_message(response: httpx.Response) -> str:
    errors = upstream_errors(response)
    if errors:
        return "; ".join(errors)[:MESSAGE_CHARS]
    text = response.text.strip()
    return (text or response.reason_phrase or f"HTTP {response.status_code}")[:MESSAGE_CHARS]


def classify(response: httpx.Response, batches: int, *, now: float) -> Verdict:
    """The verdict on a request of `batches` batches; `now` (epoch seconds) reads a
    Retry-After given as a date."""
    status = response.status_code
    if 200 <= status < 300:
        errors = upstream_errors(response)
        if not errors:
            return Verdict(Kind.DELIVERED, status)
        failed = failed_batches(errors, batches)
        if failed is not None:
            return Verdict(Kind.PARTIAL, status, failed, message="; ".join(failed.values()))
        return _rejected(status, "; ".join(errors), batches)
    if status in (400, 413):
        message = "; ".join(upstream_errors(response)) or upstream_message(response)
        return _rejected(status, message, batches)
    if status in (401, 403):
        return Verdict(Kind.PAUSE, status, message=upstream_message(response))
    if status == 429:
        wait = retry_after(response.headers.get("Retry-After"), now)
        return Verdict(Kind.RETRY, status, retry_after=wait, message="rate limited")
    # 5xx, and statuses the spec does not name: keep the items, retry.
    return Verdict(Kind.RETRY, status, message=upstream_message(response))


def _rejected(status: int, message: str, batches: int) -> Verdict:
    """Refused as a whole: a lone batch fails with the message; more are split to find it."""
    failed = {0: message} if batches == 1 else {}
    return Verdict(Kind.REJECTED, status, failed, message=message)
