"""The snippet's short form: the compact event the browser snippet sends, expanded by the edge.

Segment's field names were close to half the snippet's gzip bytes, so, as in Plausible's
tracker, the browser sends one-letter keys and the server expands them: `t` type, `n` the call's
first argument, `p` its second, `u` the userId known before the call, `a` anonymousId, `c` the
click id, `m` messageId, `s` timestamp (epoch ms), `l` page URL, `r` referrer, `h` title. The
table, and what the edge derives (userId, an alias's previousId): docs/snippet.md#the-short-form.

A short-form event is a JSON object with `t` and no `type`; anything else (every Segment-shaped
event: they all have `type`) passes through untouched. A short-form event with a key not listed
here is refused, and so is one whose `l` is not text or whose `s` is not epoch milliseconds; every
other check is `parse_event`'s, which names the Segment field.
"""

from __future__ import annotations

import math
from typing import Any, Final
from urllib.parse import urlsplit

from edge.capture.enrich import INTEGRATION
from edge.events import MAX_TIMESTAMP_MS, EventError, iso_ms

KEYS: Final = frozenset("tnpuacmslrh")
# Where the first and the second argument of each call go.
ARGUMENTS: Final = {
    "page": ("name", "properties"),
    "screen": ("name", "properties"),
    "track": ("event", "properties"),
    "identify": ("userId", "traits"),
    "group": ("groupId", "traits"),
    "alias": ("userId", "previousId"),
}
PAGE: Final = (("l", "url"), ("r", "referrer"), ("h", "title"))


def is_short(raw: Any) -> bool:
    return isinstance(raw, dict) and "t" in raw and "type" not in raw


def expand(raw: Any, index: int | None = None) -> Any:
    """The Segment-shaped event a short-form event stands for; anything else as it came.

    Raises EventError (naming the event by `index`) for what the short form itself forbids."""
    if not is_short(raw):
        return raw
    short = raw if None not in raw.values() else {k: v for k, v in raw.items() if v is not None}
    if not KEYS.issuperset(short):
        unknown = sorted(set(short) - KEYS)
        listed = ", ".join(sorted(KEYS))
        raise EventError("", f"short form: unknown keys {unknown}; the keys are {listed}", index)
    kind = short.get("t")  # null: parse_event says the type is missing
    first, second = short.get("n"), short.get("p")
    if isinstance(first, dict) and second is None:  # page(props), identify(traits)
        first, second = None, first
    event: dict[str, Any] = {"type": kind}
    names = ARGUMENTS.get(kind) if isinstance(kind, str) else None
    if names is not None:  # an unknown type is parse_event's to refuse
        for name, value in zip(names, (first, second), strict=True):
            if value is not None:
                event[name] = value
    if "userId" not in event and "u" in short:
        event["userId"] = short["u"]
    if kind == "alias" and "previousId" not in event:
        previous = short.get("u", short.get("a"))
        if previous is not None:
            event["previousId"] = previous
    if "a" in short:
        event["anonymousId"] = short["a"]
    if "m" in short:
        event["messageId"] = short["m"]
    if "s" in short:
        event["timestamp"] = _iso(short["s"], index)
    page = {name: short[key] for key, name in PAGE if key in short}
    if "url" in page:
        page |= _path_and_search(page["url"], index)
    if page:
        event["context"] = {"page": page}
    if "c" in short:
        event["integrations"] = {INTEGRATION: {"rtid": short["c"]}}
    return event


def _iso(stamp: Any, index: int | None) -> str:
    """Epoch milliseconds as the ISO 8601 text analytics.js writes (`Date.prototype.toJSON`)."""
    if (
        isinstance(stamp, bool)
        or not isinstance(stamp, int | float)
        or not math.isfinite(stamp)
        or not 0 <= stamp <= MAX_TIMESTAMP_MS
    ):
        raise EventError(
            "timestamp", f"short form: s must be epoch milliseconds, not {stamp!r}", index
        )
    return iso_ms(int(stamp))


def _path_and_search(url: Any, index: int | None) -> dict[str, str]:
    """location.pathname and location.search of the page's URL."""
    if not isinstance(url, str):
        raise EventError("context.page.url", f"short form: l must be a string, not {url!r}", index)
    fast = _plain_split(url)
    if fast is not None:
        return fast
    try:
        parts = urlsplit(url)
    except ValueError as problem:  # "http://[": no URL a browser has
        raise EventError("context.page.url", f"not a URL: {problem}", index) from None
    return {"path": parts.path or "/", "search": f"?{parts.query}" if parts.query else ""}


def _plain_split(url: str) -> dict[str, str] | None:
    """`_path_and_search` of a plain http(s) URL, as urlsplit would give it, without its cost;
    None for anything else (another scheme, brackets, spaces, backslashes...)."""
    if not url.startswith(("https://", "http://")) or any(c in url for c in "[]\\ \t\r\n"):
        return None
    start = url.find("/", url.index("//") + 2)
    query = url.find("?")
    fragment = url.find("#")
    if fragment >= 0 and (query < 0 or query > fragment):
        query = -1  # a "?" after the "#" is the fragment's
    end = [mark for mark in (query, fragment) if mark >= 0]
    if start < 0 or (end and start > min(end)):
        path = "/"
    else:
        path = url[start : min(end)] if end else url[start:]
    search = ""
    if query >= 0:
        search = url[query : fragment if fragment > query else len(url)]
        search = "" if search == "?" else search
    return {"path": path or "/", "search": search}
