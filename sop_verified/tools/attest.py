"""Attestations: in-toto Statement v1 inside DSSE envelopes, signed with Ed25519.

DSSE (github.com/secure-systems-lab/dsse, protocol v1) signs the pre-authentication
encoding ``PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body``
(lengths in ASCII decimal), never the JSON around it. The envelope is
``{"payload": b64(body), "payloadType": type, "signatures": [{"keyid", "sig"}]}``
with standard base64. The body is an in-toto Statement v1
(``_type``, ``subject`` with digests, ``predicateType``, ``predicate``) in
canonical JSON. Envelopes verify with securesystemslib's ``Envelope``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.canonical import canonical_json

__all__ = [
    "PAYLOAD_TYPE",
    "PREDICATE_ARTIFACT",
    "PREDICATE_BOOT",
    "PREDICATE_VERDICT",
    "STATEMENT_TYPE",
    "pae",
    "sign_envelope",
    "statement",
    "verify_envelope",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_BOOT = "https://sop.local/attestation/boot-manifest/v1"
PREDICATE_VERDICT = "https://sop.local/attestation/proof-verdict/v1"
PREDICATE_ARTIFACT = "https://slsa.dev/provenance/v1"

_MAX_ENVELOPE = 1 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """Return DSSE's pre-authentication encoding of ``payload``.

    Args:
        payload_type: The envelope's payload type.
        payload: The serialized body.

    Returns:
        The bytes that are signed.
    """
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(
    subjects: list[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]
) -> dict[str, Any]:
    """Return an in-toto Statement v1.

    Args:
        subjects: ``(name, sha256 hex)`` of each thing attested.
        predicate_type: The predicate's type URI.
        predicate: The predicate.

    Returns:
        The statement as data.

    Raises:
        InputError: no subject, or a digest that is not 64 lowercase hex digits.
    """
    if not subjects:
        raise InputError("a statement needs at least one subject", accepted="(name, sha256 hex)")
    for name, digest in subjects:
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise InputError(f"subject `{name}` digest is malformed", accepted="64 lowercase hex")
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in subjects],
        "predicateType": predicate_type,
        "predicate": predicate,
    }


def sign_envelope(body: dict[str, Any], key: Ed25519PrivateKey, keyid: str) -> dict[str, Any]:
    """Sign ``body`` (a statement) into a DSSE envelope.

    Args:
        body: The statement; serialized as canonical JSON.
        key: The Ed25519 attestation key.
        keyid: The key id written into the signature (securesystemslib requires one).

    Returns:
        The envelope as data.
    """
    payload = canonical_json(body)
    sig = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": PAYLOAD_TYPE,
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }


def _b64(value: object, where: str) -> bytes:
    if not isinstance(value, str):
        raise InputError("value is not a base64 string", where=where, accepted="standard base64")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InputError("value is not base64", where=where, accepted="standard base64") from None


def _parse(envelope: dict[str, Any] | bytes | str) -> dict[str, Any]:
    if isinstance(envelope, bytes | str):
        raw = envelope.encode() if isinstance(envelope, str) else envelope
        if len(raw) > _MAX_ENVELOPE:
            raise InputError("envelope is too large", accepted=f"at most {_MAX_ENVELOPE} bytes")
        try:
            envelope = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InputError(
                f"envelope is not JSON: {exc}",
                accepted="a DSSE envelope: a JSON object of `payload`, `payloadType`, `signatures`",
            ) from None
    if not isinstance(envelope, dict) or set(envelope) != {"payload", "payloadType", "signatures"}:
        raise InputError(
            "envelope is malformed", accepted="`payload`, `payloadType` and `signatures` only"
        )
    return envelope


def verify_envelope(
    envelope: dict[str, Any] | bytes | str, public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """Verify a DSSE envelope signed by ``public_key`` and return its statement.

    Args:
        envelope: The envelope (untrusted), as data or JSON.
        public_key: The attestation public key.

    Returns:
        The in-toto statement.

    Raises:
        InputError: the envelope or its statement is malformed.
        VerificationError: no signature by ``public_key`` verifies.
    """
    env = _parse(envelope)
    if env["payloadType"] != PAYLOAD_TYPE:
        raise InputError(f"payload type `{env['payloadType']}`", accepted=f"`{PAYLOAD_TYPE}`")
    payload = _b64(env["payload"], "payload")
    sigs = env["signatures"]
    if not isinstance(sigs, list) or not sigs or len(sigs) > 16:
        raise InputError("signatures are malformed", accepted="1 to 16 signatures")
    message = pae(PAYLOAD_TYPE, payload)
    for i, sig in enumerate(sigs):
        if not isinstance(sig, dict):
            raise InputError("signature is not an object", where=f"signatures[{i}]")
        try:
            public_key.verify(_b64(sig.get("sig"), f"signatures[{i}].sig"), message)
        except InvalidSignature:
            continue
        return _statement(payload)
    raise VerificationError(
        "no envelope signature verifies with the attestation key",
        expected="a signature by the attestation key",
        calculated=len(sigs),
    )


def _statement(payload: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"statement is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("_type") != STATEMENT_TYPE:
        raise InputError("payload is not an in-toto statement", accepted=f"`{STATEMENT_TYPE}`")
    return body
