"""User agents parsed once per distinct string (an uncached parse costs 1 to 2 ms).

The edge reads the browser's user agent for bot detection and for contract B's device fields
(DeviceType, os, osversion, browser, browserversion); both ask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import user_agents

CACHE_SIZE: Final = 8192  # distinct user agents kept; real traffic has a long but thin tail


@dataclass(frozen=True, slots=True)
class UserAgent:
    device_type: str  # "Desktop", "Mobile" or "Tablet", as Rokt's Event API names them
    os: str | None
    os_version: str | None
    browser: str | None
    browser_version: str | None
    is_bot: bool


@lru_cache(maxsize=CACHE_SIZE)
def parse_user_agent(text: str) -> UserAgent:
    parsed = user_agents.parse(text)
    if parsed.is_tablet:
        device_type = "Tablet"
    elif parsed.is_mobile:
        device_type = "Mobile"
    else:
        device_type = "Desktop"
    return UserAgent(
        device_type=device_type,
        os=_known(parsed.os.family),
        os_version=parsed.os.version_string or None,
        browser=_known(parsed.browser.family),
        browser_version=parsed.browser.version_string or None,
        is_bot=bool(parsed.is_bot),
    )


def _known(family: str) -> str | None:
    return None if family in ("", "Other") else family
