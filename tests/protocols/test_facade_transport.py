"""A facade called for a remote client carries the transport: the certificate's principal rules."""

from __future__ import annotations

from protocol_env import Env

from sop_verified.core.transport import Transport


def test_drac_step_with_another_principals_transport_is_denied_and_logged(env: Env) -> None:
    decision = env.sop.drac.open_session(
        "s-transport-1", token=env.drac, transport=Transport("emp")
    )
    assert not decision.allowed
    assert decision.reasons[0].code == "principal_mismatch"
    assert decision.log_index is not None
    entry = env.entries(decision.log_index)[0]
    assert entry["transport"] == {"principal": "emp"}
    assert env.sop.drac.status("s-transport-1") is None  # nothing moved


def test_drac_step_with_its_own_transport_is_allowed_and_logs_the_key(env: Env) -> None:
    said = Transport("drac", idempotency_key="k-transport-2")
    decision = env.sop.drac.open_session("s-transport-2", token=env.drac, transport=said)
    assert decision.allowed, decision.reasons
    assert decision.log_index is not None
    entry = env.entries(decision.log_index)[0]
    assert entry["transport"] == {"principal": "drac", "idempotency_key": "k-transport-2"}


def test_csp_blob_with_another_principals_transport_writes_nothing(env: Env) -> None:
    decision = env.sop.csp.put_blob(
        b"never stored", state_class="working", token=env.csp, transport=Transport("drac")
    )
    assert not decision.allowed
    assert decision.reasons[0].code == "principal_mismatch"
    assert decision.write is None


def test_emp_obligation_with_another_principals_transport_never_reaches_the_gate(env: Env) -> None:
    obligation = {"id": "t-1", "format": "smt2", "source": "(assert false)\n(check-sat)\n"}
    outcome = env.sop.emp.submit_obligation(obligation, token=env.emp, transport=Transport("csp"))
    assert not outcome.decision.allowed
    assert outcome.decision.reasons[0].code == "principal_mismatch"
    assert outcome.verdict is None
