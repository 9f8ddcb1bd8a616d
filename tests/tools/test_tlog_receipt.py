"""Offline receipts (C2SP tlog-proof): round trip; each bad bundle is rejected with its stage."""

from __future__ import annotations

import base64

import pytest
from tlog_memory import MemoryLogStore

from sop_verified.errors import ReceiptError
from sop_verified.tools import merkle
from sop_verified.tools.signed_note import Signer, generate, sign_note
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_receipt import HEADER, ProofBundle, verify_bundle

ORIGIN = "example.test/log"
SIGNER = Signer.from_string(generate(ORIGIN)[0])
VKEY = SIGNER.verifier()
DATA = [b'{"entry":%d}' % i for i in range(37)]


@pytest.fixture(scope="module")
def bundle() -> ProofBundle:
    log = TransparencyLog(MemoryLogStore(), origin=ORIGIN, signer=SIGNER)
    log.append_many(DATA[:20])
    log.append_many(DATA[20:])
    return log.prove(13)


def test_bundle_round_trips_and_verifies_offline(bundle: ProofBundle) -> None:
    text = bundle.to_text()
    assert text.startswith(HEADER + "\nextra ")
    assert ProofBundle.from_text(text) == bundle
    got = verify_bundle(text, [VKEY])
    assert (got.index, got.payload) == (13, DATA[13])
    assert got.leaf_hash == merkle.leaf_hash(DATA[13])
    assert (got.checkpoint.size, got.checkpoint.root_hash) == (37, merkle.root_hash(DATA))
    verify_bundle(text, [VKEY], payload=DATA[13], expected_leaf=got.leaf_hash)


def test_bundle_without_extra_verifies_with_the_held_payload(bundle: ProofBundle) -> None:
    bare = ProofBundle(bundle.index, bundle.proof, bundle.checkpoint)
    assert "extra" not in bare.to_text()
    verify_bundle(bare.to_text(), [VKEY], payload=DATA[13])
    with pytest.raises(ReceiptError) as info:
        verify_bundle(bare.to_text(), [VKEY])
    assert info.value.stage == "payload"


def _stage(text: str | bytes, **kw: object) -> str:
    with pytest.raises(ReceiptError) as info:
        verify_bundle(text, kw.pop("keys", [VKEY]), **kw)  # type: ignore[arg-type]  # test kwargs
    assert str(info.value).startswith(f"receipt {info.value.stage} check failed")
    return info.value.stage


def _edit(bundle: ProofBundle, old: str, new: str) -> str:
    text = bundle.to_text()
    assert old in text
    return text.replace(old, new, 1)


def test_flipped_payload_fails_inclusion(bundle: ProofBundle) -> None:
    forged = ProofBundle(bundle.index, bundle.proof, bundle.checkpoint, DATA[13] + b" ")
    assert _stage(forged.to_text()) == "inclusion"


def test_payload_other_than_the_holders_is_rejected(bundle: ProofBundle) -> None:
    assert _stage(bundle.to_text(), payload=b"other") == "payload"
    assert _stage(bundle.to_text(), expected_leaf=bytes(32)) == "payload"


def test_wrong_index_fails_inclusion(bundle: ProofBundle) -> None:
    assert _stage(_edit(bundle, "index 13", "index 12")) == "inclusion"
    assert _stage(_edit(bundle, "index 13", "index 99")) == "inclusion"


def test_truncated_proof_fails_inclusion(bundle: ProofBundle) -> None:
    short = ProofBundle(bundle.index, bundle.proof[:-1], bundle.checkpoint, bundle.extra)
    assert _stage(short.to_text()) == "inclusion"
    long = ProofBundle(bundle.index, (*bundle.proof, bytes(32)), bundle.checkpoint, bundle.extra)
    assert _stage(long.to_text()) == "inclusion"


def test_garbage_proof_hash_fails_inclusion(bundle: ProofBundle) -> None:
    bad = ProofBundle(bundle.index, (bytes(32), *bundle.proof[1:]), bundle.checkpoint, bundle.extra)
    assert _stage(bad.to_text()) == "inclusion"


def test_wrong_key_fails_signature(bundle: ProofBundle) -> None:
    other = Signer.from_string(generate(ORIGIN)[0]).verifier()
    assert _stage(bundle.to_text(), keys=[other]) == "signature"
    assert _stage(bundle.to_text(), keys=[]) == "signature"


def test_unknown_key_id_fails_signature(bundle: ProofBundle) -> None:
    stranger = Signer.from_string(generate("someone.else")[0])
    body = bundle.checkpoint[: bundle.checkpoint.index("\n\n") + 1]
    foreign = ProofBundle(bundle.index, bundle.proof, sign_note(body, stranger), bundle.extra)
    assert _stage(foreign.to_text()) == "signature"


def test_wrong_origin_fails_signature(bundle: ProofBundle) -> None:
    assert _stage(bundle.to_text(), origin="another.test/log") == "signature"


def test_wrong_size_in_the_checkpoint_fails_signature(bundle: ProofBundle) -> None:
    assert _stage(_edit(bundle, f"{ORIGIN}\n37\n", f"{ORIGIN}\n38\n")) == "signature"


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda t: t.replace(HEADER, "c2sp.org/tlog-proof@v2", 1), "header"),
        (lambda t: t.replace("\n\n", "\n", 1), "no blank line"),
        (lambda t: t.split("\n\n")[0] + "\n\n", "no checkpoint"),
        (lambda t: t.replace("index 13", "index 013", 1), "leading zero"),
        (lambda t: t.replace("index 13", "index -1", 1), "negative"),
        (lambda t: t.replace("index 13", "idx 13", 1), "index keyword"),
        (lambda t: t.replace("\nextra ", "\nextra !", 1), "extra not base64"),
        (lambda t: t.replace("index 13\n", "index 13\nnot-base64\n", 1), "proof not base64"),
        (lambda t: t.replace("index 13\n", "index 13\nAAAA\n", 1), "proof hash too short"),
        (lambda t: t.replace("index 13\n", "index 13\n" + "AAAA" * 11 + "\n" * 0, 1), "glued"),
        (lambda t: t[: len(HEADER) + 3], "truncated"),
        (lambda t: "", "empty"),
        (lambda t: "\xff garbage", "garbage"),
    ],
)
def test_malformed_bundle_fails_format(bundle: ProofBundle, mutate: object, why: str) -> None:
    text = mutate(bundle.to_text())  # type: ignore[operator]  # parametrized lambdas
    assert _stage(text) == "format", why


def test_too_many_proof_lines_fail_format(bundle: ProofBundle) -> None:
    line = base64.b64encode(bytes(32)).decode()
    text = _edit(bundle, "index 13\n", "index 13\n" + (line + "\n") * 65)
    assert _stage(text) == "format"


def test_oversized_or_non_utf8_bundle_fails_format() -> None:
    assert _stage(b"\xff\xfe") == "format"
    assert _stage(b"x" * ((4 << 20) + 1)) == "format"


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda n: n.replace("\n\n", "\n", 1), "missing blank line"),
        (lambda n: n[: n.rindex(" ") + 1] + "!!notbase64!!\n", "bad base64 signature"),
        (lambda n: n + "— " + "x" * 3 + " AAAA\n", "short signature"),
        (lambda n: n.replace("— example.test/log ", "— example test ", 1), "key name space"),
        (lambda n: n.replace("— example.test/log ", "— exa+mple ", 1), "key name plus"),
        (lambda n: n + "".join(f"— k{i} {'A' * 96}\n" for i in range(100)), "101 signatures"),
    ],
)
def test_malformed_checkpoint_note_is_rejected(
    bundle: ProofBundle, damage: object, why: str
) -> None:
    note = damage(bundle.checkpoint)  # type: ignore[operator]  # parametrized lambdas
    bad = ProofBundle(bundle.index, bundle.proof, note, bundle.extra)
    assert _stage(bad.to_text()) in {"format", "signature"}, why
