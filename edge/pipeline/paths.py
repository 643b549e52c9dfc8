"""Field paths into an event: `$.properties.order_id`, `$.integrations["Rokt Conversions API"].x`.

Mappings write paths with the `$.` root (JSONPath-like); triggers write the same paths without it
(`properties.plan`). Both are parsed here, once, into a tuple of keys, so reading a value at
run time is a plain loop of dictionary and list look-ups.

Grammar (a small subset of JSONPath, enough for Segment-shaped events):

    path    := ["$"] step+            the "$" is required for mappings, absent in triggers
    step    := ["."] NAME             NAME = letters, digits, "_", "-" (no spaces)
             | "[" QUOTED "]"         any key, in single or double quotes
             | "[" DIGITS "]"         a list index
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

MAX_INDEX_DIGITS: Final = 9  # no event holds a list of a billion items
NAME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class _Missing:
    """The value at a path that leads nowhere (distinct from a present `null`)."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


class PathError(ValueError):
    """A path that cannot be parsed; `column` is 1-based within the text given."""

    def __init__(self, message: str, column: int) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    keys: tuple[str | int, ...]

    def get(self, document: Any) -> Any:
        """The value at this path, or MISSING when any step is absent or of the wrong kind.

        Events are parsed JSON, so plain dict and list checks suffice; they are much cheaper
        than the abstract Mapping/Sequence ones, and this runs for every field of every event.
        """
        value = document
        for key in self.keys:
            if isinstance(key, str):
                if not isinstance(value, dict):
                    return MISSING
                value = value.get(key, MISSING)
                if value is MISSING:
                    return MISSING
            elif isinstance(value, list) and key < len(value):
                value = value[key]
            else:
                return MISSING
        return value

    def __str__(self) -> str:
        return self.text


def parse_path(text: str, *, rooted: bool = True) -> Path:
    """Parse a whole path. `rooted` paths must start with `$` (mappings); others must not."""
    path, end = scan_path(text, 0, rooted=rooted)
    if end != len(text):
        raise PathError(f"unexpected {text[end]!r} in path", end + 1)
    return path


def scan_path(text: str, start: int, *, rooted: bool) -> tuple[Path, int]:
    """Read a path that begins at `start`; return it and the index just past it.

    Used by the trigger parser, where a path is followed by more of the expression.
    """
    pos = start
    if rooted:
        if not text.startswith("$", pos):
            raise PathError("a path starts with '$', as in $.properties.order_id", pos + 1)
        pos += 1
    keys: list[str | int] = []
    while pos < len(text):
        char = text[pos]
        if char == ".":
            pos += 1
            name_end = _name_end(text, pos)
            if name_end == pos:
                raise PathError("expected a field name after '.'", pos + 1)
            keys.append(text[pos:name_end])
            pos = name_end
        elif char == "[":
            key, pos = _scan_bracket(text, pos)
            keys.append(key)
        elif not keys and not rooted and char in NAME_CHARS:
            name_end = _name_end(text, pos)
            keys.append(text[pos:name_end])
            pos = name_end
        else:
            break
    if not keys:
        raise PathError("expected a field name", pos + 1)
    return Path(text[start:pos], tuple(keys)), pos


def _name_end(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in NAME_CHARS:
        pos += 1
    return pos


def _scan_bracket(text: str, pos: int) -> tuple[str | int, int]:
    opening = pos
    pos += 1
    if pos < len(text) and text[pos] in "\"'":
        quote = text[pos]
        close = text.find(quote, pos + 1)
        if close == -1:
            raise PathError(f"unterminated {quote} in path", pos + 1)
        key: str | int = text[pos + 1 : close]
        pos = close + 1
    else:
        digits_end = pos
        # ASCII digits only: str.isdigit() also accepts '²', which int() then refuses.
        while digits_end < len(text) and "0" <= text[digits_end] <= "9":
            digits_end += 1
        if digits_end == pos:
            raise PathError("expected a quoted key or a list index after '['", pos + 1)
        if digits_end - pos > MAX_INDEX_DIGITS:
            raise PathError(f"a list index has at most {MAX_INDEX_DIGITS} digits", pos + 1)
        key = int(text[pos:digits_end])
        pos = digits_end
    if pos >= len(text) or text[pos] != "]":
        raise PathError(f"expected ']' to close the '[' at column {opening + 1}", pos + 1)
    return key, pos + 1
