"""C2SP signed notes: byte-exact with the published examples, and fail-closed on bad input.

Published examples used as facts, with their sources:
- golang.org/x/mod sumdb/note/note_test.go (TestSign, TestOpen, TestNewVerifier):
  the PeterNeumann / EnochRoot keys, the two-line text and its signatures;
- transparency-dev/formats log/note_test.go (TestSumDBNoteParsing, BenchmarkParse):
  the sum.golang.org checkpoint of size 6476701 with its log signature and three
  Ed25519 cosignatures (monkeys, bananas, witness);
- c2sp.org/signed-note, section "Example": the example.com/foo key and note.
"""

from __future__ import annotations

import base64

import pytest

from sop_verified.errors import ConfigError, InputError, SOPError, VerificationError
from sop_verified.tools.signed_note import (
    MAX_NOTE_SIZE,
    Signer,
    Verifier,
    generate,
    key_id,
    open_note,
    sign_note,
    verify_note,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdng"
    "otpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWL"
    "ox33WWd1RvMc+QQ=\n"
)
SIGNED = TEXT + "\n" + PETER_SIG

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_TEXT = "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
SUMDB_NOTE = (
    SUMDB_TEXT + "\n— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIG"
    "u95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
)
COSIGNERS = {
    "monkeys+db4d9f7e+AULaJMvTtDLHPUcUrjdDad9vDlh/PTfC2VV60JUtCfWT": "— monkeys 202ffh9ve46Mqbhu"
    "yb4wnC2Pwdan5EsXQym/tF1ggXJqhjGosU4T5intH4iKMRgDLxrnXuIjRaU2NbvAnaepM6Y+8ww=\n",
    "bananas+cf639f13+AaPjhFnPCQnid/Ql32KWhmh+uk72FVRfK+2DLmO3BI3M": "— bananas z2OfE+2bbsBZ7NLg"
    "fuslc0v7NFW2QyexJ7fhePpoL2N/P7N/COd5S+JNHbQEAlYzz2C5sg0E+x/MggS1mDR6t3/9rQw=\n",
    "witness+f13a86db+AdYV1Ztajd9BvyjP2HgpwrqYL6TjOwIjGMOq8Bu42xbN": "— witness 8TqG25yWGFLdT7WP"
    "f/WoyeG3LwqtkXP+8S3yykOVm6EMh4hPgCke6eSVPU4BdtXNMPJBXKF+UpDbGgCdcpR8SVSoqAU=\n",
}
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2"
    "ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

PETER = Verifier.from_string(PETER_VKEY)
ENOCH = Verifier.from_string(ENOCH_VKEY)


def test_go_test_key_signs_the_published_note_byte_for_byte() -> None:
    assert sign_note(TEXT, Signer.from_string(PETER_SKEY)) == SIGNED


def test_go_verifier_key_round_trips_and_matches_its_signer() -> None:
    signer = Signer.from_string(PETER_SKEY)
    assert PETER.vkey == PETER_VKEY
    assert PETER.key_id == signer.key_id == 0xC74F20A3
    assert signer.verifier() == PETER
    assert key_id("PeterNeumann", base64.b64decode(PETER_VKEY.split("+")[2])[1:]) == 0xC74F20A3


def test_published_note_opens_with_its_key() -> None:
    assert open_note(SIGNED, [PETER]) == TEXT
    assert open_note(SIGNED.encode(), [PETER]) == TEXT


def test_unknown_key_signatures_are_ignored_but_reported() -> None:
    note = verify_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER])
    assert [s.name for s in note.verified] == ["PeterNeumann"]
    assert [(s.name, s.key_id) for s in note.unverified] == [("EnochRoot", 0xAF0CFE78)]
    both = verify_note(TEXT + "\n" + PETER_SIG + ENOCH_SIG, [PETER, ENOCH])
    assert [s.name for s in both.verified] == ["PeterNeumann", "EnochRoot"]


def test_sum_golang_org_checkpoint_opens_with_its_cosignatures() -> None:
    log = Verifier.from_string(SUMDB_VKEY)
    assert open_note(SUMDB_NOTE, [log]) == SUMDB_TEXT
    cosigned = SUMDB_NOTE + "".join(COSIGNERS.values())
    witnesses = [Verifier.from_string(v) for v in COSIGNERS]
    assert len(verify_note(cosigned, [log, *witnesses]).verified) == 4
    assert len(verify_note(cosigned, witnesses[:1]).unverified) == 3


def test_c2sp_specification_example_opens() -> None:
    assert (
        open_note(C2SP_NOTE, [Verifier.from_string(C2SP_VKEY)]) == "This is an example message.\n"
    )


def test_generated_keys_sign_and_open() -> None:
    skey, vkey = generate("sop.example/log")
    assert skey.startswith("PRIVATE+KEY+sop.example/log+")
    signer, verifier = Signer.from_string(skey), Verifier.from_string(vkey)
    assert signer.verifier() == verifier
    text = "multi\n\nparagraph text\n\n"
    assert open_note(sign_note(text, signer), [verifier]) == text


def test_note_signed_by_several_keys_opens_with_any_one() -> None:
    a, b = (Signer.from_string(generate(n)[0]) for n in ("a.example", "b.example"))
    note = sign_note(TEXT, a, b)
    assert open_note(note, [b.verifier()]) == TEXT
    assert len(verify_note(note, [a.verifier(), b.verifier()]).verified) == 2


def test_signer_repr_never_shows_the_private_key() -> None:
    secret = PETER_SKEY.rsplit("+", 1)[1]
    assert secret not in repr(Signer.from_string(PETER_SKEY))
    assert "c74f20a3" in repr(Signer.from_string(PETER_SKEY))


# --- wrong keys -------------------------------------------------------------------------


def test_note_without_a_known_key_is_rejected() -> None:
    with pytest.raises(VerificationError, match="no signature by a known key") as info:
        open_note(SIGNED, [ENOCH])
    assert info.value.expected == ["EnochRoot+af0cfe78"]
    assert info.value.calculated == ["PeterNeumann+c74f20a3"]


def test_note_with_no_verifiers_is_rejected() -> None:
    with pytest.raises(VerificationError):
        open_note(SIGNED, [])


def test_tampered_text_is_rejected() -> None:
    with pytest.raises(VerificationError, match="PeterNeumann\\+c74f20a3"):
        open_note(SIGNED.replace("answer", "Answer"), [PETER])


def test_bad_signature_by_a_known_key_rejects_the_whole_note() -> None:
    forged = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationError, match="does not verify"):
        open_note(TEXT + "\n" + forged, [PETER])
    # even when another known key's signature verifies
    with pytest.raises(VerificationError):
        open_note(TEXT + "\n" + PETER_SIG + forged, [PETER])


def test_unknown_key_id_under_a_known_name_is_ignored() -> None:
    wrong_id = PETER_SIG.replace("x08g", "xxxx")
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(TEXT + "\n" + wrong_id, [PETER])
    assert open_note(TEXT + "\n" + wrong_id + PETER_SIG, [PETER]) == TEXT


def test_known_key_id_under_another_name_is_ignored() -> None:
    renamed = PETER_SIG.replace("PeterNeumann", "CarmenSandiego")
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_note(TEXT + "\n" + renamed, [PETER])


def test_conflicting_verifiers_for_one_name_and_id_are_refused() -> None:
    # A real 32-bit key-id collision needs ~2**16 generated keys; forge one by hand:
    # a verifier claiming Peter's name and key id with another public key.
    impostor = Verifier("PeterNeumann", b"\x01" * 32)
    object.__setattr__(impostor, "_key_id", PETER.key_id)
    with pytest.raises(ConfigError, match="share name and key id"):
        open_note(SIGNED, [PETER, impostor])
    assert open_note(SIGNED, [PETER, Verifier.from_string(PETER_VKEY)]) == TEXT


# --- malformed notes --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "match"),
    [
        (TEXT, "no blank line before the signatures"),
        (TEXT + PETER_SIG, "no blank line before the signatures"),
        (TEXT + "\n", "must end in a newline"),
        (TEXT + "\n" + PETER_SIG[:-1], "must end in a newline"),
        ("\x01" + SIGNED, "control character"),
        (SIGNED.replace("problem,", "problem,\r"), "control character"),
        (SIGNED.replace("Neumann x08", "Neumann\tx08"), "control character"),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"), "not canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "a+b"), "key name `a\\+b`"),
        (TEXT + "\n" + PETER_SIG.replace("— PeterNeumann", "— "), "key name ``"),
        (TEXT + "\n" + PETER_SIG.replace("x08go", "x08g!"), "not canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("JnAM=", "JnAN="), "not canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("JnAM=", "JnAM"), "not canonical base64"),
        (TEXT + "\n— PeterNeumann x08gow==\n", "not canonical base64"),
        (TEXT + "\n" + PETER_SIG.replace("— ", "- "), "must start with `— `"),
        (SIGNED + "Unexpected line.\n", "must start with `— `"),
        (TEXT + "\n" + PETER_SIG * 101, "`101` signatures exceed `100`"),
        (TEXT + "\n" + ENOCH_SIG * 101, "`101` signatures exceed `100`"),
        ("x" * MAX_NOTE_SIZE + "\n\n" + PETER_SIG, "exceed"),
    ],
)
def test_malformed_note_rejected(note: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        open_note(note, [PETER])
    assert not isinstance(info.value, VerificationError)


def test_non_utf8_note_rejected() -> None:
    with pytest.raises(InputError, match="not UTF-8 at byte `0`"):
        open_note(b"\xff" + SIGNED.encode(), [PETER])
    with pytest.raises(InputError, match="not UTF-8"):
        open_note("\ud800" + SIGNED, [PETER])


def test_one_hundred_signatures_are_accepted() -> None:
    assert open_note(TEXT + "\n" + PETER_SIG * 100, [PETER]) == TEXT


def test_note_of_wrong_type_is_caller_misuse() -> None:
    with pytest.raises(TypeError):
        open_note(None, [PETER])  # type: ignore[arg-type]  # misuse on purpose


# --- malformed key strings --------------------------------------------------------------


def test_every_mangled_verifier_key_is_rejected() -> None:
    # As golang.org/x/mod's TestNewVerifier: every proper substring, every byte bumped.
    b = PETER_VKEY
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(InputError):
                    Verifier.from_string(b[i:j])
    for i in range(len(b)):
        with pytest.raises(InputError):
            Verifier.from_string(b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :])


def test_every_mangled_signer_key_is_rejected_without_echoing_it() -> None:
    b, secret = PETER_SKEY, PETER_SKEY.rsplit("+", 1)[1]
    mangled = [b[i:j] for i in range(len(b) + 1) for j in range(i + 1, len(b) + 1)]
    mangled = [m for m in mangled if m != b]
    mangled += [b[:i] + chr(ord(b[i]) + 1) + b[i + 1 :] for i in range(len(b))]
    for m in mangled:
        with pytest.raises(InputError) as info:
            Signer.from_string(m)
        assert secret not in str(info.value)


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        # golang.org/x/mod TestNewVerifier: wrong key length / unknown algorithm, key id adjusted
        (
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
            "key material is malformed",
        ),
        (
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "signature type `0x65` is not supported",
        ),
        (PETER_VKEY.replace("c74f20a3", "C74F20A3"), "key id `C74F20A3` is malformed"),
        (PETER_VKEY.replace("c74f20a3", "c74f20a4"), "does not match the key"),
        (PETER_VKEY.replace("PeterNeumann", "Peter Neumann"), "key name is malformed"),
        (PETER_VKEY.replace("PeterNeumann", ""), "key name is malformed"),
        (PETER_VKEY.replace("0TW", "0TX"), "does not match the key"),
        (PETER_VKEY + "=", "key material is malformed"),
        ("PeterNeumann", "verifier key is malformed"),
    ],
)
def test_malformed_verifier_key_rejected(vkey: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Verifier.from_string(vkey)


def test_errors_are_sop_errors() -> None:
    for call in (lambda: Verifier.from_string("x"), lambda: open_note("x", [PETER])):
        with pytest.raises(SOPError):
            call()


# --- signing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("no final newline", "must end in a newline"),
        ("tab\there\n", "control character"),
        ("\ud800\n", "not UTF-8"),
    ],
)
def test_sign_note_rejects_malformed_text(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        sign_note(text, Signer.from_string(PETER_SKEY))


def test_sign_note_needs_distinct_signers() -> None:
    signer = Signer.from_string(PETER_SKEY)
    with pytest.raises(ValueError, match="1 to 100 signers"):
        sign_note(TEXT)
    with pytest.raises(ValueError, match="share a name and key id"):
        sign_note(TEXT, signer, Signer.from_string(PETER_SKEY))


@pytest.mark.parametrize("name", ["", "a b", "a+b", "a\nb", "a\u00a0b", "\ud800"])
def test_generate_rejects_bad_key_names(name: str) -> None:
    with pytest.raises(InputError, match="key name"):
        generate(name)
