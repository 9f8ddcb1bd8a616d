"""Attestations verify with securesystemslib's DSSE Envelope (the reference); tampered do not."""

from __future__ import annotations

import base64
import json
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from securesystemslib.dsse import Envelope
from securesystemslib.exceptions import VerificationError as SslibVerificationError
from securesystemslib.signer import SSlibKey
from typer.testing import CliRunner

from sop_verified.cli import app
from sop_verified.errors import InputError, VerificationError
from sop_verified.nexus.keys import attestation_key_id
from sop_verified.nexus.log_service import attest
from sop_verified.nexus.sop import SOP
from sop_verified.tools.attest import (
    PAYLOAD_TYPE,
    PREDICATE_ARTIFACT,
    PREDICATE_VERDICT,
    STATEMENT_TYPE,
    pae,
    sign_envelope,
    statement,
    verify_envelope,
)
from sop_verified.tools.canonical import sha256_hex

NOW = 1_800_000_000
runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    data = tmp_path_factory.mktemp("attest") / "data"
    SOP.init(data)
    sop = SOP.boot(data, now=lambda: NOW)
    assert sop.log is not None and sop.attestation_key is not None
    verdict = {"obligation": "sha256:" + "ab" * 32, "verdict": "PROVED", "solver": "z3"}
    attest(
        sop.log,
        sop.attestation_key,
        "proof_verdict",
        subjects=[("obligation", "ab" * 32)],
        predicate_type=PREDICATE_VERDICT,
        predicate=verdict,
    )
    attest(
        sop.log,
        sop.attestation_key,
        "artifact",
        subjects=[("artifacts/drac/s1/out.bin", sha256_hex(b"artifact bytes"))],
        predicate_type=PREDICATE_ARTIFACT,
        predicate={"buildDefinition": {"buildType": "sop/persist"}, "runDetails": {}},
    )
    sop.close()
    out = tmp_path_factory.mktemp("envelopes")
    result = runner.invoke(app, ["attest", "export", str(out), "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.output
    return data, [Path(p) for p in json.loads(result.output)["written"]]


def _reference_key(data: Path) -> SSlibKey:
    pem = (data / "keys" / "attestation.pub").read_bytes()
    public = load_pem_public_key(pem)
    raw = public.public_bytes_raw()  # type: ignore[union-attr]  # an Ed25519 key
    return SSlibKey.from_crypto(public, keyid=sha256(raw).hexdigest())


def test_every_kind_is_exported(exported: tuple[Path, list[Path]]) -> None:
    _, files = exported
    kinds = {p.stem.split("-", 1)[1] for p in files}
    assert kinds == {"boot_manifest", "proof_verdict", "artifact"}


def test_exported_envelopes_verify_with_securesystemslib(exported: tuple[Path, list[Path]]) -> None:
    data, files = exported
    key = _reference_key(data)
    for path in files:
        envelope = Envelope.from_dict(json.loads(path.read_text()))
        assert envelope.payload_type == PAYLOAD_TYPE
        accepted = envelope.verify([key], 1)
        assert list(accepted) == [key.keyid]
        body = json.loads(envelope.pae().split(b" ", 4)[4])
        assert body["_type"] == STATEMENT_TYPE
        assert body["subject"][0]["digest"]["sha256"]


def test_boot_manifest_attestation_names_the_manifest(exported: tuple[Path, list[Path]]) -> None:
    _, files = exported
    boot = next(p for p in files if p.stem.endswith("boot_manifest"))
    env = json.loads(boot.read_text())
    body = json.loads(base64.b64decode(env["payload"]))
    assert body["subject"][0]["name"] == "boot-manifest.json"
    assert body["predicate"]["format"] == "sop-boot-manifest/v1"


@pytest.mark.parametrize("field", ["payload", "sig", "payloadType"])
def test_tampered_envelopes_are_rejected_by_the_reference(
    exported: tuple[Path, list[Path]], field: str
) -> None:
    data, files = exported
    env = json.loads(files[0].read_text())
    if field == "payload":
        body = bytearray(base64.b64decode(env["payload"]))
        body[10] ^= 1
        env["payload"] = base64.b64encode(bytes(body)).decode()
    elif field == "sig":
        sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
        sig[0] ^= 1
        env["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()
    else:
        env["payloadType"] = "application/json"
    with pytest.raises(SslibVerificationError):
        Envelope.from_dict(env).verify([_reference_key(data)], 1)
    public = load_pem_public_key((data / "keys" / "attestation.pub").read_bytes())
    with pytest.raises((VerificationError, InputError)):
        verify_envelope(env, public)  # type: ignore[arg-type]  # an Ed25519 key


def test_envelope_by_another_key_is_rejected() -> None:
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    body = statement([("x", "00" * 32)], PREDICATE_VERDICT, {"verdict": "PROVED"})
    env = sign_envelope(body, key, attestation_key_id(key))
    assert verify_envelope(env, key.public_key()) == body
    with pytest.raises(VerificationError, match="no envelope signature verifies"):
        verify_envelope(env, other.public_key())
    with pytest.raises(SslibVerificationError):
        Envelope.from_dict(env).verify([SSlibKey.from_crypto(other.public_key(), "k")], 1)


def test_pae_matches_the_dsse_spec_example() -> None:
    # the worked example of github.com/secure-systems-lab/dsse, protocol.md
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@pytest.mark.parametrize(
    "envelope",
    [
        b"not json",
        b"[]",
        b'{"payload": "x"}',
        b'{"payload": "!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
        b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
        b'{"payload": "e30=", "payloadType": "application/vnd.in-toto+json", "signatures": [1]}',
        b'{"payload": "e30=", "payloadType": "text/plain", "signatures": [{"sig": "AA=="}]}',
    ],
)
def test_malformed_envelopes_are_input_errors(envelope: bytes) -> None:
    with pytest.raises(InputError):
        verify_envelope(envelope, Ed25519PrivateKey.generate().public_key())


@pytest.mark.parametrize("subjects", [[], [("x", "ABC")], [("x", "g" * 64)]])
def test_statement_needs_well_formed_subjects(subjects: list[tuple[str, str]]) -> None:
    with pytest.raises(InputError):
        statement(subjects, PREDICATE_VERDICT, {})
