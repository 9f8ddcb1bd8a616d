"""The validator of `when` conditions: names resolve, types agree, literals can match.

A condition is accepted only if it has type Bool, every ``context.<name>`` is
in :data:`~sop_verified.core.request.CONTEXT_SCHEMA`, every operator gets
operands of its type (spec/POLICY_LANGUAGE.md section 4), and every literal
compared with ``action``, ``channel``, ``principal`` or ``resource`` is a value
that attribute can take (a typo such as ``action == "artefact.persist"`` would
otherwise make a policy silently dead). Errors name the line:col in the
condition.
"""

from __future__ import annotations

import re
from typing import Final

from sop_verified.core.policy.expr import (
    Attr,
    BoolLit,
    BoolOp,
    Cmp,
    CtxAttr,
    Expr,
    Has,
    In,
    IntLit,
    Not,
    Pos,
    SetLit,
    StrLit,
)
from sop_verified.core.request import ACTIONS, CONTEXT_SCHEMA, PRINCIPAL_PATTERN, AttrType
from sop_verified.errors import InputError, PolicyValidationError
from sop_verified.tools.paths import check_path

__all__ = ["CHANNELS", "check_condition", "type_of"]

CHANNELS: Final = frozenset({"bridge", "admin"})
_PRINCIPAL_RE: Final = re.compile(PRINCIPAL_PATTERN)
_ORDER_OPS: Final = frozenset({"<", "<=", ">", ">="})


def _error(message: str, pos: Pos, where: str, accepted: str = "") -> PolicyValidationError:
    place = f"{where} {pos}" if where else str(pos)
    return PolicyValidationError(message, where=place, accepted=accepted)


def _schema_type(name: str, pos: Pos, where: str) -> AttrType:
    kind = CONTEXT_SCHEMA.get(name)
    if kind is None:
        raise _error(
            f"unknown context attribute `{name}`",
            pos,
            where,
            accepted=", ".join(f"`context.{k}`" for k in sorted(CONTEXT_SCHEMA)),
        )
    return kind


def _expect(e: Expr, want: AttrType, what: str, where: str) -> None:
    got = _type(e, where)
    if got is not want:
        raise _error(
            f"{what} needs a {want.value} operand, got `{got.value}`",
            e.pos,
            where,
            accepted=f"an expression of type {want.value}",
        )


def _value_ok(attr: str, value: str) -> bool:
    if attr == "action":
        return value in ACTIONS
    if attr == "channel":
        return value in CHANNELS
    if attr == "principal":
        return _PRINCIPAL_RE.fullmatch(value) is not None
    try:
        check_path(value)
    except InputError:
        return False
    return True


_DOMAIN: Final = {
    "action": "one of " + ", ".join(f"`{a}`" for a in sorted(ACTIONS)),
    "channel": "`bridge` or `admin`",
    "principal": f"a principal id matching `{PRINCIPAL_PATTERN}`",
    "resource": "a well-formed resource path",
}


def _check_domain(a: Expr, b: Expr, where: str) -> None:
    """Attribute against literal(s): every literal must be a value the attribute can take."""
    for attr, lit in ((a, b), (b, a)):
        if not isinstance(attr, Attr):
            continue
        values: frozenset[str] = frozenset()
        if isinstance(lit, StrLit):
            values = frozenset({lit.value})
        elif isinstance(lit, SetLit):
            values = lit.values
        for v in sorted(values):
            if not _value_ok(attr.name, v):
                raise _error(
                    f"`{attr.name}` is never `{v[:80]}`, so this test can never hold",
                    lit.pos,
                    where,
                    accepted=_DOMAIN[attr.name],
                )


def _type_cmp(e: Cmp, where: str) -> AttrType:
    if e.op in _ORDER_OPS:
        _expect(e.left, AttrType.INT, f"`{e.op}`", where)
        _expect(e.right, AttrType.INT, f"`{e.op}`", where)
        return AttrType.BOOL
    lt, rt = _type(e.left, where), _type(e.right, where)
    if lt is not rt:
        raise _error(
            f"`{e.op}` compares values of one type, got `{lt.value}` and `{rt.value}`",
            e.pos,
            where,
            accepted="both sides Int, String, Bool, or Set<String>",
        )
    if lt is AttrType.SET and not (isinstance(e.left, SetLit) or isinstance(e.right, SetLit)):
        raise _error(
            f"`{e.op}` on sets needs a set literal on one side",
            e.pos,
            where,
            accepted='`context.labels == ["a", "b"]`',
        )
    _check_domain(e.left, e.right, where)
    return AttrType.BOOL


def _type_member(element: Expr, collection: Expr, what: str, where: str) -> AttrType:
    _expect(collection, AttrType.SET, what, where)
    _expect(element, AttrType.STRING, what, where)
    _check_domain(element, collection, where)
    return AttrType.BOOL


def _type(e: Expr, where: str) -> AttrType:
    if isinstance(e, IntLit):
        return AttrType.INT
    if isinstance(e, StrLit | Attr):
        return AttrType.STRING
    if isinstance(e, BoolLit):
        return AttrType.BOOL
    if isinstance(e, SetLit):
        return AttrType.SET
    if isinstance(e, CtxAttr):
        return _schema_type(e.name, e.pos, where)
    if isinstance(e, Has):
        _schema_type(e.name, e.pos, where)
        return AttrType.BOOL
    if isinstance(e, Not):
        _expect(e.operand, AttrType.BOOL, "`!`", where)
        return AttrType.BOOL
    if isinstance(e, BoolOp):
        _expect(e.left, AttrType.BOOL, f"`{e.op}`", where)
        _expect(e.right, AttrType.BOOL, f"`{e.op}`", where)
        return AttrType.BOOL
    if isinstance(e, Cmp):
        return _type_cmp(e, where)
    if isinstance(e, In):
        return _type_member(e.element, e.collection, "`in`", where)
    return _type_member(e.element, e.collection, "`.contains`", where)


def type_of(e: Expr, where: str = "") -> AttrType:
    """Infer the type of ``e``, checking every sub-expression.

    Args:
        e: a parsed expression.
        where: a location prefix for errors.

    Returns:
        Its type.

    Raises:
        PolicyValidationError: an unknown attribute, an ill-typed operand, a set
            comparison without a literal side, or a literal an attribute can never equal.
    """
    return _type(e, where)


def check_condition(e: Expr, where: str = "") -> None:
    """Accept ``e`` as a `when` condition: it must be well-typed and of type Bool.

    Args:
        e: a parsed condition.
        where: a location prefix for errors (file, policy id, field).

    Raises:
        PolicyValidationError: ``e`` is ill-typed or not a Bool; the message gives line:col.
    """
    t = _type(e, where)
    if t is not AttrType.BOOL:
        raise _error(f"condition has type `{t.value}`", e.pos, where, accepted="a Bool condition")
