"""The S-expression reader: lines, literals, and every cap, before any solver sees the text."""

from __future__ import annotations

import time

import pytest

from sop_verified.core.proofgate.sexpr import Atom, FilterLimits, Kind, SList, read
from sop_verified.errors import InputError, ObligationError

LIMITS = FilterLimits()


def _error(text: str, limits: FilterLimits = LIMITS) -> ObligationError:
    with pytest.raises(ObligationError) as info:
        read(text, limits)
    return info.value


def test_reader_tracks_lines_through_comments_and_strings() -> None:
    nodes = read('; header\n(a\n ; inner ) comment\n "x""y" |q r|)\n(b)', LIMITS)
    first, second = nodes
    assert isinstance(first, SList) and first.line == 2
    assert first.items[0] == Atom(Kind.SYMBOL, "a", 2)
    assert first.items[1] == Atom(Kind.STRING, 'x"y', 4)
    assert first.items[2] == Atom(Kind.SYMBOL, "q r", 4)
    assert isinstance(second, SList) and second.line == 5


def test_reader_classifies_literals() -> None:
    (node,) = read("(f 12 3.50 #xFF #b101 :kw sym)", LIMITS)
    assert isinstance(node, SList)
    kinds = [item.kind for item in node.items if isinstance(item, Atom)]
    assert kinds == [
        Kind.SYMBOL,
        Kind.NUMERAL,
        Kind.DECIMAL,
        Kind.HEX,
        Kind.BINARY,
        Kind.KEYWORD,
        Kind.SYMBOL,
    ]


def test_obligation_error_is_an_input_error_with_code_and_line() -> None:
    err = _error("(a\n(b")
    assert isinstance(err, InputError)
    assert err.code == "syntax" and err.line == 2
    assert "line 2" in str(err)


@pytest.mark.parametrize(
    ("text", "code", "line"),
    [
        ("(a))", "syntax", 1),
        ('(a "unterminated)', "syntax", 1),
        ("(a |unterminated)", "syntax", 1),
        ("(a 007)", "syntax", 1),
        ("(a 12abc)", "syntax", 1),
        ("(a\n\n é)", "syntax", 3),
        ("(a \x0c b)", "syntax", 1),
        ('(a "tab\there")', "syntax", 1),
        ("(a |x\\y|)", "syntax", 1),
    ],
)
def test_malformed_text_is_rejected_with_its_line(text: str, code: str, line: int) -> None:
    err = _error(text)
    assert (err.code, err.line) == (code, line)


def test_hundred_thousand_deep_nesting_is_refused_fast_without_recursion() -> None:
    limits = FilterLimits(max_bytes=1 << 20)
    started = time.perf_counter()
    err = _error("(" * 100_000 + ")" * 100_000, limits)
    assert err.code == "too_deep"
    assert f"deeper than {limits.max_depth}" in str(err)
    assert time.perf_counter() - started < 1.0


def test_nesting_at_the_cap_is_accepted() -> None:
    depth = LIMITS.max_depth
    assert read("(" * depth + ")" * depth, LIMITS)


def test_ten_million_digit_numeral_is_refused_by_the_size_cap_first() -> None:
    err = _error("(assert (> x " + "9" * 10_000_000 + "))")
    assert err.code == "too_large" and "characters long" in str(err)


def test_long_numeral_within_the_size_cap_is_refused() -> None:
    err = _error("(f " + "9" * 41 + ")")
    assert err.code == "too_large" and "41 digits" in str(err)


def test_long_decimal_and_wide_bitvector_literals_are_refused() -> None:
    assert _error("(f 1." + "0" * 40 + ")").code == "too_large"
    assert _error("(f #b" + "1" * 1025 + ")").code == "too_large"
    assert _error("(f #x" + "f" * 257 + ")").code == "too_large"


def test_oversized_strings_symbols_and_token_floods_are_refused() -> None:
    assert _error('(f "' + "a" * 1025 + '")').code == "too_large"
    assert _error("(f " + "s" * 257 + ")").code == "too_large"
    assert _error("(f |" + "s" * 257 + "|)").code == "too_large"
    flood = FilterLimits(max_tokens=100)
    assert _error("(f " + "a " * 200 + ")", flood).code == "too_large"


def test_fifty_megabyte_script_is_refused_before_reading() -> None:
    text = "(assert true)\n" * (50 * 1024 * 1024 // 14)
    started = time.perf_counter()
    err = _error(text)
    assert err.code == "too_large"
    assert time.perf_counter() - started < 0.5


def test_multibyte_text_is_measured_in_bytes() -> None:
    text = '(f "' + "a" * 100 + '") ;' + "é" * 16_400
    assert len(text) < LIMITS.max_bytes < len(text.encode())
    assert _error(text).code == "too_large"


def test_lone_surrogate_is_not_utf8() -> None:
    err = _error("(assert \udcff)")
    assert err.code == "encoding" and "UTF-8" in str(err)


def test_catastrophic_backtracking_inputs_finish_fast() -> None:
    for text in (" " * 30_000 + '"', '"' + "a" * 30_000, "|" + "a" * 30_000, "a" * 30_000 + '"'):
        started = time.perf_counter()
        with pytest.raises(ObligationError):
            read(text, LIMITS)
        assert time.perf_counter() - started < 0.5
