"""The recursive-descent parser of `when` conditions (tokens from :mod:`.lexer`).

Policy text is data: it is read by a hand-written tokenizer and parser and
never handed to ``eval``, ``exec`` or ``ast.literal_eval``. Lengths, token
counts, nesting and tree depth are capped so a hostile condition cannot
exhaust the stack or the solver. The grammar (EBNF) is in
spec/POLICY_LANGUAGE.md section 3.
"""

from __future__ import annotations

from typing import Final

from sop_verified.core.policy.expr import (
    ATTRIBUTES,
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
    Pos,
    SetLit,
    StrLit,
    children,
)
from sop_verified.core.policy.lexer import (
    MAX_STRING_LITERAL,
    MAX_TOKENS,
    Token,
    syntax_error,
    tokenize,
)
from sop_verified.core.request import INT_MAX, INT_MIN
from sop_verified.errors import PolicyParseError

__all__ = [
    "MAX_CONDITION_CHARS",
    "MAX_DEPTH",
    "MAX_NESTING",
    "MAX_SET_LITERAL",
    "MAX_STRING_LITERAL",
    "MAX_TOKENS",
    "parse_condition",
]

MAX_CONDITION_CHARS: Final = 4096
MAX_NESTING: Final = 32
"""Parentheses, ``!``, ``-`` and ``.contains(...)`` arguments nested inside each other."""
MAX_DEPTH: Final = 64
"""Depth of the syntax tree (a chain of 64 ``&&`` is 64 deep)."""
MAX_SET_LITERAL: Final = 256

_CMP_OPS: Final = frozenset({"==", "!=", "<", "<=", ">", ">="})
_OPERAND: Final = (
    'an operand: an integer, a "string", true, false, a ["set"], `principal`, `action`, '
    "`resource`, `channel`, `context.<name>`, `has context.<name>`, `!`, or `(`"
)


class _Parser:
    """Precedence climbing over the token list: `||` < `&&` < comparison < `!` < postfix."""

    def __init__(self, tokens: list[Token], where: str) -> None:
        self.toks = tokens
        self.k = 0
        self.where = where
        self.nesting = 0

    @property
    def tok(self) -> Token:
        return self.toks[self.k]

    def _take(self) -> Token:
        t = self.toks[self.k]
        if t.kind != "eof":
            self.k += 1
        return t

    def _is(self, kind: str, text: str) -> bool:
        return self.tok.kind == kind and self.tok.text == text

    def _expect(self, kind: str, text: str, what: str) -> Token:
        if not self._is(kind, text):
            raise self._unexpected(what)
        return self._take()

    def _unexpected(self, accepted: str) -> PolicyParseError:
        t = self.tok
        found = "end of condition" if t.kind == "eof" else f"`{t.text}`"
        return syntax_error(f"unexpected {found}", t.pos, self.where, accepted=accepted)

    def _enter(self) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise syntax_error(
                f"condition nests more than {MAX_NESTING} levels deep",
                self.tok.pos,
                self.where,
                accepted=f"at most {MAX_NESTING} nested `(`, `!`, `-` or `.contains(`",
            )

    def parse(self) -> Expr:
        e = self._or()
        if self.tok.kind != "eof":
            raise self._unexpected("an operator `&&`, `||`, or the end of the condition")
        return e

    def _or(self) -> Expr:
        e = self._and()
        while self._is("op", "||"):
            pos = self._take().pos
            e = BoolOp("||", e, self._and(), pos)
        return e

    def _and(self) -> Expr:
        e = self._cmp()
        while self._is("op", "&&"):
            pos = self._take().pos
            e = BoolOp("&&", e, self._cmp(), pos)
        return e

    def _cmp_op(self) -> str | None:
        t = self.tok
        if (t.kind == "op" and t.text in _CMP_OPS) or (t.kind == "name" and t.text == "in"):
            return t.text
        return None

    def _cmp(self) -> Expr:
        left = self._unary()
        op = self._cmp_op()
        if op is None:
            return left
        pos = self._take().pos
        right = self._unary()
        if self._cmp_op() is not None:
            raise syntax_error(
                f"comparisons do not chain: `{op}` then `{self.tok.text}`",
                self.tok.pos,
                self.where,
                accepted="parentheses, or `&&` between two comparisons",
            )
        return In(left, right, pos) if op == "in" else Cmp(op, left, right, pos)

    def _unary(self) -> Expr:
        if self._is("op", "!"):
            pos = self._take().pos
            self._enter()
            operand = self._unary()
            self.nesting -= 1
            return Not(operand, pos)
        if self._is("op", "-"):
            pos = self._take().pos
            if self.tok.kind != "int":
                raise self._unexpected("an integer literal after `-`")
            return self._int(self._take(), negative=True, pos=pos)
        return self._postfix()

    def _postfix(self) -> Expr:
        e = self._primary()
        while self._is("op", "."):
            self._take()
            pos = self._expect("name", "contains", "`.contains(...)` after an expression").pos
            self._expect("op", "(", "`(` after `.contains`")
            self._enter()
            arg = self._or()
            self.nesting -= 1
            self._expect("op", ")", "`)` closing `.contains(`")
            e = Contains(e, arg, pos)
        return e

    def _int(self, t: Token, *, negative: bool, pos: Pos) -> IntLit:
        value = -int(t.text) if negative else int(t.text)
        if not INT_MIN <= value <= INT_MAX:
            raise syntax_error(
                f"integer literal `{'-' if negative else ''}{t.text}` is out of range",
                pos,
                self.where,
                accepted=f"integers from {INT_MIN} to {INT_MAX}",
            )
        return IntLit(value, pos)

    def _primary(self) -> Expr:
        t = self.tok
        if t.kind == "int":
            return self._int(self._take(), negative=False, pos=t.pos)
        if t.kind == "str":
            self._take()
            return StrLit(t.text, t.pos)
        if self._is("op", "["):
            return self._set()
        if self._is("op", "("):
            self._take()
            self._enter()
            e = self._or()
            self.nesting -= 1
            self._expect("op", ")", "`)` closing `(`")
            return e
        if t.kind == "name":
            return self._name()
        raise self._unexpected(_OPERAND)

    def _name(self) -> Expr:
        t = self._take()
        if t.text in ("true", "false"):
            return BoolLit(t.text == "true", t.pos)
        if t.text in ATTRIBUTES:
            return Attr(t.text, t.pos)
        if t.text == "context":
            return CtxAttr(self._context_name(), t.pos)
        if t.text == "has":
            self._expect("name", "context", "`context.<name>` after `has`")
            return Has(self._context_name(), t.pos)
        raise syntax_error(f"unknown name `{t.text}`", t.pos, self.where, accepted=_OPERAND)

    def _context_name(self) -> str:
        self._expect("op", ".", "`.` after `context`")
        if self.tok.kind != "name":
            raise self._unexpected("a context attribute name after `context.`")
        return self._take().text

    def _set(self) -> SetLit:
        pos = self._take().pos
        values: list[str] = []
        while not self._is("op", "]"):
            if self.tok.kind != "str":
                raise self._unexpected('a "string" element or `]` (set literals hold strings only)')
            values.append(self._take().text)
            if len(values) > MAX_SET_LITERAL:
                raise syntax_error(
                    f"set literal has more than {MAX_SET_LITERAL} elements", pos, self.where
                )
            if not self._is("op", "]"):
                self._expect("op", ",", "`,` or `]` in a set literal")
        self._take()
        return SetLit(frozenset(values), pos)


def _check_depth(e: Expr, where: str) -> None:
    """Reject trees deeper than :data:`MAX_DEPTH`, iteratively (no recursion on hostile input)."""
    stack: list[tuple[Expr, int]] = [(e, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise syntax_error(
                f"condition is more than {MAX_DEPTH} operators deep",
                node.pos,
                where,
                accepted="a shallower condition (use `in [...]` instead of long `||` chains)",
            )
        stack.extend((c, depth + 1) for c in children(node))


def _parse(text: str, where: str) -> Expr:
    if len(text) > MAX_CONDITION_CHARS:
        raise PolicyParseError(
            f"condition is {len(text)} characters long",
            where=where,
            accepted=f"at most {MAX_CONDITION_CHARS} characters",
        )
    tokens = tokenize(text, where)
    if tokens[0].kind == "eof":
        raise syntax_error(
            "condition is empty",
            tokens[0].pos,
            where,
            accepted="a Bool expression; leave `when` out for an unconditional policy",
        )
    e = _Parser(tokens, where).parse()
    _check_depth(e, where)
    return e


def parse_condition(text: str, where: str = "") -> Expr:
    """Parse a `when` condition into a syntax tree (not yet type-checked).

    Args:
        text: the condition text.
        where: a location prefix for errors (file, policy id, field).

    Returns:
        The syntax tree.

    Raises:
        PolicyParseError: a lexical or syntax error, trailing input, or a
            length, token-count, nesting or depth cap exceeded; the message
            gives line:col in the condition.
    """
    return _parse(text, where)
