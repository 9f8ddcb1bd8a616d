"""The `when` condition tokenizer, parser and printer: what they accept and what they refuse."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import conditions

from sop_verified.core.policy.expr import (
    Attr,
    BoolLit,
    BoolOp,
    Cmp,
    Contains,
    CtxAttr,
    Expr,
    Has,
    In,
    IntLit,
    Not,
    SetLit,
    StrLit,
    string_literals,
    to_text,
)
from sop_verified.core.policy.lang import (
    MAX_CONDITION_CHARS,
    MAX_DEPTH,
    MAX_NESTING,
    parse_condition,
)
from sop_verified.core.policy.lexer import MAX_TOKENS, tokenize
from sop_verified.core.policy.typecheck import check_condition
from sop_verified.core.request import INT_MAX, INT_MIN
from sop_verified.errors import PolicyParseError, PolicyValidationError


def test_example_condition_parses_to_expected_tree() -> None:
    e = parse_condition('context.size_bytes <= 4096 && context.phase in ["ASSEMBLE", "FREEZE"]')
    assert e == BoolOp(
        "&&",
        Cmp("<=", CtxAttr("size_bytes"), IntLit(4096)),
        In(CtxAttr("phase"), SetLit(frozenset({"ASSEMBLE", "FREEZE"}))),
    )


def test_and_binds_tighter_than_or() -> None:
    e = parse_condition("true || false && false")
    assert e == BoolOp("||", BoolLit(True), BoolOp("&&", BoolLit(False), BoolLit(False)))


def test_not_binds_tighter_than_comparison() -> None:
    assert parse_condition("!context.emergency == false") == Cmp(
        "==", Not(CtxAttr("emergency")), BoolLit(False)
    )


def test_chains_are_left_associative() -> None:
    e = parse_condition("true && false && true")
    assert e == BoolOp("&&", BoolOp("&&", BoolLit(True), BoolLit(False)), BoolLit(True))


def test_has_contains_attributes_and_negative_ints_parse() -> None:
    e = parse_condition("has context.labels && context.labels.contains(principal) || -5 < 3")
    assert e == BoolOp(
        "||",
        BoolOp("&&", Has("labels"), Contains(CtxAttr("labels"), Attr("principal"))),
        Cmp("<", IntLit(-5), IntLit(3)),
    )


def test_int_bounds_are_the_64_bit_range() -> None:
    assert parse_condition(f"{INT_MIN} < {INT_MAX}") == Cmp("<", IntLit(INT_MIN), IntLit(INT_MAX))
    with pytest.raises(PolicyParseError, match="out of range"):
        parse_condition(f"context.hour < {INT_MAX + 1}")
    with pytest.raises(PolicyParseError, match="out of range"):
        parse_condition(f"context.hour < {INT_MIN - 1}")


def test_string_escapes_are_decoded() -> None:
    e = parse_condition(r'context.tenant == "a\"b\\c\n\u{e9}"')
    assert e == Cmp("==", CtxAttr("tenant"), StrLit('a"b\\c\né'))


def test_positions_are_line_and_column() -> None:
    e = parse_condition("true &&\n  context.hour > 3")
    assert isinstance(e, BoolOp)
    assert (e.right.pos.line, e.right.pos.col) == (2, 16)  # the `>`


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        ("true &&", "unexpected end of condition", "1:8"),
        ("context.hour > 3 )", "unexpected `)`", "1:18"),
        ("context.hour > 3 true", "unexpected `true`", "1:18"),
        ("(true", "unexpected end of condition", "1:6"),
        ("context.hour = 3", "unexpected character `=`, did you mean `==`", "1:14"),
        ("true & false", "did you mean `&&`", "1:6"),
        ("context.phase == 'x'", "did you mean double quotes", "1:18"),
        ('context.phase == "abc', "unterminated string literal", "1:18"),
        ('context.phase == "a\\qb"', "invalid escape", "1:20"),
        ('context.phase == "\\u{d800}"', "invalid escape", "1:19"),
        ("1 < 2 < 3", "comparisons do not chain", "1:7"),
        ("context.hour < 1.5", "decimal number `1.` is not accepted", "1:16"),
        ("context.hour < 12abc", "malformed number", "1:16"),
        ("", "condition is empty", "1:1"),
        ("   \n ", "condition is empty", "2:2"),
        ("foo == 1", "unknown name `foo`", "1:1"),
        ("context == 1", "unexpected `==`", "1:9"),
        ("has principal", "unexpected `principal`", "1:5"),
        ("context.labels.size()", "unexpected `size`", "1:16"),
        ('[1, "a"]', "unexpected `1`", "1:2"),
        ("- context.hour > 1", "an integer literal after `-`", "1:3"),
        ("true $", "unexpected character `$`", "1:6"),
        ('context.tenant == "a\ud800"', "a lone surrogate in a string literal", "1:21"),
    ],
)
def test_malformed_condition_rejected_with_position(text: str, message: str, position: str) -> None:
    with pytest.raises(PolicyParseError, match=re.escape(message)) as info:
        parse_condition(text, "f.toml: policy p1: when")
    assert f"at `f.toml: policy p1: when {position}`" in str(info.value)


def test_trailing_garbage_rejected() -> None:
    with pytest.raises(PolicyParseError, match="unexpected `garbage`"):
        parse_condition("context.hour > 3 garbage")


def test_too_deep_nesting_rejected() -> None:
    text = "(" * (MAX_NESTING + 1) + "true" + ")" * (MAX_NESTING + 1)
    with pytest.raises(PolicyParseError, match="nests more than"):
        parse_condition(text)
    assert parse_condition("(" * MAX_NESTING + "true" + ")" * MAX_NESTING) == BoolLit(True)


def test_too_many_negations_rejected() -> None:
    with pytest.raises(PolicyParseError, match="nests more than"):
        parse_condition("!" * (MAX_NESTING + 1) + "true")


def test_too_deep_tree_rejected() -> None:
    chain = " && ".join(["true"] * (MAX_DEPTH + 1))
    with pytest.raises(PolicyParseError, match="operators deep"):
        parse_condition(chain)
    assert isinstance(parse_condition(" && ".join(["true"] * MAX_DEPTH)), BoolOp)


def test_overlong_condition_rejected() -> None:
    with pytest.raises(PolicyParseError, match="characters long"):
        parse_condition("true" + " " * MAX_CONDITION_CHARS)


def test_too_many_tokens_rejected() -> None:
    text = "[" + ", ".join(['"a"'] * MAX_TOKENS) + "]"
    assert len(text) <= MAX_CONDITION_CHARS * 2
    with pytest.raises(PolicyParseError, match="tokens"):
        tokenize(text)


def test_policy_text_is_never_evaluated_as_python() -> None:
    with pytest.raises(PolicyParseError):
        parse_condition("__import__('os').system('true')")


def test_printer_uses_minimal_parentheses() -> None:
    e = BoolOp(
        "&&", BoolOp("||", BoolLit(True), BoolLit(False)), Not(Cmp("==", IntLit(1), IntLit(2)))
    )
    assert to_text(e) == "(true || false) && !(1 == 2)"


def test_printer_escapes_strings_and_sorts_sets() -> None:
    e = In(StrLit('q"\\\x01'), SetLit(frozenset({"b", "a"})))
    assert to_text(e) == '"q\\"\\\\\\u{1}" in ["a", "b"]'


def test_string_literals_collects_strings_and_set_members() -> None:
    e = parse_condition('context.tenant == "t" || context.phase in ["A", "B"]')
    assert string_literals(e) == {"t", "A", "B"}


@settings(max_examples=300, deadline=None)
@given(conditions)
def test_printed_condition_parses_back_to_itself(e: Expr) -> None:
    assert parse_condition(to_text(e)) == e
    assert to_text(parse_condition(to_text(e))) == to_text(e)


_TOKENS = st.sampled_from(
    [
        "context.hour",
        "context.labels",
        "has",
        "context",
        ".",
        "contains",
        "(",
        ")",
        "[",
        "]",
        ",",
        '"a"',
        "1",
        "-",
        "!",
        "&&",
        "||",
        "==",
        "<",
        "in",
        "true",
        "principal",
        " ",
        '"',
        "\\",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(_TOKENS, max_size=20).map("".join)))
def test_arbitrary_text_fails_only_with_policy_errors(text: str) -> None:
    error: PolicyParseError | PolicyValidationError | None = None
    try:
        check_condition(parse_condition(text))
    except (PolicyParseError, PolicyValidationError) as exc:
        error = exc
    assert error is None or error.where
