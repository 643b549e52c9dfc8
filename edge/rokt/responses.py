"""Reading the upstream's answers: error messages, and which batches of a request they name.

Contract A error bodies are `{"errors": [{"code": …, "message": …}]}`; messages name a batch of a
`/bulkevents` request by a path such as `Path '[1].device_info.ios_advertising_id'` and may carry
HTML entities (`&quot;`), unescaped here.
"""

from __future__ import annotations

import html
import re
from typing import Final

import httpx

MESSAGE_CHARS: Final = 500
_PATH_INDEX = re.compile(r"Path '\[(\d+)\]")
# Quoted values and anything like an email: upstream messages can quote the data sent.
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*@[^']*'|\S+@\S+")


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


def redact(message: str) -> str:
    """An upstream message fit for a log: quoted values and anything like an email hidden."""
    return _QUOTED.sub("…", message)
