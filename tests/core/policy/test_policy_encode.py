"""The Z3 encoding: string mapping, well-formedness, concrete evaluation, model decoding."""

from __future__ import annotations

from typing import Any

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import requests

from sop_verified.core.policy.encode import PolicyEncoding
from sop_verified.core.policy.evaluator import PolicySet
from sop_verified.core.policy.loader import document_from_dict
from sop_verified.core.policy.request_vars import RequestVars, _decode_string, z3_set, z3_string
from sop_verified.core.request import Permission, Request, parse_request


def _doc(*policies: dict[str, Any]) -> Any:
    return document_from_dict({"policy": list(policies)})


def _req(**fields: Any) -> Request:
    base = {
        "request_id": "r1",
        "principal": "drac",
        "action": "artifact.persist",
        "resource": "artifacts/a.bin",
        "channel": "bridge",
        "context": {},
    }
    return parse_request(base | fields)


def _ground(term: Any) -> bool:
    out = z3.simplify(term)
    assert z3.is_true(out) or z3.is_false(out)
    return bool(z3.is_true(out))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\u{41}", "A"),
        ("\U0010ffff", "\\u{2ffff}10ffff"),
        ("\U0002ffff", "\\u{2ffff}02ffff"),
        ("\\", "\\u{5c}"),
        ("é", "\\u{e9}"),
        ("\x00", "\\u{0}"),
    ],
)
def test_z3_string_keeps_distinct_strings_distinct(a: str, b: str) -> None:
    assert not _ground(z3_string(a) == z3_string(b))
    assert _ground(z3_string(a) == z3_string(a))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12))
def test_z3_string_is_injective_and_decodes_back(a: str, b: str) -> None:
    assert _ground(z3_string(a) == z3_string(b)) is (a == b)
    assert _decode_string(z3_string(a)) == a


def test_z3_set_membership_and_equality() -> None:
    s = z3_set(frozenset({"a", "b"}))
    assert _ground(z3.IsMember(z3_string("a"), s))
    assert not _ground(z3.IsMember(z3_string("c"), s))
    assert _ground(s == z3_set(frozenset({"b", "a"})))


@settings(max_examples=50, deadline=None)
@given(requests())
def test_a_valid_request_is_well_formed(r: Request) -> None:
    v = RequestVars()
    bound = z3.substitute(v.well_formed(), *v.bind(r))
    assert _ground(bound)


@pytest.mark.parametrize("resource", ["a/../b", "./a", "a//b", "/a", "a/", "a" * 1025, "a/b c"])
def test_malformed_resources_are_not_well_formed(resource: str) -> None:
    v = RequestVars()
    bound = z3.substitute(v.well_formed(), (v.resource, z3.StringVal(resource)))
    solver = z3.Solver()
    solver.add(bound)
    assert solver.check() == z3.unsat


def test_principal_outside_the_grammar_is_not_well_formed() -> None:
    v = RequestVars()
    for bad in ("Drac", "", "1drac", "d" * 65):
        solver = z3.Solver()
        solver.add(v.well_formed_core(), v.principal == z3.StringVal(bad))
        assert solver.check() == z3.unsat


def test_concrete_evaluation_follows_the_semantics() -> None:
    doc = _doc(
        {
            "id": "p",
            "effect": "permit",
            "principal": ["drac"],
            "action": "*",
            "resource": ["artifacts/**"],
            "when": "context.size_bytes <= 10",
        },
        {
            "id": "f",
            "effect": "forbid",
            "principal": "*",
            "action": "*",
            "resource": "*",
            "when": 'has context.labels && "stop" in context.labels',
        },
    )
    enc = PolicyEncoding(doc)
    assert enc.evaluate(_req(context={"size_bytes": 3})) is Permission.ALLOW
    assert enc.evaluate(_req(context={"size_bytes": 30})) is Permission.DENY
    assert enc.evaluate(_req()) is Permission.DENY  # absent attribute: an error denies
    assert enc.evaluate(_req(context={"size_bytes": 3, "labels": ["stop"]})) is Permission.DENY
    assert enc.explain(_req()) == {
        "permits": frozenset(),
        "forbids": frozenset(),
        "errors": frozenset({"p"}),
    }


def test_empty_set_encodes_to_false() -> None:
    enc = PolicyEncoding(_doc())
    assert _ground(z3.Not(enc.allow))


def test_decoded_model_is_a_request_the_encoding_allows() -> None:
    doc = _doc(
        {
            "id": "p",
            "effect": "permit",
            "principal": ["drac"],
            "action": ["state.persist"],
            "resource": ["states/*/x"],
            "when": "context.labels.contains(context.tenant) && context.hour > 20",
        }
    )
    enc = PolicyEncoding(doc)
    universe = doc.string_literals()
    solver = z3.Solver()
    solver.add(enc.vars.well_formed(), enc.allow)
    assert solver.check() == z3.sat
    cex = enc.vars.decode(solver.model(), universe)
    request = parse_request(cex)
    assert PolicySet(doc).evaluate(request).allowed
    assert enc.evaluate(request) is Permission.ALLOW
    assert request.context["tenant"] in request.context["labels"]


def test_decoding_renames_unreadable_strings_consistently() -> None:
    doc = _doc(
        {
            "id": "p",
            "effect": "permit",
            "principal": "*",
            "action": "*",
            "resource": "*",
            "when": 'context.session == context.tenant && context.phase != "x"',
        }
    )
    enc = PolicyEncoding(doc)
    ctx, has = enc.vars.context, enc.vars.present
    solver = z3.Solver()
    solver.add(
        enc.vars.well_formed(),
        enc.allow,
        has["labels"],
        ctx["tenant"] == z3_string("\x01\U0010ffff"),
        ctx["phase"] == z3_string("\x02"),
        z3.IsMember(ctx["tenant"], ctx["labels"]),
    )
    assert solver.check() == z3.sat
    cex = enc.vars.decode(solver.model(), doc.string_literals())
    assert cex["context"]["session"] == cex["context"]["tenant"] == "v0"
    assert cex["context"]["phase"] == "v1"
    assert "v0" in cex["context"]["labels"]
    assert PolicySet(doc).evaluate(parse_request(cex)).allowed
