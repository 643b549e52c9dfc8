"""Attribution of each event alone: whatever odd values an event carries in any field the
pipeline reads, it ends sent or skipped with a reason, on its own, and its neighbours go on."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from edge.capture.attribution import (
    PROCESSING_FAILED,
    SERVER,
    Attribution,
    Carrier,
    IdentityView,
    culprit,
)
from edge.capture.cookies import Visitor
from edge.events import EventError, is_text, parse_event
from edge.jsontext import encode
from edge.pipeline import fields
from edge.pipeline.mapping import DEFAULT_FIELDS, default_mappings
from edge.pipeline.pipeline import Pipeline
from edge.settings import Settings
from edge.store.values import Identity

NOW = 1_790_000_000.0
# Every path the default mappings and attribution read, and the containers around them.
READ: tuple[tuple[str, ...], ...] = tuple(
    {
        keys[:depth]
        for sources in DEFAULT_FIELDS.values()
        for source in sources
        for keys in [tuple(map(str, getattr(getattr(source, "path", source), "keys", ())))]
        for depth in range(1, len(keys) + 1)
    }
    | {
        ("context", "personas", "computation_key"),
        ("context", "personas", "computation_class"),
        ("properties", "vip"),
        ("traits", "vip"),
        ("properties", "audience_name"),
        ("properties", "audience_membership"),
        ("traits", "audience_name"),
        ("traits", "audience_membership"),
        ("traits", "rtid"),
        ("context", "consent", "categoryPreferences", "Advertising"),
        ("integrations", "All"),
    }
)
# Numbers at the edges of what decimal, integer and float code handles (given their own share
# of the examples: among all JSON values they would come up too seldom).
EXTREMES = (1e26, 10**26, -1e300, 1e-300, 0.1, 2**63, -0.0, 1.7976931348623157e308)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)  # JSON has neither (intake refuses them)
    | st.text(max_size=30)
    | st.sampled_from(
        ["", " ", "n/a", "-", "1e26", "audience", "vip", "Order Completed", "x" * 5000]
    )
    | st.sampled_from(EXTREMES)
)
VALUES = st.sampled_from(EXTREMES) | st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
ORDER: dict[str, Any] = {
    "type": "track", "event": "Order Completed", "userId": "u-1", "anonymousId": "a-1",
    "properties": {"order_id": "o-1", "revenue": 10, "currency": "USD"},
}  # fmt: skip
# An event with a usable value in every place the pipeline reads (an Engage audience, a device,
# a page with a click), so that one odd value reaches the code that reads it.
RICH = {
    **ORDER,
    "properties": {**ORDER["properties"], "email": "a@example.com", "phone": "+13238675309",
                   "first_name": "Ann", "birthday": "1990-01-02", "gender": "female",
                   "address": {"postal_code": "90210"}, "vip": True},
    "traits": {"email": "a@example.com", "vip": True, "rtid": "T-CLICK"},
    "context": {"ip": "203.0.113.1", "userAgent": "UA",
                "page": {"url": "https://shop.example/?rtid=P", "search": "?rtid=P"},
                "device": {"type": "ios", "advertisingId": "6D92078A-8246-4BA4-AE5B-76104861E7DC",
                           "id": "6D92078A-8246-4BA4-AE5B-76104861E7DC"},
                "personas": {"computation_key": "vip", "computation_class": "audience"},
                "traits": {"email": "a@example.com"}},
    "integrations": {"Rokt Conversions API": {"rtid": "I-CLICK"}},
}  # fmt: skip


def with_value(body: dict[str, Any], keys: tuple[str, ...], value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at `keys` (dicts made where needed; a list index as a key)."""
    copy = dict(body)
    holder = copy
    for key in keys[:-1]:
        inner = holder.get(str(key))
        holder[str(key)] = dict(inner) if isinstance(inner, dict) else {}
        holder = holder[str(key)]
    holder[str(keys[-1])] = value
    return copy


def attribute(pipeline: Pipeline, carrier: Carrier, events: list[dict[str, Any]]) -> Attribution:
    stored = Identity("CLICK", NOW - 60, "198.51.100.7", "UA", NOW - 60, "e" * 64, "m" * 64)

    async def lookup(keys: Any, since: float) -> dict[str, Identity]:
        return dict.fromkeys(keys, stored)

    attribution = Attribution(pipeline, IdentityView(lookup), "test", carrier, NOW)

    async def run() -> None:
        for body in events:
            await attribution.add(parse_event(body))

    asyncio.run(run())
    return attribution


BROWSER = Carrier(True, "198.51.100.7", "Mozilla/5.0", False, Visitor("a-1", "COOKIE", int(NOW)))
PIPELINES = {
    upstream: Pipeline(Settings(upstream=upstream, account_id="acct"), default_mappings())
    for upstream in ("capi", "event-api")
}


def sent_or_skipped_alone(odd: dict[str, Any], browser: bool) -> None:
    """Attribute `odd` between two ordinary orders, with each upstream's contract: the
    neighbours are sent, and `odd` ends sent or skipped with a reason a check gave (not a
    failure caught as a bug), and what is sent can be written and sent as it is."""
    try:
        parse_event(odd)
    except EventError:
        return  # intake refuses it, naming the field: it never reaches processing
    assert is_text(odd)
    before, after = {**ORDER, "messageId": "before"}, {**ORDER, "messageId": "after"}
    after["properties"] = {**ORDER["properties"], "order_id": "o-2"}
    for pipeline in PIPELINES.values():
        attribution = attribute(pipeline, BROWSER if browser else SERVER, [before, odd, after])
        assert {"before", "after"} <= {item.message_id for item in attribution.outbound}
        assert all(item.reason for item in attribution.skipped)
        assert not [i for i in attribution.skipped if i.reason.startswith(PROCESSING_FAILED)]
        for item in attribution.outbound:
            encode(item.body)


@pytest.mark.parametrize("keys", sorted(READ), ids=".".join)
@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=VALUES, kind=st.sampled_from(["track", "identify"]), browser=st.booleans())
def test_any_value_in_any_field_processing_reads_ends_sent_or_skipped_alone(
    keys: tuple[str, ...], value: Any, kind: str, browser: bool
) -> None:
    # Given an event with a usable value everywhere the pipeline reads, but one odd value
    odd = with_value({**RICH, "type": kind}, keys, value)
    # Then it ends sent or skipped alone, with each upstream, from a browser or a server
    sent_or_skipped_alone(odd, browser)


@hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    changes=st.dictionaries(st.sampled_from(READ), VALUES, min_size=2, max_size=4),
    kind=st.sampled_from(["track", "identify", "page"]),
    browser=st.booleans(),
)
def test_odd_values_in_several_fields_at_once_end_sent_or_skipped_alone(
    changes: dict[tuple[str, ...], Any], kind: str, browser: bool
) -> None:
    odd: dict[str, Any] = {**RICH, "type": kind}
    for keys, value in changes.items():
        odd = with_value(odd, keys, value)
    sent_or_skipped_alone(odd, browser)


def test_an_event_that_fails_is_skipped_alone_naming_the_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a pipeline with a flaw that an event's `traits.quirk` trips (a bug no check foresaw)
    real = fields._audience

    def flawed(mapped: Any, mapping: Any, body: Any) -> None:
        if "quirk" in (body.get("traits") or {}):
            raise TypeError("unhashable type: 'dict'")
        real(mapped, mapping, body)

    monkeypatch.setattr(fields, "_audience", flawed)
    odd = {**ORDER, "messageId": "odd", "traits": {"quirk": {"a": 1}, "name": "x"}}
    before, after = {**ORDER, "messageId": "before"}, {**ORDER, "messageId": "after"}

    # When it is attributed between two ordinary orders
    attribution = attribute(PIPELINES["capi"], SERVER, [before, odd, after])

    # Then the neighbours are sent, and the odd one is skipped alone, saying where it failed
    assert [item.message_id for item in attribution.outbound] == ["before", "after"]
    [skip] = attribution.skipped
    assert (skip.message_id, skip.reason) == (
        "odd",
        f"{PROCESSING_FAILED} at traits.quirk: TypeError in test_attribution.flawed",
    )


def test_the_culprit_is_the_deepest_field_whose_removal_helps() -> None:
    def attempt(body: dict[str, Any]) -> None:
        if isinstance(body.get("context", {}).get("page", {}).get("url"), list):
            raise ValueError

    body = {"type": "page", "context": {"page": {"url": [1], "title": "t"}, "ip": "x"}}
    assert culprit(body, attempt) == "context.page.url"
    assert culprit({"type": "page"}, attempt) is None  # it does not fail: the fault is elsewhere
