"""C2SP tlog-cosignature: verified against real witnesses' cosignatures, fail-closed otherwise.

Facts used, with their sources:
- tests/vectors/c2sp-tlog-cosignature/real-checkpoint.json: a CT log checkpoint
  cosigned by four public witnesses (see tests/vectors/README.md);
- c2sp.org/tlog-cosignature, section "Ed25519 signed message": the example message
  for ``time 1679315147``; section "Format": the example cosignature line of
  ``witness.example.com/w1``, whose timestamp bytes encode that same time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.cosignature import (
    MAX_FUTURE_SECONDS,
    CosignatureSigner,
    CosignatureVerifier,
    cosignature_key_id,
    generate_cosigner,
    signed_message,
    verify_cosignatures,
)
from sop_verified.tools.signed_note import Verifier, parse_note, verify_note

VECTOR = json.loads(
    (
        Path(__file__).parents[1] / "vectors" / "c2sp-tlog-cosignature" / "real-checkpoint.json"
    ).read_text(encoding="utf-8")
)
NOTE: str = VECTOR["checkpoint"]
WITNESSES = [CosignatureVerifier.from_string(w["vkey"]) for w in VECTOR["witnesses"]]
NOW = VECTOR["timestamp"] + 86_400

SPEC_TEXT = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
SPEC_MESSAGE = b"cosignature/v1\ntime 1679315147\n" + SPEC_TEXT
SPEC_LINE_B64 = (
    "jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)

SEED = bytes(range(32))
GOLDEN_VKEY = "witness.example/w1+e75f6532+BAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
GOLDEN_LINE = (
    "— witness.example/w1 519lMgAAAABkGFDLBuRDazBLVac2NE+Y+IjbjQOcXLfF9CSDZVUIoS83rE1nFZsVE8Yi"
    "WV6Ngr7lV8H6bdoBQGP/l73euDMQ9k+bBQ==\n"
)


def test_real_witnesses_cosignatures_verify() -> None:
    found = verify_cosignatures(NOTE, WITNESSES, minimum=4, now=NOW)
    assert sorted(c.vkey for c in found) == sorted(w.vkey for w in WITNESSES)
    assert {c.timestamp for c in found} == {VECTOR["timestamp"]}


def test_real_checkpoint_log_line_verifies_with_sops_signed_notes() -> None:
    log = Verifier.from_string(VECTOR["log_vkey"])
    opened = verify_note(NOTE, [log])
    assert [s.name for s in opened.verified] == [log.name]
    assert len(opened.unverified) == 5  # the 0x05 STH line and the four cosignatures


def test_each_real_witness_key_id_is_the_spec_formula() -> None:
    for w in VECTOR["witnesses"]:
        name, hex_id, b64 = w["vkey"].split("+", 2)
        material = base64.b64decode(b64)
        assert material[0] == 0x04
        digest = hashlib.sha256(name.encode() + b"\n" + material).digest()
        assert digest[:4].hex() == hex_id
        assert cosignature_key_id(name, material[1:]) == int(hex_id, 16)


def test_plain_note_key_reads_as_its_cosigner_key() -> None:
    legacy = VECTOR["legacy_vkeys"][0]
    parsed = CosignatureVerifier.from_string(legacy["vkey"])
    assert parsed.vkey == legacy["same_as"]
    assert verify_cosignatures(NOTE, [parsed], minimum=1, now=NOW)


def test_clobbered_size_is_refused() -> None:
    forged = NOTE.replace("\n1432088532\n", "\n1432088533\n", 1)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_cosignatures(forged, WITNESSES[:1], minimum=1, now=NOW)


def test_one_bad_line_by_a_trusted_witness_rejects_the_note() -> None:
    line = next(x for x in NOTE.splitlines() if x.startswith("— remora.n621.de "))
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[-1] ^= 1
    bad = NOTE.replace(line, f"— remora.n621.de {base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(VerificationError, match="remora"):
        verify_cosignatures(bad, WITNESSES, minimum=1, now=NOW)


def test_changed_timestamp_breaks_the_signature() -> None:
    line = next(x for x in NOTE.splitlines() if x.startswith("— remora.n621.de "))
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1  # the timestamp's last byte: it is signed too
    bad = NOTE.replace(line, f"— remora.n621.de {base64.b64encode(bytes(raw)).decode()}")
    with pytest.raises(VerificationError, match="does not verify"):
        verify_cosignatures(bad, WITNESSES, minimum=1, now=NOW)


def test_quorum_counts_trusted_cosigners_only() -> None:
    stranger = CosignatureVerifier.from_string(generate_cosigner("stranger.example/w")[1])
    with pytest.raises(VerificationError, match="`1` trusted cosigners cosigned"):
        verify_cosignatures(NOTE, [WITNESSES[0], stranger], minimum=2, now=NOW)
    assert len(verify_cosignatures(NOTE, [WITNESSES[0], stranger], minimum=1, now=NOW)) == 1


def test_a_witness_cosigning_twice_counts_once() -> None:
    signer = CosignatureSigner("w.example/a", SEED)
    text = parse_note(NOTE)[0]
    doubled = NOTE + signer.cosign(text, 100) + signer.cosign(text, 200)
    found = verify_cosignatures(doubled, [signer.verifier()], minimum=1, now=NOW)
    assert [(c.vkey, c.timestamp) for c in found] == [(signer.verifier().vkey, 200)]
    with pytest.raises(InputError, match="cannot be met"):
        verify_cosignatures(doubled, [signer.verifier()], minimum=2, now=NOW)


def test_quorum_of_zero_checks_nothing_and_negative_is_refused() -> None:
    assert verify_cosignatures(NOTE, [], minimum=0, now=NOW) == ()
    with pytest.raises(InputError):
        verify_cosignatures(NOTE, WITNESSES, minimum=-1, now=NOW)


def test_cosignature_from_the_future_is_refused() -> None:
    early = VECTOR["timestamp"] - MAX_FUTURE_SECONDS - 1
    with pytest.raises(VerificationError, match="in the future"):
        verify_cosignatures(NOTE, WITNESSES, minimum=1, now=early)
    assert verify_cosignatures(NOTE, WITNESSES, minimum=4, now=early + 1)


def test_timestamp_above_2_63_is_refused() -> None:
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    verifier = CosignatureVerifier("w.example/a", key.public_key().public_bytes_raw())
    huge = 1 << 63
    message = b"cosignature/v1\ntime %d\n" % huge + SPEC_TEXT
    sig = huge.to_bytes(8, "big") + key.sign(message)
    with pytest.raises(VerificationError, match="above 2\\*\\*63"):
        verifier.verify(SPEC_TEXT, sig)


def test_signed_message_is_the_specs_example() -> None:
    assert signed_message(1679315147, SPEC_TEXT) == SPEC_MESSAGE
    with pytest.raises(ValueError, match="timestamp"):
        signed_message(-1, SPEC_TEXT)


def test_specs_example_line_encodes_the_example_time() -> None:
    raw = base64.b64decode(SPEC_LINE_B64)
    assert len(raw) == 4 + 8 + 64
    assert int.from_bytes(raw[4:12], "big") == 1679315147


def test_golden_cosignature_is_byte_exact() -> None:
    signer = CosignatureSigner("witness.example/w1", SEED)
    assert signer.verifier().vkey == GOLDEN_VKEY
    assert signer.cosign(SPEC_TEXT, 1679315147) == GOLDEN_LINE


def test_cosignature_matches_a_reference_built_from_the_spec_text() -> None:
    """Key id, timestamp and signature computed by hand from the spec's wording."""
    key = Ed25519PrivateKey.from_private_bytes(SEED)
    public = key.public_key().public_bytes_raw()
    name = b"witness.example/w1"
    kid = hashlib.sha256(name + b"\n" + b"\x04" + public).digest()[:4]
    stamp = (1679315147).to_bytes(8, "big")
    sig = key.sign(b"cosignature/v1\ntime 1679315147\n" + SPEC_TEXT)
    expected = "— witness.example/w1 " + base64.b64encode(kid + stamp + sig).decode() + "\n"
    assert expected == GOLDEN_LINE


def test_generated_key_round_trips() -> None:
    skey, vkey = generate_cosigner("witness.example/w2")
    signer = CosignatureSigner.from_string(skey)
    assert signer.verifier() == CosignatureVerifier.from_string(vkey)
    note = NOTE + signer.cosign(parse_note(NOTE)[0], NOW)
    assert verify_cosignatures(note, [signer.verifier()], minimum=1, now=NOW)
    assert "PRIVATE" not in repr(signer)


@pytest.mark.parametrize(
    "vkey",
    [
        "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw",  # short
        "remora.n621.de+00000000+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # wrong id
        "remora.n621.de+DA77ADE7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # upper hex
        "remora.n621.de+da77ade7+BevN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",  # type 0x05
        "remora.n621.de+da77ade7",
        "re mora+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2",
    ],
)
def test_malformed_cosigner_keys_are_refused(vkey: str) -> None:
    with pytest.raises(InputError):
        CosignatureVerifier.from_string(vkey)


@pytest.mark.parametrize(
    "skey",
    [
        "PRIVATE+KEY+w+00000000+BAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
        "PRIVATE+KEY+w+00000000+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",  # type 0x01
        "KEY+w+00000000+BAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
    ],
)
def test_malformed_signer_keys_are_refused_without_echoing_them(skey: str) -> None:
    with pytest.raises(InputError) as caught:
        CosignatureSigner.from_string(skey)
    assert "BAAB" not in str(caught.value) and "AQAB" not in str(caught.value)
