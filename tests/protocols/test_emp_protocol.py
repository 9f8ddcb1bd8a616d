"""EMP through ``sop.emp``: signed verification outputs, write-once, attested; obligations."""

from __future__ import annotations

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from protocol_env import Env

from sop_verified.core.request import Permission, Stage
from sop_verified.errors import InputError, IntegrityError, SOPError
from sop_verified.protocols.emp import (
    EMP,
    PREDICATE_OUTPUT,
    EmpState,
    VerificationOutput,
    emp_key_id,
    key_entry,
    output_resource,
    sign_output,
)
from sop_verified.protocols.emp.state import revoke_entry
from sop_verified.tools.attest import verify_envelope


def _output(key: Ed25519PrivateKey, subject: str, verdict: str = "PASS") -> VerificationOutput:
    return sign_output(
        subject="sha256:" + subject * 64,
        claim="obligation:emp-bounds",
        verdict=verdict,
        evidence={"solver": "z3", "checks": 3},
        key=key,
    )


def _stored(env: Env, output: VerificationOutput) -> list[str]:
    persistence = env.sop.persistence
    assert persistence is not None
    name = output_resource(output.subject, output.claim).removeprefix("verdicts/emp/")
    return [o.digest for o in persistence.objects("emp-verdicts", name)]


def test_an_output_is_recorded_write_once_with_an_attestation(env: Env) -> None:
    output = _output(env.emp_key, "1")
    d = env.sop.emp.record_output(output, token=env.emp)
    assert d.allowed, d.reasons
    record = d.record.output.to_dict()
    assert record["output_digest"] == output.digest()
    assert d.record.unchanged is False
    assert (d.to_dict()["output"], d.to_dict()["unchanged"]) == (record, False)  # the JSON form
    assert _stored(env, output) == [output.digest()]
    store, key = env.sop.store, env.sop.attestation_key
    assert store is not None and key is not None
    index = record["attestation_index"]
    ((_, _, payload),) = store.log.log_entries(index, index + 1)
    statement = verify_envelope(orjson.loads(payload)["envelope"], key.public_key())
    assert statement["predicateType"] == PREDICATE_OUTPUT
    assert statement["subject"][0]["digest"] == {"sha256": "1" * 64}
    assert statement["predicate"]["verdict"] == "PASS"
    assert statement["predicate"]["signature"] == output.signature


def test_a_second_different_output_for_the_same_subject_and_claim_is_refused(env: Env) -> None:
    first = _output(env.emp_key, "2", "PASS")
    assert env.sop.emp.record_output(first, token=env.emp).allowed
    size = env.log_size()
    second = _output(env.emp_key, "2", "FAIL")
    d = env.sop.emp.record_output(second, token=env.emp)
    assert d.effect is Permission.DENY
    assert (d.reasons[0].stage, d.reasons[0].code) == (Stage.PROTOCOL, "immutability_violation")
    assert d.log_index is not None and d.log_index >= size  # the refusal is recorded
    assert _stored(env, first) == [first.digest()]  # nothing written: the first stays
    services = env.sop.protocols
    assert services is not None
    recorded = services.emp_state.recorded(first.subject, first.claim)
    assert recorded is not None and recorded.output_digest == first.digest()
    assert env.sop.persistence is not None and env.sop.persistence._index.pending() == []


def test_the_same_output_again_is_unchanged(env: Env) -> None:
    output = _output(env.emp_key, "3")
    assert env.sop.emp.record_output(output, token=env.emp).allowed
    again = env.sop.emp.record_output(output, token=env.emp)
    assert again.allowed and again.record.unchanged is True
    assert again.write.outcome == "unchanged"


def test_an_output_signed_by_an_unregistered_key_is_refused(env: Env) -> None:
    stranger = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
    output = _output(stranger, "4")
    d = env.sop.emp.record_output(output, token=env.emp)
    assert d.effect is Permission.DENY and d.reasons[0].code == "unknown_key"
    assert _stored(env, output) == []


def test_an_output_with_a_forged_signature_is_refused(env: Env) -> None:
    genuine = _output(env.emp_key, "5", "FAIL")
    forged = genuine.model_copy(update={"verdict": "PASS"})  # the verdict changed after signing
    d = env.sop.emp.record_output(forged, token=env.emp)
    assert d.effect is Permission.DENY and d.reasons[0].code == "bad_signature"
    assert _stored(env, forged) == []


def test_recording_needs_emps_capability(env: Env) -> None:
    d = env.sop.emp.record_output(_output(env.emp_key, "6"), token=env.csp)
    assert d.effect is Permission.DENY and d.reasons[0].stage is Stage.CAPABILITY


def test_emps_key_is_registered_on_the_admin_plane_and_logged(env: Env) -> None:
    key = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    start = env.log_size()
    key_id = env.sop.register_emp_key(key.public_key())
    entries = env.entries(start)
    assert [e["op"] for e in entries] == ["emp.key.register"]
    assert entries[0]["key_id"] == key_id
    assert env.sop.register_emp_key(key.public_key()) == key_id  # idempotent
    assert env.log_size() == start + 1
    with pytest.raises(InputError, match="not an Ed25519 public key"):
        env.sop.register_emp_key(b"short")


def test_a_bridge_request_cannot_register_a_key(env: Env) -> None:
    d = env.sop.submit(
        {
            "request_id": "key-via-bridge",
            "principal": "emp",
            "action": "key.rotate",
            "resource": "verdicts/emp/keys",
            "capability": env.emp,
        }
    )
    assert d.effect is Permission.DENY and d.reasons[0].code == "admin_via_bridge"


def test_outputs_and_keys_survive_a_reboot(own_env: Env) -> None:
    first = _output(own_env.emp_key, "7", "PASS")
    assert own_env.sop.emp.record_output(first, token=own_env.emp).allowed
    sop = own_env.reboot()
    second = _output(own_env.emp_key, "7", "INCONCLUSIVE")
    d = sop.emp.record_output(second, token=own_env.emp)
    assert d.reasons[0].code == "immutability_violation"
    assert sop.emp.record_output(_output(own_env.emp_key, "8"), token=own_env.emp).allowed


def test_a_malformed_output_is_refused_at_parsing() -> None:
    with pytest.raises(SOPError, match="malformed"):
        VerificationOutput.parse(b'{"subject": "sha256:00", "extra": 1}')


def test_a_facade_without_the_controller_cannot_record(env: Env) -> None:
    with pytest.raises(SOPError, match="no output controller"):
        EMP(env.sop).record_output(_output(env.emp_key, "9"), token=env.emp)


def test_obligations_still_go_through_the_gate(env: Env) -> None:
    ob = {
        "id": "emp-x",
        "format": "smt2",
        "source": "(set-logic QF_LIA)\n(declare-const x Int)\n(assert (> x x))\n(check-sat)\n",
    }
    outcome = env.sop.emp.submit_obligation(ob, token=env.emp)
    assert outcome.decision.allowed
    assert outcome.verdict is not None and str(outcome.verdict.verdict) == "PROVED"


def test_a_revoked_keys_new_outputs_are_refused_and_those_recorded_before_stay(
    own_env: Env,
) -> None:
    sop, key = own_env.sop, own_env.emp_key
    before = _output(key, "9")
    assert sop.emp.record_output(before, token=own_env.emp).allowed
    key_id = before.key_id
    with sop.events.subscribe(["sop.emp.key.revoke.v1"]) as events:
        receipt = sop.revoke_emp_key(key_id, "the signing host was compromised")
        assert receipt is not None
        event = events.poll(timeout=5)  # the revocation is published, from its log entry
    assert event is not None and orjson.loads(event.body)["sopindex"] == str(receipt.index)
    assert orjson.loads(event.body)["data"]["key_id"] == key_id
    ((_, _, payload),) = sop.store.log.log_entries(receipt.index, receipt.index + 1)
    assert orjson.loads(payload)["op"] == "emp.key.revoke"  # logged, on the admin plane
    assert sop.revoke_emp_key(key_id) is None  # revoked already: nothing logged again
    for rebooted in (False, True):  # the revocation holds after a reboot too
        running = own_env.reboot() if rebooted else sop
        after = _output(key, "a")
        d = running.emp.record_output(after, token=own_env.emp)
        assert d.effect is Permission.DENY and d.reasons[0].code == "revoked_key", d.reasons
        assert _stored(own_env, after) == []
        again = running.emp.record_output(before, token=own_env.emp)  # recorded before it
        assert again.allowed and again.record.unchanged is True
        services = running.protocols
        assert services is not None
        kept = services.emp_state.recorded(before.subject, before.claim)
        assert kept is not None and kept.output_digest == before.digest()
    with pytest.raises(SOPError, match="not registered"):
        own_env.sop.revoke_emp_key("0" * 64)


def test_an_output_record_after_its_keys_revocation_is_refused_as_forged() -> None:
    key = Ed25519PrivateKey.from_private_bytes(b"\x09" * 32)
    state = EmpState()
    state.apply(1, key_entry(key.public_key(), time=1), b"", None)  # type: ignore[arg-type]
    key_id = emp_key_id(key.public_key())
    state.apply(2, revoke_entry(key_id, reason="r", time=2), b"", None)  # type: ignore[arg-type]
    assert state.revoked_at(key_id) == 2
    record = {
        "type": "emp.output",
        "subject": "sha256:" + "b" * 64,
        "claim": "c",
        "verdict": "PASS",
        "output_digest": "sha256:" + "c" * 64,
        "key_id": key_id,
        "resource": "verdicts/emp/x",
        "decision_index": 3,
        "effect_index": 4,
        "attestation_index": 5,
        "time": 3,
    }
    with pytest.raises(IntegrityError, match="after its revocation at log index `2`"):
        state.apply(6, record, b"", None)  # type: ignore[arg-type]
