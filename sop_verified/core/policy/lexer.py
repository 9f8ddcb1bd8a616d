"""The tokenizer of `when` conditions: hand-written, position-tracking, capped.

Tokens are integers (decimal digits), strings (double-quoted, escapes ``\\"``
``\\\\`` ``\\n`` ``\\t`` ``\\r`` ``\\u{hex}``), names and operators; anything
else is a :class:`~sop_verified.errors.PolicyParseError` at line:col.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from sop_verified.core.contracts import ensure
from sop_verified.core.policy.expr import Pos
from sop_verified.core.request import INT_MAX, INT_MIN
from sop_verified.errors import PolicyParseError
from sop_verified.tools.paths import MAX_PATH_LEN

__all__ = ["MAX_STRING_LITERAL", "MAX_TOKENS", "Token", "syntax_error", "tokenize"]

MAX_TOKENS: Final = 1024
MAX_STRING_LITERAL: Final = MAX_PATH_LEN
_TWO_CHAR: Final = frozenset({"&&", "||", "==", "!=", "<=", ">="})
_ONE_CHAR: Final = frozenset("!<>()[],.-")
_ESCAPES: Final = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}
_WHITESPACE: Final = frozenset(" \t\r\n")
_IDENT_START: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_IDENT_CHARS: Final = _IDENT_START | frozenset("0123456789")
_DIGITS: Final = frozenset("0123456789")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True, slots=True)
class Token:
    """One token: ``kind`` is ``int``, ``str``, ``name``, ``op`` or ``eof``; ``text`` its value."""

    kind: str
    text: str
    pos: Pos


@ensure(lambda where, result: result.where.startswith(where), "located where the caller says")
def syntax_error(message: str, pos: Pos, where: str, accepted: str = "") -> PolicyParseError:
    """A parse error located at ``pos`` in the condition (``where`` names file, policy, field).

    Args:
        message: what is wrong.
        pos: line and column in the condition.
        where: the location prefix.
        accepted: what would have been accepted.

    Returns:
        The error, for the caller to raise.
    """
    place = f"{where} {pos}" if where else str(pos)
    return PolicyParseError(message, where=place, accepted=accepted)


class _Lexer:
    """Turns condition text into tokens, tracking line and column."""

    def __init__(self, text: str, where: str) -> None:
        self.text = text
        self.where = where
        self.i = 0
        self.line = 1
        self.col = 1

    def _advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.text[self.i] == "\n":
                self.line += 1
                self.col = 1
            else:
                self.col += 1
            self.i += 1

    def tokens(self) -> list[Token]:
        out: list[Token] = []
        while True:
            while self.i < len(self.text) and self.text[self.i] in _WHITESPACE:
                self._advance()
            pos = Pos(self.line, self.col)
            if self.i >= len(self.text):
                out.append(Token("eof", "", pos))
                return out
            if len(out) >= MAX_TOKENS:
                raise syntax_error(
                    f"condition has more than {MAX_TOKENS} tokens",
                    pos,
                    self.where,
                    accepted=f"at most {MAX_TOKENS} tokens",
                )
            out.append(self._token(pos))

    def _token(self, pos: Pos) -> Token:
        c = self.text[self.i]
        two = self.text[self.i : self.i + 2]
        if two in _TWO_CHAR:
            self._advance(2)
            return Token("op", two, pos)
        if c in _ONE_CHAR:
            self._advance()
            return Token("op", c, pos)
        if c in _DIGITS:
            return self._number(pos)
        if c == '"':
            return self._string(pos)
        if c in _IDENT_START:
            start = self.i
            while self.i < len(self.text) and self.text[self.i] in _IDENT_CHARS:
                self._advance()
            return Token("name", self.text[start : self.i], pos)
        hint = {"&": "`&&`", "|": "`||`", "=": "`==`", "'": 'double quotes `"`'}.get(c, "")
        raise syntax_error(
            f"unexpected character `{c}`" + (f", did you mean {hint}" if hint else ""),
            pos,
            self.where,
            accepted="operators `! && || == != < <= > >= in has .contains()`, literals, attributes",
        )

    def _number(self, pos: Pos) -> Token:
        start = self.i
        while self.i < len(self.text) and self.text[self.i] in _DIGITS:
            self._advance()
        digits = self.text[start : self.i]
        if len(digits) > 19:
            raise syntax_error(
                f"integer literal `{digits[:24]}` is out of range",
                pos,
                self.where,
                accepted=f"integers from {INT_MIN} to {INT_MAX}",
            )
        if self.text[self.i : self.i + 1] == "." and self.text[self.i + 1 : self.i + 2] in _DIGITS:
            raise syntax_error(
                f"decimal number `{digits}.` is not accepted",
                pos,
                self.where,
                accepted="integers only (the language has no floats)",
            )
        if self.i < len(self.text) and self.text[self.i] in _IDENT_START:
            raise syntax_error(
                f"malformed number `{digits}{self.text[self.i]}`",
                pos,
                self.where,
                accepted="decimal integers",
            )
        return Token("int", digits, pos)

    def _string(self, pos: Pos) -> Token:
        self._advance()  # the opening quote
        chars: list[str] = []
        while True:
            if self.i >= len(self.text) or self.text[self.i] == "\n":
                raise syntax_error(
                    "unterminated string literal",
                    pos,
                    self.where,
                    accepted='a closing `"` on the same line',
                )
            c = self.text[self.i]
            if c == '"':
                self._advance()
                break
            if c == "\\":
                chars.append(self._escape())
            elif 0xD800 <= ord(c) <= 0xDFFF:
                raise syntax_error(
                    "a lone surrogate in a string literal",
                    Pos(self.line, self.col),
                    self.where,
                    accepted="Unicode scalar values (no U+D800-U+DFFF)",
                )
            else:
                chars.append(c)
                self._advance()
            if len(chars) > MAX_STRING_LITERAL:
                raise syntax_error(
                    f"string literal is longer than {MAX_STRING_LITERAL} characters",
                    pos,
                    self.where,
                )
        return Token("str", "".join(chars), pos)

    def _escape(self) -> str:
        pos = Pos(self.line, self.col)
        nxt = self.text[self.i + 1 : self.i + 2]
        if nxt in _ESCAPES:
            self._advance(2)
            return _ESCAPES[nxt]
        if nxt == "u" and self.text[self.i + 2 : self.i + 3] == "{":
            end = self.text.find("}", self.i + 3, self.i + 10)
            digits = self.text[self.i + 3 : end] if end > 0 else ""
            if digits and all(d in _HEX for d in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    self._advance(end + 1 - self.i)
                    return chr(code)
        raise syntax_error(
            "invalid escape in string literal",
            pos,
            self.where,
            accepted='`\\"`, `\\\\`, `\\n`, `\\t`, `\\r`, `\\u{hex}` (not a surrogate)',
        )


@ensure(lambda result: result[-1].kind == "eof", "ends with an end-of-input token")
def tokenize(text: str, where: str = "") -> list[Token]:
    """Split condition text into tokens.

    Args:
        text: the condition.
        where: a location prefix for errors.

    Returns:
        The tokens, the last one of kind ``"eof"``.

    Raises:
        PolicyParseError: an unexpected character, a malformed number or string,
            or more than :data:`MAX_TOKENS` tokens.
    """
    return _Lexer(text, where).tokens()
