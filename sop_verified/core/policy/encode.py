"""The Z3 encoding of a policy set: the same semantics as the evaluator, as a formula.

A request is a set of Z3 variables (:class:`RequestVars`): ``principal``,
``action``, ``resource``, ``channel`` as strings, and per context attribute a
typed value plus a presence boolean. A condition encodes to a pair (value,
error) where error holds exactly when the evaluator would raise (an absent
attribute read, respecting short-circuit). Then, as in the evaluator::

    allow = (OR matching permits) AND NOT (OR matching forbids) AND NOT (OR applying errors)

Python strings map to Z3 strings injectively (:func:`z3_string`), also for
characters Z3 cannot hold (above U+2FFFE), so equality agrees with Python's.
:meth:`PolicyEncoding.evaluate` decides the formula on a concrete request
(substitute and simplify, a solver only if simplify leaves a residue), which
the differential tests compare with :class:`~sop_verified.core.policy.evaluator.PolicySet`.
spec/POLICY_LANGUAGE.md section 6 states the encoding.
"""

from __future__ import annotations

from typing import Any, Final

import z3

from sop_verified.core.contracts import ensure, invariant
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
from sop_verified.core.policy.model import Policy, PolicyDocument
from sop_verified.core.policy.request_vars import RequestVars, z3_set, z3_string
from sop_verified.core.request import Permission, Request
from sop_verified.tools.paths import Glob

__all__ = ["PolicyEncoding"]

_Val = Any
"""A Z3 term, or a Python frozenset for a set literal (kept symbolic-free until needed)."""
_Err = Any
"""A Z3 Bool that holds when evaluation errs, or None when it cannot err."""

_CMP: Final = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _or_err(a: _Err, b: _Err) -> _Err:
    if a is None:
        return b
    if b is None:
        return a
    return z3.Or(a, b)


def _member(x: Any, s: _Val) -> Any:
    if isinstance(s, frozenset):
        return z3.Or([x == z3_string(v) for v in sorted(s)]) if s else z3.BoolVal(False)
    return z3.IsMember(x, s)


def _set_term(s: _Val) -> Any:
    return z3_set(s) if isinstance(s, frozenset) else s


class _ExprEncoder:
    """Encodes condition trees over one set of request variables."""

    def __init__(self, v: RequestVars) -> None:
        self.v = v

    def enc(self, e: Expr) -> tuple[_Val, _Err]:
        if isinstance(e, IntLit):
            return z3.IntVal(e.value), None
        if isinstance(e, StrLit):
            return z3_string(e.value), None
        if isinstance(e, BoolLit):
            return z3.BoolVal(e.value), None
        if isinstance(e, SetLit):
            return e.values, None
        if isinstance(e, Attr):
            return self.v.attribute(e.name), None
        if isinstance(e, CtxAttr):
            return self.v.context[e.name], z3.Not(self.v.present[e.name])
        if isinstance(e, Has):
            return self.v.present[e.name], None
        if isinstance(e, Not):
            val, err = self.enc(e.operand)
            return z3.Not(val), err
        if isinstance(e, BoolOp):
            return self._bool(e)
        if isinstance(e, Cmp):
            return self._cmp(e)
        if isinstance(e, In):
            return self._membership(e.element, e.collection)
        if isinstance(e, Contains):
            return self._membership(e.element, e.collection)
        raise TypeError(f"not a condition node: `{type(e).__name__}`")

    def _bool(self, e: BoolOp) -> tuple[_Val, _Err]:
        (lv, le), (rv, re_) = self.enc(e.left), self.enc(e.right)
        if e.op == "&&":
            val = z3.And(lv, rv)
            reached = lv  # the right side is evaluated only when the left is true
        else:
            val = z3.Or(lv, rv)
            reached = z3.Not(lv)
        right_err = None if re_ is None else z3.And(reached, re_)
        if le is not None and right_err is not None:
            right_err = z3.And(z3.Not(le), right_err)
        return val, _or_err(le, right_err)

    def _cmp(self, e: Cmp) -> tuple[_Val, _Err]:
        (lv, le), (rv, re_) = self.enc(e.left), self.enc(e.right)
        if isinstance(lv, frozenset) and isinstance(rv, frozenset):
            val = z3.BoolVal((lv == rv) == (e.op == "=="))
        elif isinstance(lv, frozenset) or isinstance(rv, frozenset):
            val = _CMP[e.op](_set_term(lv), _set_term(rv))
        else:
            val = _CMP[e.op](lv, rv)
        return val, _or_err(le, re_)

    def _membership(self, element: Expr, collection: Expr) -> tuple[_Val, _Err]:
        (xv, xe), (sv, se) = self.enc(element), self.enc(collection)
        return _member(xv, sv), _or_err(se, xe)


def _glob_term(resource: Any, pattern: str) -> Any:
    if "*" not in pattern and "?" not in pattern:
        return resource == z3.StringVal(pattern)
    return z3.InRe(resource, Glob(pattern).z3_regex())


def _scope(v: RequestVars, doc: PolicyDocument, p: Policy) -> Any:
    parts = []
    principals = doc.principals_of(p)
    if principals is not None:
        parts.append(z3.Or([v.principal == z3_string(x) for x in sorted(principals)]))
    if p.actions is not None:
        parts.append(z3.Or([v.action == z3.StringVal(a) for a in p.actions]))
    if p.resources is not None:
        parts.append(z3.Or([_glob_term(v.resource, g) for g in p.resources]))
    if p.channel is not None:
        parts.append(v.channel == z3.StringVal(p.channel))
    return z3.And(parts) if parts else z3.BoolVal(True)


@invariant(
    lambda self: (
        set(self.applies)
        == set(self.matches)
        == set(self.errors)
        == {p.id for p in self.document.policies}
    ),
    "one formula of each kind per policy",
)
class PolicyEncoding:
    """A policy set as Z3 formulas over one symbolic request."""

    __slots__ = ("allow", "applies", "document", "errors", "matches", "vars")

    def __init__(self, document: PolicyDocument, variables: RequestVars | None = None) -> None:
        """Encode ``document`` over ``variables`` (fresh ones if not given).

        Args:
            document: a checked policy document.
            variables: the request variables; share them to compare two sets.
        """
        self.document = document
        self.vars = variables if variables is not None else RequestVars()
        enc = _ExprEncoder(self.vars)
        self.applies: dict[str, Any] = {}
        self.matches: dict[str, Any] = {}
        self.errors: dict[str, Any] = {}
        for p in document.policies:
            scope = _scope(self.vars, document, p)
            val, err = (z3.BoolVal(True), None) if p.when is None else enc.enc(p.when)
            self.applies[p.id] = scope
            self.matches[p.id] = (
                z3.And(scope, val) if err is None else z3.And(scope, z3.Not(err), val)
            )
            self.errors[p.id] = z3.BoolVal(False) if err is None else z3.And(scope, err)
        permits = [self.matches[p.id] for p in document.policies if not p.is_forbid]
        forbids = [self.matches[p.id] for p in document.policies if p.is_forbid]
        self.allow = z3.And(
            z3.Or(permits) if permits else z3.BoolVal(False),  # spec: INV-1 (default deny)
            z3.Not(z3.Or(forbids)) if forbids else z3.BoolVal(True),
            z3.Not(z3.Or(list(self.errors.values()))) if self.errors else z3.BoolVal(True),
        )

    def evaluate(self, request: Request) -> Permission:
        """Decide the encoding on a concrete request (for differential testing).

        Args:
            request: a validated request.

        Returns:
            ALLOW if ``allow`` holds for the request's values, else DENY.

        Raises:
            RuntimeError: Z3 could not decide the ground formula (never expected).
        """
        return (
            Permission.ALLOW
            if _decide_ground(self.allow, self.vars.bind(request))
            else Permission.DENY
        )

    @ensure(lambda result: set(result) == {"permits", "forbids", "errors"}, "three id sets")
    def explain(self, request: Request) -> dict[str, frozenset[str]]:
        """Which policies match or err on a concrete request, per the encoding.

        Args:
            request: a validated request.

        Returns:
            ``{"permits": ids, "forbids": ids, "errors": ids}``.
        """
        pairs = self.vars.bind(request)
        out: dict[str, set[str]] = {"permits": set(), "forbids": set(), "errors": set()}
        for p in self.document.policies:
            if _decide_ground(self.errors[p.id], pairs):
                out["errors"].add(p.id)
            elif _decide_ground(self.matches[p.id], pairs):
                out["forbids" if p.is_forbid else "permits"].add(p.id)
        return {k: frozenset(v) for k, v in out.items()}


def _decide_ground(formula: Any, pairs: list[tuple[Any, Any]]) -> bool:
    ground = z3.simplify(z3.substitute(formula, *pairs)) if pairs else z3.simplify(formula)
    if z3.is_true(ground):
        return True
    if z3.is_false(ground):
        return False
    solver = z3.Solver()
    solver.add(z3.Not(ground))
    verdict = solver.check()
    if verdict == z3.unsat:
        return True
    if verdict == z3.sat:
        return False
    raise RuntimeError(f"z3 could not decide a ground policy formula: {solver.reason_unknown()}")
