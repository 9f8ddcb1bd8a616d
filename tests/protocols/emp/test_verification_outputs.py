"""EMP's verification outputs: what the signature covers, registered keys, immutability."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.errors import IntegrityError, ProtocolError
from sop_verified.protocols.emp import (
    EmpState,
    VerificationOutput,
    emp_key_id,
    key_entry,
    output_resource,
    sign_output,
)
from sop_verified.tools.tlog_store import Receipt

KEY = Ed25519PrivateKey.from_private_bytes(b"\x05" * 32)
SUBJECT = "sha256:" + "a" * 64
RECEIPT = Receipt(0, b"\0" * 32, 1)


def _out(verdict: str = "PASS", **evidence: Any) -> VerificationOutput:
    return sign_output(
        subject=SUBJECT, claim="tests:unit", verdict=verdict, evidence=evidence, key=KEY
    )


def _state() -> EmpState:
    state = EmpState()
    state.apply(0, key_entry(KEY.public_key(), time=1), b"", RECEIPT)
    return state


def _record(state: EmpState, output: VerificationOutput) -> None:
    entry = {
        "type": "emp.output",
        "subject": output.subject,
        "claim": output.claim,
        "verdict": output.verdict,
        "output_digest": output.digest(),
        "key_id": output.key_id,
        "resource": output_resource(output.subject, output.claim),
        "decision_index": 1,
        "effect_index": 2,
        "attestation_index": 3,
        "time": 1,
    }
    state.apply(4, entry, b"", RECEIPT)


def _code(state: EmpState, output: VerificationOutput) -> str | None:
    try:
        state.verify(output)
    except ProtocolError as exc:
        return exc.code
    return None


def test_a_signed_output_verifies_with_the_registered_key() -> None:
    assert _code(_state(), _out(checks=3)) is None


@pytest.mark.parametrize(
    "change",
    [
        {"verdict": "FAIL"},
        {"claim": "tests:other"},
        {"subject": "sha256:" + "b" * 64},
        {"evidence": {"checks": 4}},
    ],
)
def test_any_change_after_signing_breaks_the_signature(change: dict[str, Any]) -> None:
    assert _code(_state(), _out(checks=3).model_copy(update=change)) == "bad_signature"


def test_an_output_of_an_unregistered_key_is_refused() -> None:
    assert _code(EmpState(), _out()) == "unknown_key"


def test_a_different_output_for_a_recorded_subject_and_claim_is_an_immutability_violation() -> None:
    state = _state()
    first = _out("PASS")
    assert state.is_recorded(first) is False
    _record(state, first)
    assert state.is_recorded(first) is True
    with pytest.raises(ProtocolError) as info:
        state.is_recorded(_out("FAIL"))
    assert info.value.code == "immutability_violation"
    with pytest.raises(IntegrityError, match="second"):
        _record(state, _out("FAIL"))  # a log that tried it would not replay


def test_one_subject_may_carry_outputs_for_different_claims() -> None:
    state = _state()
    _record(state, _out())
    other = sign_output(subject=SUBJECT, claim="tests:e2e", verdict="FAIL", evidence={}, key=KEY)
    assert state.is_recorded(other) is False
    assert output_resource(SUBJECT, "tests:e2e") != output_resource(SUBJECT, "tests:unit")


def test_the_stored_form_is_canonical_and_parses_back() -> None:
    output = _out(b=1, a=2)
    data = output.to_bytes()
    assert data.index(b'"a":2') < data.index(b'"b":1')
    assert VerificationOutput.parse(data) == output
    assert output.key_id == emp_key_id(KEY.public_key())


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"subject": "sha256:00"}',
        b'{"subject": "sha256:' + b"a" * 64 + b'", "claim": "c", "verdict": "MAYBE",'
        b' "evidence": {}, "key_id": "' + b"0" * 64 + b'", "signature": "' + b"A" * 86 + b'=="}',
    ],
)
def test_malformed_outputs_are_refused(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        VerificationOutput.parse(raw)
    assert info.value.code == "bad_output"


def test_oversized_evidence_is_refused() -> None:
    with pytest.raises(ProtocolError, match="evidence"):
        _out(blob="x" * 20_000)


def test_a_key_registered_twice_is_an_integrity_error() -> None:
    state = _state()
    with pytest.raises(IntegrityError, match="twice"):
        state.apply(1, key_entry(KEY.public_key(), time=2), b"", RECEIPT)
    forged = {**key_entry(KEY.public_key(), time=2), "key_id": "0" * 64}
    with pytest.raises(IntegrityError, match="wrong key id"):
        EmpState().apply(0, forged, b"", RECEIPT)
