"""The condition validator: unknown attributes and ill-typed conditions are refused at load."""

from __future__ import annotations

import re

import pytest

from sop_verified.core.policy.lang import parse_condition
from sop_verified.core.policy.typecheck import check_condition, type_of
from sop_verified.core.request import AttrType
from sop_verified.errors import PolicyValidationError


def _check(text: str) -> None:
    check_condition(parse_condition(text), "p.toml: policy p1: when")


@pytest.mark.parametrize(
    "text",
    [
        'context.size_bytes <= 4096 && context.phase in ["ASSEMBLE", "FREEZE"]',
        "has context.trust_level && context.trust_level >= 2",
        '!context.emergency || context.labels.contains("approved")',
        'context.labels == ["a", "b"] || ["x"] != context.labels',
        "principal == context.tenant && context.session != resource",
        'action in ["artifact.persist", "state.persist"] && channel == "bridge"',
        'principal == "drac" && resource == "artifacts/drac/x.bin"',
        "(context.hour < 9) == (context.hour > 17)",
        '"urgent" in context.labels',
        "true",
    ],
)
def test_well_typed_condition_accepted(text: str) -> None:
    _check(text)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        (
            'context.size_bytes == "x"',
            "`==` compares values of one type, got `Int` and `String`",
            "1:20",
        ),
        ("context.nope > 1", "unknown context attribute `nope`", "1:1"),
        ("has context.nope", "unknown context attribute `nope`", "1:1"),
        ('context.phase < "B"', "`<` needs a Int operand, got `String`", "1:1"),
        ("!context.hour", "`!` needs a Bool operand, got `Int`", "1:2"),
        ("context.hour && true", "`&&` needs a Bool operand, got `Int`", "1:1"),
        ("true || context.tenant", "`||` needs a Bool operand, got `String`", "1:9"),
        ('context.hour in ["a"]', "`in` needs a String operand, got `Int`", "1:1"),
        ('"a" in context.tenant', "`in` needs a Set<String> operand, got `String`", "1:8"),
        ('context.tenant.contains("a")', "`.contains` needs a Set<String> operand", "1:1"),
        ("context.labels.contains(1)", "`.contains` needs a String operand, got `Int`", "1:25"),
        ("context.labels == context.labels", "on sets needs a set literal", "1:16"),
        ('action == "artefact.persist"', "`action` is never `artefact.persist`", "1:11"),
        ('channel == "http"', "`channel` is never `http`", "1:12"),
        (
            'principal in ["drac", "Not A Principal"]',
            "`principal` is never `Not A Principal`",
            "1:14",
        ),
        ('resource == "../etc/passwd"', "`resource` is never `../etc/passwd`", "1:13"),
        ('["artifact.x"].contains(action)', "`action` is never `artifact.x`", "1:1"),
    ],
)
def test_ill_typed_condition_rejected(text: str, message: str, position: str) -> None:
    with pytest.raises(PolicyValidationError, match=re.escape(message)) as info:
        _check(text)
    assert f"at `p.toml: policy p1: when {position}`" in str(info.value)


@pytest.mark.parametrize("text", ["1", '"x"', '["a"]', "context.hour", "context.labels"])
def test_non_bool_condition_rejected(text: str) -> None:
    with pytest.raises(PolicyValidationError, match="condition has type"):
        _check(text)


def test_unknown_attribute_error_lists_the_schema() -> None:
    with pytest.raises(PolicyValidationError, match=re.escape("`context.size_bytes`")):
        _check("context.sizebytes > 1")


def test_types_are_inferred() -> None:
    assert type_of(parse_condition("context.labels")) is AttrType.SET
    assert type_of(parse_condition("context.hour")) is AttrType.INT
    assert type_of(parse_condition("principal")) is AttrType.STRING
    assert type_of(parse_condition("has context.hour")) is AttrType.BOOL
