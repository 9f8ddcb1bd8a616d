"""SOP's own obligations: scope containment, narrowing, phase order and lineage through the gate."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import Z3ProofGate, compile_smt2
from sop_verified.core.proofgate.derive import (
    MAX_LINEAGE,
    lineage,
    narrowing,
    phase_order,
    scope_containment,
)
from sop_verified.errors import InputError
from sop_verified.tools.paths import Glob

PHASES = ["assemble", "compile", "verify", "publish"]


def test_derived_obligations_pass_the_filter_without_string_predicates() -> None:
    for obligation in (
        scope_containment("artifacts/drac/a.json", "artifacts/drac/**"),
        narrowing(["artifacts/**"], ["artifacts/drac/*.json"]),
        phase_order(PHASES, "assemble", "compile"),
        lineage({"s2": "s1", "s1": None}, "s2", "s1"),
    ):
        compiled = compile_smt2(obligation.source)
        text = compiled.solver_script()
        assert "str.prefixof" not in text and "str.contains" not in text
        assert obligation.id.split(":")[0] in ("scope", "narrowing", "phase", "lineage")


@pytest.mark.parametrize(
    ("path", "scope", "verdict"),
    [
        ("artifacts/drac/x/y.json", "artifacts/drac/**", Verdict.PROVED),
        ("artifacts/drac/y.json", "artifacts/drac/*.json", Verdict.PROVED),
        ("artifacts/drac", "artifacts/drac/**", Verdict.REFUTED),
        ("artifacts/drac2/y.json", "artifacts/drac/**", Verdict.REFUTED),
        ("artifacts/csp/y.json", "artifacts/drac/**", Verdict.REFUTED),
        ("state/csp/s1/blob", "state/*/s?/**", Verdict.PROVED),
    ],
)
def test_scope_containment_verdicts(
    path: str, scope: str, verdict: Verdict, shared_gate: Z3ProofGate
) -> None:
    result = shared_gate.check(scope_containment(path, scope))
    assert result.verdict is verdict, result.reason
    if verdict is Verdict.REFUTED:
        assert result.evidence["model"]["p"] == f'"{path}"'


def test_scope_containment_refuses_malformed_paths() -> None:
    for bad in ("../etc/passwd", "/abs", "a//b", "a/./b"):
        with pytest.raises(InputError):
            scope_containment(bad, "**")


_SEG = st.sampled_from(["a", "b", "drac", "x.json", "y-1", "..x"])


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.lists(_SEG, min_size=1, max_size=4).map("/".join),
    scope=st.sampled_from(["a/**", "a/*", "**/x.json", "drac/*/x.json", "a/b", "?/**", "**"]),
)
def test_scope_containment_agrees_with_the_glob_matcher(
    path: str, scope: str, shared_gate: Z3ProofGate
) -> None:
    result = shared_gate.check(scope_containment(path, scope))
    expected = Verdict.PROVED if Glob(scope).matches(path) else Verdict.REFUTED
    assert result.verdict is expected


@pytest.mark.parametrize(
    ("parent", "child", "verdict"),
    [
        (["artifacts/**"], ["artifacts/drac/*.json"], Verdict.PROVED),
        (["artifacts/drac/**", "artifacts/csp/**"], ["artifacts/csp/x/*"], Verdict.PROVED),
        (["artifacts/drac/**"], ["artifacts/**"], Verdict.REFUTED),
        (["artifacts/drac/*.json"], ["artifacts/drac/*"], Verdict.REFUTED),
        (["a/*/c"], ["a/b/c"], Verdict.PROVED),
    ],
)
def test_narrowing_verdicts(
    parent: list[str], child: list[str], verdict: Verdict, shared_gate: Z3ProofGate
) -> None:
    result = shared_gate.check(narrowing(parent, child))
    assert result.verdict is verdict, result.reason
    if verdict is Verdict.REFUTED:
        witness = result.evidence["model"]["p"].strip('"')
        assert any(Glob(c).matches(witness) for c in child)
        assert not any(Glob(p).matches(witness) for p in parent)


@pytest.mark.parametrize(
    ("current", "target", "verdict"),
    [
        ("assemble", "compile", Verdict.PROVED),
        ("verify", "publish", Verdict.PROVED),
        ("assemble", "verify", Verdict.REFUTED),
        ("compile", "assemble", Verdict.REFUTED),
        ("publish", "publish", Verdict.REFUTED),
        ("unknown", "assemble", Verdict.REFUTED),
        ("verify", "unknown", Verdict.REFUTED),
    ],
)
def test_phase_order_verdicts(
    current: str, target: str, verdict: Verdict, shared_gate: Z3ProofGate
) -> None:
    result = shared_gate.check(phase_order(PHASES, current, target))
    assert result.verdict is verdict
    if verdict is Verdict.PROVED:
        assert set(result.evidence["unsat_core"]) == {"current", "target", "one_step"}


@pytest.mark.parametrize(
    ("links", "snapshot", "root", "verdict"),
    [
        ({"s3": "s2", "s2": "s1", "s1": None}, "s3", "s1", Verdict.PROVED),
        ({"s1": None}, "s1", "s1", Verdict.PROVED),
        ({"s3": "s2", "s2": None, "s1": None}, "s3", "s1", Verdict.REFUTED),
        ({"s3": "s2", "s2": "s3"}, "s3", "s1", Verdict.REFUTED),
        ({"s3": "s2", "s2": "s1", "s1": None}, "s3", "s9", Verdict.REFUTED),
    ],
)
def test_lineage_verdicts(
    links: dict[str, str | None],
    snapshot: str,
    root: str,
    verdict: Verdict,
    shared_gate: Z3ProofGate,
) -> None:
    assert shared_gate.check(lineage(links, snapshot, root)).verdict is verdict


def test_long_lineage_chain_is_proved_and_overlong_is_refused(shared_gate: Z3ProofGate) -> None:
    links: dict[str, str | None] = {f"s{i:02d}": f"s{i - 1:02d}" for i in range(1, MAX_LINEAGE)}
    links["s00"] = None
    result = shared_gate.check(lineage(links, f"s{MAX_LINEAGE - 1:02d}", "s00"))
    assert result.verdict is Verdict.PROVED
    too_long = {f"t{i}": None for i in range(MAX_LINEAGE + 1)}
    with pytest.raises(InputError):
        lineage(too_long, "t0", "t1")
