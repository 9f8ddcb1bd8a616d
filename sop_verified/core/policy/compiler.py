"""Compiling checked `when` conditions into Python closures over a :class:`Request`.

Each node becomes one closure; constants are folded into their parent's
closure so the common shapes (``context.x <= 4096``, ``context.phase in
[...]``) cost one call. Reading an absent ``context.<name>`` raises
:class:`~sop_verified.errors.PolicyEvaluationError`; ``&&`` and ``||``
short-circuit left to right, so ``has context.x && context.x > 3`` is safe.
The semantics are spec/POLICY_LANGUAGE.md section 5; the Z3 encoding in
:mod:`sop_verified.core.policy.encode` states the same semantics and the
differential tests hold the two together.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, Final

from sop_verified.core.contracts import ensure
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
)
from sop_verified.core.request import Request
from sop_verified.errors import PolicyEvaluationError

__all__ = ["Condition", "compile_condition"]

Condition = Callable[[Request], Any]
"""A compiled condition: returns True or False, or raises PolicyEvaluationError."""

_OPS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

_Compiled = tuple[str, Any]
"""(kind, payload): ("const", value), ("ctx", attribute name) or ("fn", closure)."""


def _const(e: Expr) -> _Compiled | None:
    if isinstance(e, IntLit | StrLit | BoolLit):
        return "const", e.value
    if isinstance(e, SetLit):
        return "const", e.values
    return None


def _absent(name: str) -> PolicyEvaluationError:
    return PolicyEvaluationError(
        f"context attribute `{name}` is absent (read without a `has` guard)"
    )


def _ctx_reader(name: str) -> Condition:
    def read(r: Request) -> Any:
        try:
            return r.context[name]
        except KeyError:
            raise _absent(name) from None

    return read


def _closure(c: _Compiled) -> Condition:
    kind, v = c
    if kind == "const":
        return lambda _r: v
    if kind == "ctx":
        return _ctx_reader(v)
    fn: Condition = v
    return fn


def _ctx_vs_const(fn: Callable[[Any, Any], Any], name: str, k: Any, *, ctx_left: bool) -> Condition:
    """One closure for ``context.name OP k`` (or ``k OP context.name``): the commonest shape."""
    if ctx_left:

        def left(r: Request) -> Any:
            try:
                v = r.context[name]
            except KeyError:
                raise _absent(name) from None
            return fn(v, k)

        return left

    def right(r: Request) -> Any:
        try:
            v = r.context[name]
        except KeyError:
            raise _absent(name) from None
        return fn(k, v)

    return right


def _binary(fn: Callable[[Any, Any], Any], left: _Compiled, right: _Compiled) -> Condition:
    """``fn(left(r), right(r))`` with constants folded in; both sides are always evaluated."""
    (lk, lv), (rk, rv) = left, right
    if lk == "ctx" and rk == "const":
        return _ctx_vs_const(fn, lv, rv, ctx_left=True)
    if lk == "const" and rk == "ctx":
        return _ctx_vs_const(fn, rv, lv, ctx_left=False)
    lf, rf = _closure(left), _closure(right)
    if rk == "const":
        return lambda r: fn(lf(r), rv)
    if lk == "const":
        return lambda r: fn(lv, rf(r))
    return lambda r: fn(lf(r), rf(r))


def _member(element: _Compiled, collection: _Compiled) -> Condition:
    return _binary(_is_in, element, collection)


def _is_in(element: Any, collection: Any) -> bool:
    return element in collection


def _compile_bool(e: BoolOp) -> Condition:
    lf, rf = _closure(_compile(e.left)), _closure(_compile(e.right))
    if e.op == "&&":
        return lambda r: lf(r) and rf(r)
    return lambda r: lf(r) or rf(r)


def _compile(e: Expr) -> _Compiled:
    const = _const(e)
    if const is not None:
        return const
    if isinstance(e, Attr):
        return "fn", operator.attrgetter(e.name)
    if isinstance(e, CtxAttr):
        return "ctx", e.name
    if isinstance(e, Has):
        name = e.name
        return "fn", lambda r: name in r.context
    if isinstance(e, Not):
        inner = _closure(_compile(e.operand))
        return "fn", lambda r: not inner(r)
    if isinstance(e, BoolOp):
        return "fn", _compile_bool(e)
    if isinstance(e, Cmp):
        return "fn", _binary(_OPS[e.op], _compile(e.left), _compile(e.right))
    if isinstance(e, In):
        return "fn", _member(_compile(e.element), _compile(e.collection))
    if isinstance(e, Contains):
        # the receiver is evaluated first, as written; both sides are always evaluated
        return "fn", _binary(_has_member, _compile(e.collection), _compile(e.element))
    raise TypeError(f"not a condition node: `{type(e).__name__}`")


def _has_member(collection: Any, element: Any) -> bool:
    return element in collection


@ensure(lambda e, result: callable(result), "a closure")
def compile_condition(e: Expr) -> Condition:
    """Compile a type-checked condition into one closure.

    Args:
        e: a condition accepted by :func:`~sop_verified.core.policy.typecheck.check_condition`.

    Returns:
        A function of a request returning True or False, or raising
        :class:`~sop_verified.errors.PolicyEvaluationError` when the condition
        reads an absent context attribute.

    Raises:
        TypeError: ``e`` is not an expression node.
    """
    return _closure(_compile(e))
