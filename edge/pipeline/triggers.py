"""Trigger conditions of mappings: `type = "track" and event = "Order Completed"`.

The language is Segment's trigger language (FQL-like), kept small. A trigger is parsed once, when
the configuration is loaded, into nested closures: matching an event is then a few function calls
and dictionary look-ups, with no parsing or dispatch on operator names at run time.

Grammar:

    expr       := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | primary
    primary    := "(" expr ")" | call | condition
    call       := ("contains" | "match") "(" path "," STRING ")"
    condition  := path ("=" | "!=" | "<" | "<=" | ">" | ">=") value
                | path "exists"
                | path "not" "exists"
    value      := STRING | NUMBER | "true" | "false" | "null"

    STRING     := '"' ... '"' | "'" ... "'"     backslash escapes \\" \\' and \\\\ only
    NUMBER     := ["-"] DIGITS ["." DIGITS]
    path       := a path of paths.py without the "$" root: properties.plan,
                  integrations["Rokt Conversions API"].rtid, properties.products[0].sku

Keywords (and, or, not, exists, true, false, null, contains, match) are lowercase whole words;
`properties.and_more` is a path. A top-level field named like a keyword is written `["match"]`.

What each operator means (`=` on numbers and strings, a missing path, globs in `match`):
docs/mappings.md#triggers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from edge.pipeline.paths import MISSING, NAME_CHARS, Path, PathError, scan_path

_Test = Callable[[Mapping[str, Any]], bool]
_Literal = str | int | float | bool | None

KEYWORDS: Final = frozenset(
    {"and", "or", "not", "exists", "true", "false", "null", "contains", "match"}
)
_CONSTANTS: Final[dict[str, _Literal]] = {"true": True, "false": False, "null": None}
_COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_OPERATORS: Final = frozenset({"=", "!=", *_COMPARISONS})
_SYMBOLS: Final = ("!=", "<=", ">=", "(", ")", ",", "=", "<", ">")  # two-character ones first
_NUMBER: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
# Events are decoded JSON, whose numbers are exactly int or float; testing the exact type also
# leaves out bool, which is a subclass of int but not a number here.
_NUMBER_TYPES: Final = frozenset({int, float})
# Each level is a few parser frames and a closure call at match time; a cap keeps both far from
# Python's recursion limit, whatever the text.
_MAX_DEPTH: Final = 32

_VALUE_EXPECTED: Final = 'a value (a "string", a number, true, false or null)'


class TriggerSyntaxError(ValueError):
    """A trigger that cannot be parsed; `column` is 1-based within `text`."""

    def __init__(self, message: str, column: int, text: str) -> None:
        super().__init__(f"column {column}: {message}")
        self.message = message
        self.column = column
        self.text = text

    def caret(self) -> str:
        """The text, and under it a caret at the column."""
        # Tabs and line breaks would misalign the caret (or split the text over lines).
        shown = "".join(" " if char.isspace() else char for char in self.text)
        return f"{shown}\n{' ' * (self.column - 1)}^"


@dataclass(frozen=True)
class Trigger:
    """A parsed trigger. Constructing one parses it, so a Trigger is always valid."""

    text: str
    _test: _Test = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_test", _Parser(self.text).parse())

    def matches(self, event: Mapping[str, Any]) -> bool:
        return self._test(event)


def compile_trigger(text: str) -> Trigger:
    """Parse a trigger; raise TriggerSyntaxError pointing at the first problem."""
    return Trigger(text)


# --- tokens ----------------------------------------------------------------------------------

_Kind = Literal["string", "number", "path", "keyword", "symbol", "end"]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _Kind
    text: str  # as written in the trigger
    column: int
    value: _Literal | Path = None

    def is_(self, kind: _Kind, text: str) -> bool:
        return self.kind == kind and self.text == text

    def describe(self) -> str:
        """The token as error messages name it after "found"."""
        if self.kind == "end":
            return "end of input"
        if self.kind in ("string", "number"):
            return self.text
        return f"'{self.text}'"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            tokens.append(_Token("end", "", pos + 1))
            return tokens
        start = pos
        char = text[pos]
        if char in "\"'":
            string, pos = _scan_string(text, pos)
            tokens.append(_Token("string", text[start:pos], start + 1, string))
        elif _is_digit(char) or (char == "-" and _is_digit(text[pos + 1 : pos + 2])):
            number, pos = _scan_number(text, pos)
            tokens.append(_Token("number", text[start:pos], start + 1, number))
        elif char in NAME_CHARS or char == "[":
            try:
                path, pos = scan_path(text, pos, rooted=False)
            except PathError as error:
                raise TriggerSyntaxError(error.message, error.column, text) from error
            # A keyword is a whole path of one bare name: `and_more` and `["and"]` are paths.
            kind: _Kind = "keyword" if path.text in KEYWORDS else "path"
            tokens.append(_Token(kind, path.text, start + 1, path))
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, pos)), None)
            if symbol is None:
                hint = ": did you mean '!='?" if char == "!" else ""
                raise TriggerSyntaxError(f"unexpected character {char!r}{hint}", pos + 1, text)
            pos += len(symbol)
            tokens.append(_Token("symbol", symbol, start + 1))


def _is_digit(char: str) -> bool:
    # str.isdigit() also accepts other scripts' digits and superscripts, which are not numbers here.
    return len(char) == 1 and "0" <= char <= "9"


def _scan_string(text: str, start: int) -> tuple[str, int]:
    quote = text[start]
    chars: list[str] = []
    pos = start + 1
    while pos < len(text):
        char = text[pos]
        if char == quote:
            return "".join(chars), pos + 1
        if char == "\\":
            escaped = text[pos + 1 : pos + 2]
            if not escaped:
                break
            if escaped not in ("\\", '"', "'"):
                raise TriggerSyntaxError(
                    f"unsupported escape \\{escaped}: only \\\", \\' and \\\\ are allowed",
                    pos + 1,
                    text,
                )
            char = escaped
            pos += 1
        chars.append(char)
        pos += 1
    raise TriggerSyntaxError(
        f"unterminated string: expected a closing {quote}, found end of input", start + 1, text
    )


def _scan_number(text: str, start: int) -> tuple[int | float, int]:
    # Read the whole word so that `3.` or `10abc` is reported as one bad number, not as a
    # number followed by something puzzling.
    pos = start + 1
    while pos < len(text) and (text[pos] in NAME_CHARS or text[pos] == "."):
        pos += 1
    word = text[start:pos]
    if not _NUMBER.fullmatch(word):
        raise TriggerSyntaxError(f"malformed number {word}", start + 1, text)
    if "." in word:
        return float(word), pos
    try:
        return int(word), pos
    except ValueError:  # more digits than Python converts (sys.get_int_max_str_digits)
        raise TriggerSyntaxError("number too long", start + 1, text) from None


# --- parser ----------------------------------------------------------------------------------


class _Parser:
    """Recursive descent over the tokens, one method per grammar rule, building closures."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def parse(self) -> _Test:
        test = self._or("")
        token = self._peek()
        if token.is_("symbol", ")"):
            raise self._error("unexpected ')' without a matching '('", token)
        if token.kind != "end":
            raise self._error(
                f"expected 'and', 'or' or end of input, found {token.describe()}", token
            )
        return test

    # `after` names what came just before the first condition, for "expected a condition" errors.
    def _or(self, after: str) -> _Test:
        tests = [self._and(after)]
        while self._peek().is_("keyword", "or"):
            self._next()
            tests.append(self._and(" after 'or'"))
        return _any(tests)

    def _and(self, after: str) -> _Test:
        tests = [self._not(after)]
        while self._peek().is_("keyword", "and"):
            self._next()
            tests.append(self._not(" after 'and'"))
        return _all(tests)

    def _not(self, after: str) -> _Test:
        token = self._peek()
        if not token.is_("keyword", "not"):
            return self._primary(after)
        self._next()
        self._descend(token)
        test = _negation(self._not(" after 'not'"))
        self.depth -= 1
        return test

    def _primary(self, after: str) -> _Test:
        token = self._next()
        if token.is_("symbol", "("):
            self._descend(token)
            test = self._or(" after '('")
            self._close(token)
            self.depth -= 1
            return test
        if token.kind == "keyword" and token.text in ("contains", "match"):
            return self._call(token)
        if token.kind == "path":
            return self._condition(token)
        raise self._error(f"expected a condition{after}, found {token.describe()}", token)

    def _call(self, name: _Token) -> _Test:
        function = name.text
        opening = self._next()
        if not opening.is_("symbol", "("):
            raise self._error(
                f"expected '(' after '{function}', found {opening.describe()}", opening
            )
        target = self._next()
        if target.kind != "path":
            raise self._error(
                f"expected a path as the first argument of {function}(), found {target.describe()}",
                target,
            )
        comma = self._next()
        if not comma.is_("symbol", ","):
            raise self._error(
                f"expected ',' after the path in {function}(), found {comma.describe()}", comma
            )
        argument = self._next()
        if argument.kind != "string":
            noun = '"string" pattern' if function == "match" else '"string"'
            raise self._error(
                f"expected a {noun} as the second argument of {function}(), "
                f"found {argument.describe()}",
                argument,
            )
        self._close(opening)
        assert isinstance(target.value, Path)
        assert isinstance(argument.value, str)
        if function == "match":
            return _glob(target.value, argument.value)
        return _contains(target.value, argument.value)

    def _condition(self, target: _Token) -> _Test:
        assert isinstance(target.value, Path)
        path = target.value
        token = self._next()
        if token.is_("keyword", "exists"):
            return _exists(path)
        if token.is_("keyword", "not"):
            following = self._next()
            if not following.is_("keyword", "exists"):
                raise self._error(
                    f"expected 'exists' after 'not', found {following.describe()}", following
                )
            return _negation(_exists(path))
        if token.kind == "symbol" and token.text in _OPERATORS:
            return _comparison(path, token.text, self._value(token.text))
        raise self._error(
            "expected an operator (=, !=, <, <=, >, >=, exists) after the path, "
            f"found {token.describe()}",
            token,
        )

    def _value(self, operator_text: str) -> _Literal:
        token = self._next()
        if token.kind in ("string", "number"):
            assert not isinstance(token.value, Path)
            return token.value
        if token.kind == "keyword" and token.text in _CONSTANTS:
            return _CONSTANTS[token.text]
        if operator_text == "=" and token.is_("symbol", "="):
            raise self._error("unexpected '=': equality is a single '='", token)
        # A bare word where a value belongs is almost always a string missing its quotes.
        hint = f' (strings need quotes, as in "{token.text}")' if token.kind == "path" else ""
        raise self._error(
            f"expected {_VALUE_EXPECTED} after '{operator_text}', found {token.describe()}{hint}",
            token,
        )

    def _close(self, opening: _Token) -> None:
        token = self._next()
        if not token.is_("symbol", ")"):
            raise self._error(
                f"expected ')' to close the '(' at column {opening.column}, "
                f"found {token.describe()}",
                token,
            )

    def _descend(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise self._error(
                f"too deeply nested: more than {_MAX_DEPTH} levels of '(' and 'not'", token
            )

    def _peek(self) -> _Token:
        return self.tokens[self.index]

    def _next(self) -> _Token:
        token = self.tokens[self.index]
        # The end token stays current, so reading past the end keeps reporting "end of input".
        if token.kind != "end":
            self.index += 1
        return token

    def _error(self, message: str, token: _Token) -> TriggerSyntaxError:
        return TriggerSyntaxError(message, token.column, self.text)


# --- closures --------------------------------------------------------------------------------
# Each builder captures what it needs in local variables, so a match does no look-ups beyond the
# event's own.


def _any(tests: list[_Test]) -> _Test:
    if len(tests) == 1:
        return tests[0]
    # Halving keeps the closures of a long chain log2(n) deep, well below the recursion limit,
    # and a pair in a lambda is faster than a loop or any().
    middle = len(tests) // 2
    left, right = _any(tests[:middle]), _any(tests[middle:])
    return lambda event: left(event) or right(event)


def _all(tests: list[_Test]) -> _Test:
    if len(tests) == 1:
        return tests[0]
    middle = len(tests) // 2
    left, right = _all(tests[:middle]), _all(tests[middle:])
    return lambda event: left(event) and right(event)


def _negation(inner: _Test) -> _Test:
    return lambda event: not inner(event)


def _exists(path: Path) -> _Test:
    get = path.get
    return lambda event: get(event) is not MISSING


def _comparison(path: Path, operator_text: str, literal: _Literal) -> _Test:
    if operator_text == "=":
        return _equality(path, literal)
    if operator_text == "!=":
        return _negation(_equality(path, literal))
    get = path.get
    compare = _COMPARISONS[operator_text]
    if isinstance(literal, str):

        def test_string(event: Mapping[str, Any]) -> bool:
            value = get(event)
            return isinstance(value, str) and compare(value, literal)

        return test_string
    if type(literal) in _NUMBER_TYPES:

        def test_number(event: Mapping[str, Any]) -> bool:
            value = get(event)
            return type(value) in _NUMBER_TYPES and compare(value, literal)

        return test_number
    # Ordering against true, false or null never holds (the semantics say so, not an error).
    return lambda event: False


def _equality(path: Path, literal: _Literal) -> _Test:
    get = path.get
    if literal is None or isinstance(literal, bool):
        # None, True and False are singletons, and identity keeps 1 from equalling true.
        return lambda event: get(event) is literal
    if isinstance(literal, str):

        def test_string(event: Mapping[str, Any]) -> bool:
            value = get(event)
            return isinstance(value, str) and value == literal

        return test_string

    def test_number(event: Mapping[str, Any]) -> bool:
        value = get(event)
        return type(value) in _NUMBER_TYPES and value == literal

    return test_number


def _contains(path: Path, needle: str) -> _Test:
    get = path.get

    def test(event: Mapping[str, Any]) -> bool:
        value = get(event)
        return isinstance(value, str) and needle in value

    return test


def _glob(path: Path, pattern: str) -> _Test:
    get = path.get
    fullmatch = _glob_regex(pattern).fullmatch

    def test(event: Mapping[str, Any]) -> bool:
        value = get(event)
        return isinstance(value, str) and fullmatch(value) is not None

    return test


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """The glob as a regex whose time grows at most as len(value) * len(pattern).

    Event values come from browsers, and a plain `.*a.*a.*a.*b` backtracks in time growing with
    len(value) ** 4: 400 characters take a second, a few thousand take hours. Between stars, the
    pieces have a fixed length, so matching each at its first occurrence is always right: an
    atomic group commits to it and never backtracks.
    """
    pieces = [
        "".join("." if char == "?" else re.escape(char) for char in piece)
        for piece in pattern.split("*")
    ]
    if len(pieces) == 1:
        regex = pieces[0]
    else:
        first, *middle, last = pieces
        regex = first + "".join(f"(?>.*?{piece})" for piece in middle if piece) + f".*{last}"
    # DOTALL: a wildcard stands for any character, line breaks included.
    return re.compile(regex, re.DOTALL)
