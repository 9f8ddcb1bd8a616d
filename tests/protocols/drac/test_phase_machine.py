"""DRAC's phase machine: one step forward at a time, and the gate agrees with the plain check.

Every (session position, step) pair of a three-phase machine is tried: the
``phase_order`` obligation the kernel derives is PROVED by the gate exactly
when :meth:`PhaseMachine.check_step` lets the step through.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import GateConfig, Z3ProofGate
from sop_verified.core.request import Request
from sop_verified.errors import ConfigError, IntegrityError, ProtocolError
from sop_verified.protocols.drac import (
    DEFAULT_PHASES,
    DracState,
    PhaseEvent,
    PhaseMachine,
    Step,
    check_phases,
    parse_artifact,
    parse_step,
    step_resource,
)
from sop_verified.protocols.obligations import protocol_obligations

PHASES = ("A", "B", "C")


def _apply(m: PhaseMachine, step: Step) -> None:
    m.apply({"type": "drac.phase", "session": step.session, "phase": step.phase,
             "event": str(step.event)})  # fmt: skip


def _walk(m: PhaseMachine, session: str, steps: int) -> None:
    """Take the first ``steps`` steps of the line for ``session``."""
    line = [Step(session, p, e) for p in m.phases for e in PhaseEvent]
    for step in line[:steps]:
        _apply(m, step)


def _code(m: PhaseMachine, step: Step) -> str | None:
    try:
        m.check_step(step)
    except ProtocolError as exc:
        return exc.code
    return None


def test_the_default_order_is_the_issue_s() -> None:
    assert DEFAULT_PHASES == ("SCAN", "RESOLVE", "ASSEMBLE", "VERIFY", "FREEZE")


def test_a_phase_is_entered_only_after_the_previous_one_completed() -> None:
    m = PhaseMachine(PHASES)
    assert _code(m, Step("s", "A", PhaseEvent.ENTER)) is None
    _walk(m, "s", 1)
    assert m.status("s") == ("A", "open")
    assert _code(m, Step("s", "B", PhaseEvent.ENTER)) == "out_of_order"
    _walk(m, "t", 2)
    assert m.status("t") == ("A", "completed")
    assert _code(m, Step("t", "B", PhaseEvent.ENTER)) is None
    assert _code(m, Step("t", "C", PhaseEvent.ENTER)) == "out_of_order"


def test_steps_of_unknown_sessions_phases_and_reopened_sessions_are_refused() -> None:
    m = PhaseMachine(PHASES)
    assert _code(m, Step("new", "A", PhaseEvent.COMPLETE)) == "unknown_session"
    assert _code(m, Step("new", "B", PhaseEvent.ENTER)) == "unknown_session"
    assert _code(m, Step("new", "Z", PhaseEvent.ENTER)) == "unknown_phase"
    _walk(m, "s", 1)
    assert _code(m, Step("s", "A", PhaseEvent.ENTER)) == "session_exists"


def test_a_finished_session_takes_no_more_steps() -> None:
    m = PhaseMachine(PHASES)
    _walk(m, "s", 6)
    assert m.status("s") == ("C", "completed")
    for p in PHASES:
        for e in PhaseEvent:
            assert _code(m, Step("s", p, e)) in ("out_of_order", "session_exists")


def test_artifacts_belong_to_the_open_phase_only() -> None:
    m = PhaseMachine(PHASES)
    with pytest.raises(ProtocolError, match="no DRAC session"):
        m.check_open("s", "A")
    _walk(m, "s", 1)
    m.check_open("s", "A")
    with pytest.raises(ProtocolError) as info:
        m.check_open("s", "B")
    assert info.value.code == "phase_not_open"
    _walk(m, "t", 2)
    with pytest.raises(ProtocolError) as info:
        m.check_open("t", "A")
    assert info.value.code == "phase_not_open"


def test_an_out_of_order_record_is_an_integrity_error() -> None:
    m = PhaseMachine(PHASES)
    with pytest.raises(IntegrityError, match="out of order"):
        _apply(m, Step("s", "B", PhaseEvent.ENTER))
    assert m.status("s") is None


@pytest.mark.parametrize(
    "phases", [(), ("A", "A"), ("lower",), tuple(f"P{i}" for i in range(17)), ("A-B",)]
)
def test_a_malformed_phase_order_is_refused(phases: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        check_phases(phases)


def test_resources_name_steps_and_artifacts_unambiguously() -> None:
    step = Step("s-1", "SCAN", PhaseEvent.COMPLETE)
    resource = step_resource(step)
    assert resource == "artifacts/drac/sessions/s-1/phases/SCAN/complete"
    assert parse_step(resource) == step
    assert parse_artifact(resource) is None
    assert parse_artifact("artifacts/drac/sessions/s-1/SCAN/out/plan.json") == (
        "s-1",
        "SCAN",
        "out/plan.json",
    )
    assert parse_step("artifacts/drac/sessions/s-1/phases/SCAN/skip") is None
    assert parse_artifact("artifacts/drac/sessions/s-1/scan/x") is None


@pytest.fixture(scope="module")
def gate() -> Iterator[Z3ProofGate]:
    g = Z3ProofGate(GateConfig(workers=1))
    yield g
    g.close()


def test_the_phase_order_obligation_is_proved_exactly_when_the_step_is_next(
    gate: Z3ProofGate,
) -> None:
    disagreements = []
    for position in range(7):
        m = PhaseMachine(PHASES)
        _walk(m, "s", position)
        for phase in (*PHASES, "Z"):
            for event in PhaseEvent:
                step = Step("s", phase, event)
                proved = gate.check(m.step_obligation(step)).verdict is Verdict.PROVED
                if proved != (_code(m, step) is None):
                    disagreements.append((position, phase, event))
    assert disagreements == []


def test_the_open_phase_obligation_is_proved_exactly_when_the_phase_is_open(
    gate: Z3ProofGate,
) -> None:
    for position in range(7):
        m = PhaseMachine(PHASES)
        _walk(m, "s", position)
        for phase in (*PHASES, "Z"):
            proved = gate.check(m.open_obligation("s", phase)).verdict is Verdict.PROVED
            try:
                m.check_open("s", phase)
                allowed = True
            except ProtocolError:
                allowed = False
            assert proved == allowed, (position, phase)


def _request(action: str, resource: str, **context: str) -> Request:
    return Request(
        request_id="r", principal="drac", action=action, resource=resource, context=context
    )


def test_the_kernel_derives_protocol_obligations_for_drac_and_csp_only() -> None:
    state = DracState(PHASES)
    step = _request("phase.advance", "artifacts/drac/sessions/s/phases/A/enter")
    assert [o.id[:6] for o in protocol_obligations(step, state, None)] == ["phase:"]
    art = _request("artifact.persist", "artifacts/drac/sessions/s/A/x")
    assert [o.id[:6] for o in protocol_obligations(art, state, None)] == ["phase:"]
    elsewhere = _request("artifact.persist", "artifacts/drac/s1/x")
    assert protocol_obligations(elsewhere, state, None) == []
    assert protocol_obligations(_request("phase.advance", "artifacts/drac/s1"), state, None) == []
    with pytest.raises(RuntimeError, match="not wired"):
        protocol_obligations(step, None, None)


def test_a_context_that_disagrees_with_the_resource_gets_a_refuted_obligation(
    gate: Z3ProofGate,
) -> None:
    state = DracState(PHASES)
    good = _request("phase.advance", "artifacts/drac/sessions/s/phases/A/enter", session="s")
    lying = _request("phase.advance", "artifacts/drac/sessions/s/phases/A/enter", session="t")
    malformed = _request("phase.advance", "artifacts/drac/sessions/s/phases/A/go")
    verdicts = [
        gate.check(protocol_obligations(r, state, None)[0]).verdict
        for r in (good, lying, malformed)
    ]
    assert verdicts == [Verdict.PROVED, Verdict.REFUTED, Verdict.REFUTED]
