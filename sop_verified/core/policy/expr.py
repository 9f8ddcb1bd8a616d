"""The abstract syntax of `when` conditions, and its canonical printer.

Nodes are frozen value objects; their source position (line and column in the
condition text, 1-based) is carried for error messages and ignored by
equality, so ``parse(to_text(e)) == e`` holds for every well-typed ``e``.
The grammar and the types are in spec/POLICY_LANGUAGE.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from sop_verified.core.contracts import ensure

__all__ = [
    "ATTRIBUTES",
    "NOPOS",
    "Attr",
    "BoolLit",
    "BoolOp",
    "Cmp",
    "Contains",
    "CtxAttr",
    "Expr",
    "Has",
    "In",
    "IntLit",
    "Not",
    "Pos",
    "SetLit",
    "StrLit",
    "children",
    "string_literals",
    "to_text",
]

ATTRIBUTES: Final = frozenset({"principal", "action", "resource", "channel"})
"""The request attributes a condition may read besides ``context.<name>``."""


@dataclass(frozen=True, slots=True)
class Pos:
    """A position in a condition's text, 1-based."""

    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.line}:{self.col}"


NOPOS: Final = Pos(0, 0)


@dataclass(frozen=True, slots=True)
class IntLit:
    """A 64-bit signed integer literal."""

    value: int
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class StrLit:
    """A string literal."""

    value: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class BoolLit:
    """``true`` or ``false``."""

    value: bool
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class SetLit:
    """A string-set literal ``["a", "b"]`` (order and repeats do not matter)."""

    values: frozenset[str]
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Attr:
    """One of the request attributes ``principal``, ``action``, ``resource``, ``channel``."""

    name: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class CtxAttr:
    """``context.<name>``: reading it when absent is an evaluation error."""

    name: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Has:
    """``has context.<name>``: whether the request carries the attribute."""

    name: str
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Not:
    """``!operand``."""

    operand: Expr
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class BoolOp:
    """``left && right`` or ``left || right``, short-circuit, left to right."""

    op: str
    left: Expr
    right: Expr
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Cmp:
    """A comparison: ``==``, ``!=`` (same type) or ``<``, ``<=``, ``>``, ``>=`` (Int)."""

    op: str
    left: Expr
    right: Expr
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class In:
    """``element in collection``: a String in a Set<String>."""

    element: Expr
    collection: Expr
    pos: Pos = field(default=NOPOS, compare=False)


@dataclass(frozen=True, slots=True)
class Contains:
    """``collection.contains(element)``: the same test as ``in``, written on the set."""

    collection: Expr
    element: Expr
    pos: Pos = field(default=NOPOS, compare=False)


Expr = (
    IntLit | StrLit | BoolLit | SetLit | Attr | CtxAttr | Has | Not | BoolOp | Cmp | In | Contains
)

# Binding strength, loosest first; a child printed inside a parent of higher
# strength gets parentheses.
_PREC_OR, _PREC_AND, _PREC_CMP, _PREC_NOT, _PREC_POSTFIX, _PREC_ATOM = 1, 2, 3, 4, 5, 6
_BOOL_PREC: Final = {"||": _PREC_OR, "&&": _PREC_AND}


def _prec(e: Expr) -> int:
    if isinstance(e, BoolOp):
        return _BOOL_PREC[e.op]
    if isinstance(e, Cmp | In):
        return _PREC_CMP
    if isinstance(e, Not):
        return _PREC_NOT
    if isinstance(e, Contains):
        return _PREC_POSTFIX
    return _PREC_ATOM


def _quote(s: str) -> str:
    """Quote ``s`` as a condition string literal (escapes as the lexer reads them)."""
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif c == "\r":
            out.append("\\r")
        elif ord(c) < 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF or not c.isprintable():
            out.append(f"\\u{{{ord(c):x}}}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _wrap(e: Expr, min_prec: int) -> str:
    text = _text(e)
    return f"({text})" if _prec(e) < min_prec else text


def _text(e: Expr) -> str:
    if isinstance(e, IntLit):
        return str(e.value)
    if isinstance(e, StrLit):
        return _quote(e.value)
    if isinstance(e, BoolLit):
        return "true" if e.value else "false"
    if isinstance(e, SetLit):
        return "[" + ", ".join(_quote(v) for v in sorted(e.values)) + "]"
    if isinstance(e, Attr):
        return e.name
    if isinstance(e, CtxAttr):
        return f"context.{e.name}"
    if isinstance(e, Has):
        return f"has context.{e.name}"
    if isinstance(e, Not):
        return "!" + _wrap(e.operand, _PREC_NOT)
    if isinstance(e, BoolOp):
        p = _BOOL_PREC[e.op]
        return f"{_wrap(e.left, p)} {e.op} {_wrap(e.right, p + 1)}"
    if isinstance(e, Cmp):
        return f"{_wrap(e.left, _PREC_NOT)} {e.op} {_wrap(e.right, _PREC_NOT)}"
    if isinstance(e, In):
        return f"{_wrap(e.element, _PREC_NOT)} in {_wrap(e.collection, _PREC_NOT)}"
    return f"{_wrap(e.collection, _PREC_POSTFIX)}.contains({_text(e.element)})"


@ensure(lambda result: len(result) > 0, "the canonical text is never empty")
def to_text(e: Expr) -> str:
    """Print ``e`` in canonical form: minimal parentheses, sets sorted, one space around operators.

    Args:
        e: a condition expression.

    Returns:
        Text that parses back to an equal expression.
    """
    return _text(e)


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of ``e``, left to right.

    Args:
        e: a condition expression.

    Returns:
        The operands (empty for literals and attributes).
    """
    if isinstance(e, Not):
        return (e.operand,)
    if isinstance(e, BoolOp | Cmp):
        return (e.left, e.right)
    if isinstance(e, In):
        return (e.element, e.collection)
    if isinstance(e, Contains):
        return (e.collection, e.element)
    return ()


def string_literals(e: Expr) -> frozenset[str]:
    """Every string mentioned as a literal in ``e`` (string literals and set-literal members).

    Args:
        e: a condition expression.

    Returns:
        The literal strings (the Z3 encoding keeps them representable).
    """
    found: set[str] = set()
    stack = [e]
    while stack:
        node = stack.pop()
        if isinstance(node, StrLit):
            found.add(node.value)
        elif isinstance(node, SetLit):
            found.update(node.values)
        stack.extend(children(node))
    return frozenset(found)
