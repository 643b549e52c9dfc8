"""Stories of the trigger language: which events a mapping's trigger picks, and how it says no."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.pipeline.triggers import Trigger, TriggerSyntaxError, compile_trigger

# Given an "Order Completed" track call carrying one value of each kind the language deals with.
ORDER: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": None,
    "properties": {
        "plan": "pro",
        "total": 10,
        "revenue": 9.5,
        "quantity": "10",
        "paid": True,
        "refunded": False,
        "one": 1,
        "and_more": "yes",
        "note": 'say "hi" \\ bye',
        "products": [{"sku": "A-1"}, {"sku": "B-2"}],
    },
    "integrations": {"Rokt Conversions API": {"rtid": "abc123"}},
}


def matches(text: str, event: dict[str, Any] = ORDER) -> bool:
    return compile_trigger(text).matches(event)


# --- when a trigger is matched against the order, then it holds or not --------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('type = "track"', True),
        ('type = "identify"', False),
        ('type != "identify"', True),
        ('type != "track"', False),
        ("properties.total = 10", True),
        ("properties.total = 11", False),
        ("properties.total != 11", True),
        ("properties.revenue = 9.5", True),
        ("properties.paid = true", True),
        ("properties.refunded = false", True),
        ("properties.paid = false", False),
        ("userId = null", True),
        ("properties.plan = null", False),
        ("properties.plan != null", True),
    ],
)
def test_equality_and_inequality_compare_the_value_at_the_path(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("properties.total < 11", True),
        ("properties.total < 10", False),
        ("properties.total <= 10", True),
        ("properties.total <= 9.99", False),
        ("properties.total > 9.5", True),
        ("properties.total > 10", False),
        ("properties.total >= 10.0", True),
        ("properties.total >= 10.5", False),
        ("properties.revenue > -1", True),
        ("properties.revenue < -1", False),
        ('properties.plan < "z"', True),
        ('properties.plan > "pra"', True),
        ('properties.plan >= "pro"', True),
        ('properties.plan <= "prn"', False),
    ],
)
def test_ordering_compares_numbers_with_numbers_and_strings_with_strings(
    text: str, expected: bool
) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Then numbers compare numerically, whatever way they are written.
        ("properties.total = 10.0", True),
        ("properties.revenue = 9.50", True),
        # Then a string of digits is not a number, in either direction.
        ('properties.total = "10"', False),
        ("properties.quantity = 10", False),
        ('properties.total != "10"', True),
        ("properties.quantity > 5", False),
        ('properties.total < "99"', False),
        # Then booleans are not numbers, though Python's True == 1.
        ("properties.paid = 1", False),
        ("properties.one = true", False),
        ("properties.paid != 1", True),
        ("properties.paid > 0", False),
        ("properties.one >= 1", True),
        # Then ordering against true, false or null never holds.
        ("properties.paid >= true", False),
        ("userId <= null", False),
    ],
)
def test_types_are_strict_string_never_number_and_bool_never_number(
    text: str, expected: bool
) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('contains(event, "Order")', True),
        ('contains(event, "Completed")', True),
        ('contains(event, "order")', False),  # case-sensitive
        ('contains(event, "")', True),
        ('contains(properties.total, "1")', False),  # a number is not a string
        ('match(event, "Order*")', True),
        ('match(event, "*Completed")', True),
        ('match(event, "Order")', False),  # anchored: the whole value must match
        ('match(event, "Order?Completed")', True),
        ('match(event, "Order?")', False),  # ? is exactly one character
        ('match(event, "*")', True),
        ('match(event, "O*r*C*d")', True),
        ('match(event, "order*")', False),
        ('match(properties.products[0].sku, "?-?")', True),
        ('match(properties.total, "*")', False),
        # Then everything other than * and ? is literal, regex characters included.
        ('match(properties.products[0].sku, "A.1")', False),
        ('match(properties.products[0].sku, "[A]-1")', False),
        ('match(properties.note, "say*bye")', True),
    ],
)
def test_contains_and_match_look_inside_string_values(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_match_wildcards_stand_for_line_breaks_too() -> None:
    # Given a value spanning lines, when matched with * and ?, then the line break is a character.
    event = {"event": "Order\nCompleted"}
    assert matches('match(event, "Order*")', event)
    assert matches('match(event, "Order?Completed")', event)


def test_a_pathological_glob_on_a_long_value_does_not_backtrack() -> None:
    # Given a glob that a naive regex would explore in len(value) ** 5 steps,
    # when matched against a long crafted value, then it answers (and the suite does not hang).
    event = {"event": "a" * 20_000}
    assert not matches('match(event, "*a*a*a*a*a*b")', event)
    assert matches('match(event, "*a*a*a*a*a*")', event)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("properties.plan exists", True),
        ("userId exists", True),  # present, though null
        ("properties.coupon exists", False),
        ("properties.plan not exists", False),
        ("properties.coupon not exists", True),
        ("userId not exists", False),
    ],
)
def test_exists_asks_whether_the_path_is_present(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('type = "track" and event = "Order Completed"', True),
        ('type = "track" and event = "Signup"', False),
        ('type = "identify" or event = "Order Completed"', True),
        ('type = "identify" or event = "Signup"', False),
        ('not type = "identify"', True),
        ('not type = "track"', False),
        ('not not type = "track"', True),
        ('(type = "track")', True),
        ('((type = "track"))', True),
        # Then `and` binds tighter than `or`: this is F or (T and F), not (F or T) and F.
        ('type = "x" or type = "track" and event = "x"', False),
        ('(type = "x" or type = "track") and event = "Order Completed"', True),
        # Then `not` binds tighter than `and` and `or`: (not T) and F, (not F) or F.
        ('not type = "track" and event = "x"', False),
        ('not type = "x" or event = "x"', True),
        ('not (type = "track" and event = "x")', True),
        # Then long chains mix freely.
        ('type = "a" or type = "b" or type = "c" or type = "track"', True),
        (
            'type = "track" and event exists and properties.total > 1 and properties.paid = true',
            True,
        ),
        (
            'type = "track" and event exists and properties.total > 1 and properties.paid = false',
            False,
        ),
    ],
)
def test_and_or_not_and_parentheses_combine_conditions(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('integrations["Rokt Conversions API"].rtid = "abc123"', True),
        ("integrations['Rokt Conversions API'].rtid exists", True),
        ('integrations["Rokt"].rtid exists', False),
        ('properties.products[0].sku = "A-1"', True),
        ('properties.products[1].sku = "B-2"', True),
        ("properties.products[2].sku exists", False),
        ('properties["plan"] = "pro"', True),
        ('["type"] = "track"', True),
    ],
)
def test_paths_reach_quoted_keys_and_list_items(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    "text",
    [
        'properties.coupon = "x"',
        "properties.coupon = null",
        "properties.coupon < 1",
        "properties.coupon <= 1",
        "properties.coupon > 1",
        'properties.coupon >= "a"',
        'contains(properties.coupon, "")',
        'match(properties.coupon, "*")',
        "properties.coupon exists",
        'nothing.at.all = "x"',
        'properties.plan.deeper = "pro"',  # through a string
        'properties.products.sku = "A-1"',  # a name into a list
        "properties.total[0] exists",  # an index into a number
        'event[0] = "O"',  # strings are not lists
    ],
)
def test_a_missing_path_satisfies_no_condition(text: str) -> None:
    assert matches(text) is False


@pytest.mark.parametrize(
    "text",
    ['properties.coupon != "x"', "properties.coupon != null", "properties.coupon not exists"],
)
def test_a_missing_path_satisfies_every_negation(text: str) -> None:
    assert matches(text) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r'properties.note = "say \"hi\" \\ bye"', True),
        (r"properties.note = 'say \"hi\" \\ bye'", True),
        ("properties.note = 'say \"hi\" \\\\ bye'", True),
        (r"properties.and_more = 'yes'", True),
        (r"event = 'Order\'s'", False),
        (r'contains(properties.note, "\"hi\"")', True),
    ],
)
def test_strings_take_backslash_escapes_in_either_quotes(text: str, expected: bool) -> None:
    assert matches(text) is expected


@pytest.mark.parametrize(
    ("text", "event"),
    [
        ('properties.and_more = "yes"', {"properties": {"and_more": "yes"}}),
        ('order = "x"', {"order": "x"}),
        ('notes exists and android = "x"', {"notes": 1, "android": "x"}),
        ("existsness = true", {"existsness": True}),
        ("null_value = null", {"null_value": None}),
        ("truely = false", {"truely": False}),
        ('contains_x = "y"', {"contains_x": "y"}),
        ('matches = "y"', {"matches": "y"}),
        ("context.not.and.or exists", {"context": {"not": {"and": {"or": 1}}}}),
        ('AND = "y"', {"AND": "y"}),  # keywords are lowercase only
        ('["match"] = "y" and ["exists"] exists', {"match": "y", "exists": 0}),
    ],
)
def test_keywords_count_only_as_whole_lowercase_words(text: str, event: dict[str, Any]) -> None:
    assert matches(text, event)


def test_whitespace_is_optional_between_tokens_and_may_span_lines() -> None:
    assert matches('type="track"and(event!="x"or\nproperties.total>=-1)')
    assert matches('  type\t=\n"track"  ')


def test_a_trigger_keeps_its_text_and_compares_by_it() -> None:
    # Given two compilations of the same text, then they are the same trigger.
    trigger = compile_trigger('type = "track"')
    assert trigger.text == 'type = "track"'
    assert trigger == Trigger('type = "track"')
    assert hash(trigger) == hash(compile_trigger('type = "track"'))
    assert repr(trigger) == "Trigger(text='type = \"track\"')"


def test_segment_presets_pick_their_events() -> None:
    send = compile_trigger('type = "track" and event = "Order Completed"')
    sync = compile_trigger('type = "identify"')
    identify = {"type": "identify", "traits": {"email": "a@b.c"}}
    assert send.matches(ORDER)
    assert not send.matches(identify)
    assert sync.matches(identify)
    assert not sync.matches(ORDER)


# --- when a trigger cannot be parsed, then the error says where and why --------------------------

VALUE = 'a value (a "string", a number, true, false or null)'


@pytest.mark.parametrize(
    ("text", "column", "message"),
    [
        ("", 1, "expected a condition, found end of input"),
        ("   ", 4, "expected a condition, found end of input"),
        ("type = ", 8, f"expected {VALUE} after '=', found end of input"),
        ("x < )", 5, f"expected {VALUE} after '<', found ')'"),
        ("x = and", 5, f"expected {VALUE} after '=', found 'and'"),
        (
            "type = track",
            8,
            f"expected {VALUE} after '=', found 'track' (strings need quotes, as in \"track\")",
        ),
        ('type == "track"', 7, "unexpected '=': equality is a single '='"),
        ('type = "track" and', 19, "expected a condition after 'and', found end of input"),
        ('type = "track" or )', 19, "expected a condition after 'or', found ')'"),
        ("not", 4, "expected a condition after 'not', found end of input"),
        ("( )", 3, "expected a condition after '(', found ')'"),
        ('= "x"', 1, "expected a condition, found '='"),
        ('"x" = type', 1, 'expected a condition, found "x"'),
        ("3 = x", 1, "expected a condition, found 3"),
        ("true", 1, "expected a condition, found 'true'"),
        (
            '(type = "track"',
            16,
            "expected ')' to close the '(' at column 1, found end of input",
        ),
        (
            "x exists and (a = 1 b = 2)",
            21,
            "expected ')' to close the '(' at column 14, found 'b'",
        ),
        ('type = "track', 8, 'unterminated string: expected a closing ", found end of input'),
        ("type = 'tr\\'", 8, "unterminated string: expected a closing ', found end of input"),
        ('x = "a\\', 5, 'unterminated string: expected a closing ", found end of input'),
        ('x = "a\\n"', 7, "unsupported escape \\n: only \\\", \\' and \\\\ are allowed"),
        ("contains event", 10, "expected '(' after 'contains', found 'event'"),
        (
            'contains("x", event)',
            10,
            'expected a path as the first argument of contains(), found "x"',
        ),
        ('contains(event "x")', 16, "expected ',' after the path in contains(), found \"x\""),
        (
            "contains(event, x)",
            17,
            "expected a \"string\" as the second argument of contains(), found 'x'",
        ),
        (
            "match(event, 3)",
            14,
            'expected a "string" pattern as the second argument of match(), found 3',
        ),
        ('match(event, "x"', 17, "expected ')' to close the '(' at column 6, found end of input"),
        (
            'type "track"',
            6,
            'expected an operator (=, !=, <, <=, >, >=, exists) after the path, found "track"',
        ),
        (
            "type",
            5,
            "expected an operator (=, !=, <, <=, >, >=, exists) after the path, found end of input",
        ),
        ("x not = 1", 7, "expected 'exists' after 'not', found '='"),
        ('type = "x" )', 12, "unexpected ')' without a matching '('"),
        ('type = "x" event = "y"', 12, "expected 'and', 'or' or end of input, found 'event'"),
        ("x ! = 1", 3, "unexpected character '!': did you mean '!='?"),
        ("x = @", 5, "unexpected character '@'"),
        ("$.type exists", 1, "unexpected character '$'"),
        ("x = 3.", 5, "malformed number 3."),
        ("x = 1e5", 5, "malformed number 1e5"),
        (
            "x = --1",
            5,
            f"expected {VALUE} after '=', found '--1' (strings need quotes, as in \"--1\")",
        ),
        ("x = " + "9" * 5000, 5, "number too long"),
        (
            "(" * 33 + "x exists" + ")" * 33,
            33,
            "too deeply nested: more than 32 levels of '(' and 'not'",
        ),
        ("not " * 33 + "x exists", 129, "too deeply nested: more than 32 levels of '(' and 'not'"),
        # Then a bad path reports paths.py's message at its column in the whole trigger.
        ('properties. = "x"', 12, "expected a field name after '.'"),
        ('x = 1 and a["b = 1', 13, 'unterminated " in path'),
        ("x = 1 and a[b] = 1", 13, "expected a quoted key or a list index after '['"),
        ("a[0 = 1", 4, "expected ']' to close the '[' at column 2"),
    ],
)
def test_each_syntax_error_names_what_was_expected_and_where(
    text: str, column: int, message: str
) -> None:
    with pytest.raises(TriggerSyntaxError) as caught:
        compile_trigger(text)
    error = caught.value
    assert (error.column, error.message) == (column, message)
    assert str(error) == f"column {column}: {message}"
    assert error.text == text


def test_a_syntax_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^column 8: expected a value"):
        compile_trigger("type = ")


def test_the_caret_points_under_the_column() -> None:
    with pytest.raises(TriggerSyntaxError) as caught:
        compile_trigger('type = "track" and')
    assert caught.value.caret() == 'type = "track" and\n                  ^'


def test_the_caret_stays_aligned_on_a_trigger_written_over_several_lines() -> None:
    # Given a trigger from a config file, with a line break and a tab before the mistake,
    # then the caret output is still two lines, with the caret under the mistake.
    with pytest.raises(TriggerSyntaxError) as caught:
        compile_trigger('type = "track"\n\tand event = ')
    assert caught.value.caret() == 'type = "track"  and event = \n                            ^'


@pytest.mark.parametrize("text", ["a[²] = 1", "a[" + "1" * 5000 + "] = 1"])
def test_a_malformed_list_index_is_a_syntax_error(text: str) -> None:
    with pytest.raises(TriggerSyntaxError):
        compile_trigger(text)


# --- for any text at all, then the parser answers with a trigger or a syntax error ---------------

# Pieces of triggers, so that random text often gets deep into the grammar.
FRAGMENTS = st.sampled_from(
    [
        " ", "type", "event", "properties", ".", "[", "]", "0", "12", "-", "3.5", '"', "'", "\\",
        '"x"', "'y'", "(", ")", ",", "=", "!", "!=", "<", "<=", ">", ">=", "and", "or", "not",
        "exists", "true", "false", "null", "contains", "match", "*", "?", "\n", "é", "$",
    ]
)  # fmt: skip
TEXTS = st.text() | st.lists(FRAGMENTS, max_size=30).map("".join)


def compile_or_error(text: str) -> Trigger | TriggerSyntaxError:
    try:
        return compile_trigger(text)
    except TriggerSyntaxError as error:
        return error


@given(TEXTS)
def test_any_text_compiles_or_raises_a_syntax_error_with_a_column_inside_it(text: str) -> None:
    outcome = compile_or_error(text)
    if isinstance(outcome, TriggerSyntaxError):
        assert 1 <= outcome.column <= len(text) + 1
        assert outcome.caret().splitlines()[-1] == " " * (outcome.column - 1) + "^"
    else:
        # Then a compiled trigger answers yes or no on any event, never raising.
        assert outcome.matches(ORDER) in (True, False)
        assert outcome.matches({}) in (True, False)


# Valid triggers built from the grammar, with paths the order has, lacks, or holds null at.
PATHS = st.sampled_from(
    ["type", "userId", "properties.total", "properties.plan", "properties.coupon", "event"]
)
VALUES = st.sampled_from(['"track"', '"pro"', "10", "10.0", "-1.5", "true", "false", "null"])
CONDITIONS = (
    st.tuples(PATHS, st.sampled_from(["=", "!=", "<", "<=", ">", ">="]), VALUES).map(" ".join)
    | st.tuples(PATHS, st.sampled_from(["exists", "not exists"])).map(" ".join)
    | st.tuples(
        st.sampled_from(["contains", "match"]), PATHS, st.sampled_from(['"o"', '"*o?"'])
    ).map(lambda call: f"{call[0]}({call[1]}, {call[2]})")
)
TRIGGERS = st.recursive(
    CONDITIONS,
    lambda inner: (
        st.tuples(inner, st.sampled_from(["and", "or"]), inner).map(" ".join)
        | inner.map(lambda text: f"not {text}")
        | inner.map(lambda text: f"({text})")
    ),
    max_leaves=12,
)


@given(TRIGGERS)
def test_every_trigger_of_the_grammar_compiles_and_not_inverts_it(text: str) -> None:
    # Given any trigger the grammar allows, when negated as a whole, then it answers the opposite.
    assert compile_trigger(f"not ({text})").matches(ORDER) is not matches(text)
