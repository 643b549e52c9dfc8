"""User agent parsing: device type, OS and browser, bots, and the cache."""

from __future__ import annotations

from edge.useragent import UserAgent, parse_user_agent

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def test_a_phone() -> None:
    assert parse_user_agent(IPHONE) == UserAgent(
        "Mobile", "iOS", "17.0", "Mobile Safari", "17.0", is_bot=False
    )


def test_a_tablet_and_a_desktop() -> None:
    assert parse_user_agent(IPAD).device_type == "Tablet"
    desktop = parse_user_agent(WINDOWS_CHROME)
    assert (desktop.device_type, desktop.os, desktop.browser) == ("Desktop", "Windows", "Chrome")


def test_crawlers_are_bots() -> None:
    assert parse_user_agent(GOOGLEBOT).is_bot


def test_unknown_families_are_none() -> None:
    unknown = parse_user_agent("something/1.0")
    assert (unknown.os, unknown.browser, unknown.is_bot) == (None, None, False)


def test_parses_are_cached_by_string() -> None:
    assert parse_user_agent(IPHONE) is parse_user_agent(IPHONE)
