"""Hypothesis strategies for policy sets, conditions and requests (shared by the policy tests).

Values come from small pools so that generated requests hit generated
policies often; the string pool holds the awkward cases for the Z3 string
mapping (a literal backslash-u escape text next to the character it spells,
characters above U+2FFFF, quotes, the empty string).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

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
    to_text,
)
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.policy.model import PolicyDocument
from sop_verified.core.request import ACTIONS, CONTEXT_SCHEMA, INT_MAX, INT_MIN, AttrType, Request
from sop_verified.errors import InputError
from sop_verified.tools.paths import Glob

PRINCIPALS = ["drac", "emp", "csp", "ops"]
REQUEST_PRINCIPALS = [*PRINCIPALS, "zed"]
STRINGS = ["a", "b", "ASSEMBLE", "", "drac", "é", "\\u{41}", "A", "\U0010ffff", "\U0002ffff", 'x"y']
SEGMENTS = ["a", "b", "artifacts", "x.bin", "ab"]
GLOB_SEGMENTS = [*SEGMENTS, "*", "?", "a*", "*.bin", "**"]
INTS = [-3, -1, 0, 1, 2, 5, INT_MIN, INT_MAX]
SORTED_ACTIONS = sorted(ACTIONS)
ACTION_POOL = ["artifact.persist", "artifact.read", "policy.activate", "state.persist"]
request_actions = st.one_of(st.sampled_from(ACTION_POOL), st.sampled_from(SORTED_ACTIONS))
ROLES = ["r1", "r2"]

INT_ATTRS = sorted(n for n, k in CONTEXT_SCHEMA.items() if k is AttrType.INT)
STR_ATTRS = sorted(n for n, k in CONTEXT_SCHEMA.items() if k is AttrType.STRING)
BOOL_ATTRS = sorted(n for n, k in CONTEXT_SCHEMA.items() if k is AttrType.BOOL)
SET_ATTRS = sorted(n for n, k in CONTEXT_SCHEMA.items() if k is AttrType.SET)


def _valid_glob(pattern: str) -> bool:
    try:
        Glob(pattern)
    except InputError:
        return False
    return True


paths = st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=4).map("/".join)
globs = (
    st.lists(st.sampled_from(GLOB_SEGMENTS), min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda g: g != "*" and _valid_glob(g))
)
int_exprs = st.one_of(st.sampled_from(INTS).map(IntLit), st.sampled_from(INT_ATTRS).map(CtxAttr))
str_operands = st.one_of(
    st.sampled_from(STRINGS).map(StrLit), st.sampled_from(STR_ATTRS).map(CtxAttr)
)
string_sets = st.frozensets(st.sampled_from(STRINGS), max_size=4)
set_exprs = st.one_of(string_sets.map(SetLit), st.sampled_from(SET_ATTRS).map(CtxAttr))
_ATTR_VALUES = {
    "action": request_actions,
    "channel": st.sampled_from(["bridge", "admin"]),
    "principal": st.sampled_from(REQUEST_PRINCIPALS),
    "resource": paths,
}


@st.composite
def _attr_vs_literal(draw: st.DrawFn) -> Expr:
    name = draw(st.sampled_from(sorted(_ATTR_VALUES)))
    if draw(st.booleans()):
        values = draw(st.frozensets(_ATTR_VALUES[name], max_size=3))
        return In(Attr(name), SetLit(values))
    op = draw(st.sampled_from(["==", "!="]))
    return Cmp(op, Attr(name), StrLit(draw(_ATTR_VALUES[name])))


def _cmp(ops: list[str], operands: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.builds(Cmp, st.sampled_from(ops), operands, operands)


bool_leaves = st.one_of(
    st.booleans().map(BoolLit),
    st.sampled_from(sorted(CONTEXT_SCHEMA)).map(Has),
    st.sampled_from(BOOL_ATTRS).map(CtxAttr),
    _cmp(["==", "!=", "<", "<=", ">", ">="], int_exprs),
    _cmp(["==", "!="], str_operands),
    st.builds(
        Cmp,
        st.sampled_from(["==", "!="]),
        st.sampled_from(STR_ATTRS).map(CtxAttr),
        st.sampled_from(sorted(_ATTR_VALUES)).map(Attr),
    ),
    st.builds(In, str_operands, set_exprs),
    st.builds(Contains, set_exprs, str_operands),
    st.builds(
        Cmp,
        st.sampled_from(["==", "!="]),
        st.sampled_from(SET_ATTRS).map(CtxAttr),
        string_sets.map(SetLit),
    ),
    _attr_vs_literal(),
)


def _compound(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        inner.map(Not),
        st.builds(BoolOp, st.sampled_from(["&&", "||"]), inner, inner),
        st.builds(Cmp, st.sampled_from(["==", "!="]), inner, inner),
    )


conditions = st.recursive(bool_leaves, _compound, max_leaves=6)


def _scope(values: st.SearchStrategy[str], max_size: int = 3) -> st.SearchStrategy[Any]:
    listed = st.lists(values, min_size=1, max_size=max_size, unique=True)
    return st.one_of(st.just("*"), listed, st.just("*"), listed)


@st.composite
def policy_documents(draw: st.DrawFn, max_policies: int = 5) -> PolicyDocument:
    """A checked policy document of 0 to ``max_policies`` policies with roles."""
    roles = {
        r: draw(st.lists(st.sampled_from(PRINCIPALS), min_size=1, max_size=3, unique=True))
        for r in ROLES
    }
    principal_entries = st.sampled_from([*PRINCIPALS, *(f"role:{r}" for r in ROLES)])
    policies = []
    count = st.sampled_from([0, *range(1, max_policies + 1), *range(1, max_policies + 1)])
    for i in range(draw(count)):
        raw: dict[str, Any] = {
            "id": f"p{i}",
            "effect": draw(st.sampled_from(["permit", "permit", "forbid"])),
            "principal": draw(_scope(principal_entries)),
            "action": draw(_scope(st.sampled_from(ACTION_POOL), 2)),
            "resource": draw(_scope(globs)),
            "channel": draw(st.sampled_from(["*", "bridge", "admin"])),
        }
        if draw(st.booleans()):
            raw["when"] = to_text(draw(conditions))
        policies.append(raw)
    return document_from_dict({"policy": policies, "roles": roles})


_CONTEXT_VALUES: dict[AttrType, st.SearchStrategy[Any]] = {
    AttrType.INT: st.sampled_from(INTS),
    AttrType.STRING: st.sampled_from(STRINGS),
    AttrType.BOOL: st.booleans(),
    AttrType.SET: st.lists(st.sampled_from(STRINGS), max_size=4, unique=True),
}


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A valid request over the same pools as :func:`policy_documents`."""
    present = draw(st.lists(st.sampled_from(sorted(CONTEXT_SCHEMA)), unique=True))
    context = {name: draw(_CONTEXT_VALUES[CONTEXT_SCHEMA[name]]) for name in present}
    return Request(
        request_id="r1",
        principal=draw(st.sampled_from(REQUEST_PRINCIPALS)),
        action=draw(request_actions),
        resource=draw(paths),
        channel=draw(st.sampled_from(["bridge", "admin"])),
        context=context,
    )
