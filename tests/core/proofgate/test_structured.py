"""The structured JSON obligation: holds iff assumptions and not goal is unsat."""

from __future__ import annotations

import json
from typing import Any

import pytest
from proofgate_helpers import structured

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import Z3ProofGate, compile_structured
from sop_verified.core.proofgate.structured import GOAL_NAME, assumption_name
from sop_verified.errors import ObligationError

BASE: dict[str, Any] = {
    "logic": "QF_LIA",
    "declarations": {"x": "Int", "y": "Int"},
    "assumptions": ["(> x 3)", "(= y (+ x 1))"],
    "goal": "(> y 4)",
}


def _error(doc: dict[str, Any] | str) -> ObligationError:
    with pytest.raises(ObligationError) as info:
        compile_structured(doc if isinstance(doc, str) else json.dumps(doc))
    return info.value


def test_structured_form_compiles_to_named_assumptions_and_negated_goal() -> None:
    compiled = compile_structured(json.dumps(BASE))
    assert compiled.names == (assumption_name(0), assumption_name(1), GOAL_NAME)
    assert compiled.assertions[-1] == "(not (> y 4))"


def test_valid_goal_is_proved_with_the_goal_in_the_core(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(structured(json.dumps(BASE)))
    assert result.verdict is Verdict.PROVED
    assert set(result.evidence["unsat_core"]) == {"sop.assumption.0", "sop.assumption.1", GOAL_NAME}


def test_invalid_goal_is_refuted_with_a_counterexample(shared_gate: Z3ProofGate) -> None:
    result = shared_gate.check(structured(json.dumps({**BASE, "goal": "(> y 5)"})))
    assert result.verdict is Verdict.REFUTED
    model = result.evidence["model"]
    assert int(model["y"]) <= 5 and int(model["x"]) > 3


def test_functions_and_sorts_can_be_declared(shared_gate: Z3ProofGate) -> None:
    doc = {
        "logic": "QF_UF",
        "sorts": ["U"],
        "declarations": {"f": {"args": ["U"], "result": "U"}, "a": "U", "b": "U"},
        "assumptions": ["(= a b)"],
        "goal": "(= (f a) (f b))",
    }
    assert shared_gate.check(structured(json.dumps(doc))).verdict is Verdict.PROVED


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({**BASE, "goal": "(> y 4)) (set-option :verbose 10"}, "goal"),
        ({**BASE, "goal": "(> y 4) (> y 5)"}, "goal"),
        ({**BASE, "assumptions": ["(> z 1)"]}, "assumptions[0]"),
        ({**BASE, "assumptions": ["(forall ((z Int)) (> z x))"]}, "assumptions[0]"),
        ({**BASE, "declarations": {"x": "Real"}}, "declarations.x"),
        ({**BASE, "declarations": {"x": "Int) (set-option :verbose 1"}}, "declarations.x"),
        ({**BASE, "declarations": {"sop!x": "Int"}}, "declarations.sop!x"),
        ({**BASE, "declarations": {"a|b": "Int"}}, "declarations.a|b"),
        ({**BASE, "logic": "QF_NIA"}, "logic"),
        ({**BASE, "logic": "QF_LIA) (exit"}, "logic"),
        ({**BASE, "goal": 5}, "goal"),
        ({**BASE, "extra": 1}, "obligation"),
        ({k: v for k, v in BASE.items() if k != "goal"}, "obligation"),
    ],
)
def test_malformed_structured_obligation_names_the_field(doc: dict[str, Any], where: str) -> None:
    err = _error(doc)
    assert err.where.startswith(where), str(err)


def test_structured_text_that_is_not_a_json_object_is_rejected() -> None:
    assert _error("not json").code == "syntax"
    assert _error("[1, 2]").code == "structure"


def test_structured_caps_apply_to_each_term() -> None:
    deep = "(not " * 200 + "true" + ")" * 200
    err = _error({**BASE, "goal": deep})
    assert err.code == "too_deep" and err.where.startswith("goal")


def _with_duplicate(fragment: str) -> str:
    """BASE as JSON text with ``fragment`` appended (json.dumps cannot repeat a key)."""
    text = json.dumps(BASE)
    return text[:-1] + ", " + fragment + "}"


@pytest.mark.parametrize(
    ("text", "key", "where"),
    [
        # the attack: the first `goal` is what a reviewer reads, the last is what a parser keeps
        (_with_duplicate('"goal": "true"'), "goal", "goal"),
        (_with_duplicate('"assumptions": []'), "assumptions", "assumptions"),
        (
            json.dumps({**BASE, "declarations": {"x": "Int", "y": "Int"}})[:-1].replace(
                '"y": "Int"}', '"y": "Int", "x": "Bool"}'
            )
            + "}",
            "x",
            "declarations.x",
        ),
        (
            '{"logic": "QF_UF", "sorts": ["U"], "declarations": {"f": {"args": ["U"], '
            '"result": "U", "args": ["U", "U"]}}, "assumptions": [], "goal": "true"}',
            "args",
            "declarations.f.args",
        ),
    ],
)
def test_duplicate_json_keys_are_rejected_with_the_key_and_its_place(
    text: str, key: str, where: str
) -> None:
    err = _error(text)
    assert err.code == "duplicate_key"
    assert err.where == where
    assert err.message == f"duplicate key `{key}`; an object names each key once"


def test_duplicate_goal_is_rejected_by_the_gate_not_proved(shared_gate: Z3ProofGate) -> None:
    # the last `goal` alone would be PROVED (`true` holds); the text is refused instead
    result = shared_gate.check(structured(_with_duplicate('"goal": "true"')))
    assert result.verdict is Verdict.REJECTED
    assert result.reason.startswith("duplicate_key: duplicate key `goal`")
