"""An S-expression reader for SMT-LIB 2 text, with line numbers and hard caps.

This is the first filter an obligation meets; no solver sees text this reader
did not accept (z3's own parser acts while it parses: it opens files, changes
process-wide options, stops at ``(exit)``). It reads iteratively (no
recursion, so 100,000-deep nesting is refused, not a crash), tracks lines,
understands ``"..."`` strings with ``""`` escapes, ``|quoted symbols|`` and
``;`` comments, and enforces the caps of :class:`FilterLimits`: input size,
nesting depth, token count, and the length of numerals, bit-vector literals,
strings and symbols (a 10-million-digit numeral kept z3 busy for 20 s).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from sop_verified.errors import ObligationError

__all__ = ["Atom", "FilterLimits", "Kind", "Node", "SList", "read"]


@dataclass(frozen=True, slots=True)
class FilterLimits:
    """Caps applied to every obligation before any solver sees it (spec/OBLIGATIONS.md)."""

    max_bytes: int = 32 * 1024
    max_depth: int = 128
    max_tokens: int = 20_000
    max_numeral_digits: int = 40
    max_bv_width: int = 1024
    max_index: int = 1024
    max_string_chars: int = 1024
    max_symbol_chars: int = 256
    max_assertions: int = 512
    max_expansion: int = 256 * 1024

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_depth, self.max_tokens, self.max_numeral_digits) < 1:
            raise ValueError("filter limits must be positive")
        if self.max_depth > 400:
            raise ValueError("max_depth above 400 would risk the checker's recursion limit")


class Kind:
    """Atom kinds (plain strings, compared by identity-equal constants)."""

    SYMBOL = "symbol"
    KEYWORD = "keyword"
    NUMERAL = "numeral"
    DECIMAL = "decimal"
    HEX = "hex"
    BINARY = "binary"
    STRING = "string"


class Atom(NamedTuple):
    """One token that is not a parenthesis; ``text`` is unquoted for symbols and strings."""

    kind: str
    text: str
    line: int


class SList(NamedTuple):
    """A parenthesised list and the line of its opening parenthesis."""

    items: tuple[Node, ...]
    line: int


Node = Atom | SList

_SYMBOL_CHARS = r"A-Za-z0-9~!@$%^&*_+=<>.?/\-"
_END = r"(?![^ \t\r\n()\";|])"  # an atom must be followed by a delimiter
_TOKEN = re.compile(
    rf"""
    (?P<ws>[ \t\r\n]+)
  | (?P<comment>;[^\n]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<symbol>[A-Za-z~!@$%^&*_+=<>.?/\-][{_SYMBOL_CHARS}]*){_END}
  | (?P<numeral>[0-9]+){_END}
  | (?P<decimal>[0-9]+\.[0-9]+){_END}
  | (?P<hex>\#x[0-9A-Fa-f]+){_END}
  | (?P<binary>\#b[01]+){_END}
  | (?P<keyword>:[{_SYMBOL_CHARS}]+){_END}
  | (?P<string>"[^"]*(?:""[^"]*)*")
  | (?P<qsym>\|[^|\\]*\|)
  | (?P<bad>[^ \t\r\n()";|]+)
    """,
    re.VERBOSE,
)
_PRINTABLE = re.compile(r"[\x20-\x7e]*")

_SYNTAX = (
    "SMT-LIB 2 tokens: `(`, `)`, symbols, `:keywords`, numerals, decimals, #x/#b literals, strings"
)


def _check_atom(kind: str, text: str, line: int, limits: FilterLimits) -> None:
    if kind == Kind.SYMBOL:
        if len(text) > limits.max_symbol_chars:
            _symbol(text, line, limits)
        return
    if kind in (Kind.NUMERAL, Kind.DECIMAL):
        digits = len(text) - (kind == Kind.DECIMAL)
        if digits > limits.max_numeral_digits:
            raise ObligationError(
                f"{kind} of {digits} digits",
                code="too_large",
                line=line,
                accepted=f"at most {limits.max_numeral_digits} digits",
            )
        if text[0] == "0" and len(text) > 1 and text[1] != ".":
            raise ObligationError(f"numeral `{text}` has a leading zero", code="syntax", line=line)
    elif kind in (Kind.HEX, Kind.BINARY):
        bits = (len(text) - 2) * (4 if kind == Kind.HEX else 1)
        if bits > limits.max_bv_width:
            raise ObligationError(
                f"bit-vector literal of {bits} bits",
                code="too_large",
                line=line,
                accepted=f"at most {limits.max_bv_width} bits",
            )


def _symbol(name: str, line: int, limits: FilterLimits) -> Atom:
    if len(name) > limits.max_symbol_chars:
        raise ObligationError(
            f"symbol of {len(name)} characters",
            code="too_large",
            line=line,
            accepted=f"at most {limits.max_symbol_chars} characters",
        )
    if not name or _PRINTABLE.fullmatch(name) is None:
        raise ObligationError(
            "quoted symbol is empty or has a character outside printable ASCII",
            code="syntax",
            line=line,
            accepted="printable ASCII (0x20-0x7e), no `|` or `\\`",
        )
    return Atom(Kind.SYMBOL, name, line)


def _string(raw: str, line: int, limits: FilterLimits) -> Atom:
    text = raw[1:-1].replace('""', '"')
    if len(text) > limits.max_string_chars:
        raise ObligationError(
            f"string literal of {len(text)} characters",
            code="too_large",
            line=line,
            accepted=f"at most {limits.max_string_chars} characters",
        )
    if _PRINTABLE.fullmatch(text) is None:
        raise ObligationError(
            "string literal has a character outside printable ASCII",
            code="syntax",
            line=line,
            accepted="printable ASCII (0x20-0x7e); write others as `\\u{...}` escapes",
        )
    return Atom(Kind.STRING, text, line)


def _check_size(text: str, limits: FilterLimits) -> None:
    if len(text) > limits.max_bytes:
        raise ObligationError(
            f"obligation is {len(text)} characters long",
            code="too_large",
            accepted=f"at most {limits.max_bytes} bytes",
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ObligationError(
            f"obligation is not valid UTF-8 (a lone surrogate at offset {exc.start})",
            code="encoding",
            accepted="UTF-8 text",
        ) from None
    if size > limits.max_bytes:
        raise ObligationError(
            f"obligation is {size} bytes long",
            code="too_large",
            accepted=f"at most {limits.max_bytes} bytes",
        )


def read(text: str, limits: FilterLimits) -> list[Node]:
    """Read ``text`` into top-level S-expressions, enforcing every cap.

    Args:
        text: untrusted SMT-LIB 2 text.
        limits: the caps.

    Returns:
        The top-level nodes, in order.

    Raises:
        ObligationError: too large, not UTF-8, too deep, too many tokens,
            unbalanced, unterminated, or a malformed or oversized token; the
            error names the line.
    """
    _check_size(text, limits)
    return _read(text, limits)


def _read(text: str, limits: FilterLimits) -> list[Node]:
    stack: list[tuple[list[Node], int]] = []
    top: list[Node] = []
    current = top
    line, pos, tokens, end = 1, 0, 0, len(text)
    match = _TOKEN.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            raise _unreadable(text[pos], line)
        kind, value = m.lastgroup, m.group()
        pos = m.end()
        if kind in ("ws", "comment"):
            line += value.count("\n")
            continue
        tokens += 1
        if tokens > limits.max_tokens:
            raise ObligationError(
                f"obligation has more than {limits.max_tokens} tokens",
                code="too_large",
                line=line,
            )
        if kind == "open":
            if len(stack) >= limits.max_depth:
                raise ObligationError(
                    f"nesting deeper than {limits.max_depth}",
                    code="too_deep",
                    line=line,
                    accepted=f"at most {limits.max_depth} levels of parentheses",
                )
            stack.append((current, line))
            current = []
        elif kind == "close":
            if not stack:
                raise ObligationError("unbalanced `)`", code="syntax", line=line)
            parent, opened = stack.pop()
            parent.append(SList(tuple(current), opened))
            current = parent
        elif kind == "string":
            current.append(_string(value, line, limits))
        elif kind == "qsym":
            current.append(_symbol(value[1:-1], line, limits))
            line += value.count("\n")
        elif kind == "bad" or kind is None:
            raise ObligationError(
                f"malformed token `{value[:40]}`", code="syntax", line=line, accepted=_SYNTAX
            )
        else:
            _check_atom(kind, value, line, limits)
            current.append(Atom(kind, value, line))
    if stack:
        raise ObligationError(
            "unbalanced `(`: the text ends inside a list", code="syntax", line=stack[-1][1]
        )
    return top


def _unreadable(char: str, line: int) -> ObligationError:
    if char == '"':
        return ObligationError("unterminated string literal", code="syntax", line=line)
    if char == "|":
        return ObligationError(
            "unterminated or malformed quoted symbol",
            code="syntax",
            line=line,
            accepted="`|...|` without `|` or `\\` inside",
        )
    return ObligationError(
        f"unexpected character `{char!r}`", code="syntax", line=line, accepted=_SYNTAX
    )
