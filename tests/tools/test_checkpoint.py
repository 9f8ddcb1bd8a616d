"""C2SP tlog-checkpoint bodies: published examples parse, malformed ones are rejected.

Sources: the sum.golang.org checkpoint of transparency-dev/formats
log/note_test.go (TestSumDBNoteParsing) and the example of c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64

import pytest

from sop_verified.errors import InputError, VerificationError
from sop_verified.tools.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from sop_verified.tools.merkle import EMPTY_ROOT, root_hash
from sop_verified.tools.signed_note import Signer, Verifier, generate

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n6476701\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n"
    "— sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu95949rj4nPRYfv"
    "imWEPWL+o3GeoWwOoAw=\n"
)
C2SP_TEXT = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = root_hash([b"a", b"b", b"c"])
ROOT_B64 = base64.b64encode(ROOT).decode()


def test_sum_golang_org_checkpoint_opens_and_parses() -> None:
    cp = open_checkpoint(
        SUMDB_NOTE, [Verifier.from_string(SUMDB_VKEY)], origin="go.sum database tree"
    )
    assert (cp.origin, cp.size, cp.extensions) == ("go.sum database tree", 6476701, ())
    assert cp.root_hash == base64.b64decode("mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=")


def test_wrong_origin_is_rejected_after_verification() -> None:
    with pytest.raises(VerificationError, match="origin") as info:
        open_checkpoint(SUMDB_NOTE, [Verifier.from_string(SUMDB_VKEY)], origin="Go rocks")
    assert (info.value.expected, info.value.calculated) == ("Go rocks", "go.sum database tree")


def test_unsigned_checkpoint_is_never_parsed() -> None:
    with pytest.raises(VerificationError, match="no signature by a known key"):
        open_checkpoint(SUMDB_NOTE, [], origin="go.sum database tree")


def test_c2sp_example_body_round_trips() -> None:
    cp = Checkpoint.from_text(C2SP_TEXT)
    assert (cp.origin, cp.size) == ("example.com/behind-the-sofa", 20852163)
    assert cp.to_text() == C2SP_TEXT


def test_signed_checkpoint_round_trips_with_extensions() -> None:
    skey, vkey = generate("sop.example/log")
    cp = Checkpoint("sop.example/log", 3, ROOT, ("ext one", "ext two"))
    note = sign_checkpoint(cp, Signer.from_string(skey))
    assert note.startswith(
        f"sop.example/log\n3\n{ROOT_B64}\next one\next two\n\n— sop.example/log "
    )
    assert open_checkpoint(note, [Verifier.from_string(vkey)], origin="sop.example/log") == cp


def test_empty_tree_checkpoint() -> None:
    cp = Checkpoint("log", 0, EMPTY_ROOT)
    assert Checkpoint.from_text(cp.to_text()) == cp


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("log\n3\n", "at least 3"),
        (f"log\n3\n{ROOT_B64}", "end in a newline"),
        (f"\n3\n{ROOT_B64}\n", "origin must be a non-empty line"),
        (f"log\n03\n{ROOT_B64}\n", "size `03`"),
        (f"log\n-3\n{ROOT_B64}\n", "size `-3`"),
        (f"log\n+3\n{ROOT_B64}\n", "size `\\+3`"),
        (f"log\n 3\n{ROOT_B64}\n", "size ` 3`"),
        (f"log\n3_0\n{ROOT_B64}\n", "size `3_0`"),
        (f"log\n\u0663\n{ROOT_B64}\n", "size"),
        (f"log\nbananas\n{ROOT_B64}\n", "size `bananas`"),
        (f"log\n18446744073709551616\n{ROOT_B64}\n", "not an integer in"),
        (f"log\n3438945738945739845734895735\n{ROOT_B64}\n", "size"),
        ("log\n3\nYmFuYW5hcw==\n", "root hash"),
        ("log\n3\nThisIsn'tBase64\n", "root hash"),
        (f"log\n3\n{ROOT_B64[:-2]}\n", "root hash"),
        (f"log\n3\n{ROOT_B64}\n\n", "extension must be a non-empty line"),
        (f"log\n3\n{ROOT_B64}\next\n\n\n", "extension"),
    ],
)
def test_malformed_checkpoint_text_rejected(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        Checkpoint.from_text(text)


def test_checkpoint_fields_are_validated_on_construction() -> None:
    with pytest.raises(InputError, match="root hash"):
        Checkpoint("log", 1, ROOT[:31])
    with pytest.raises(InputError, match="size"):
        Checkpoint("log", -1, ROOT)
    with pytest.raises(InputError, match="origin"):
        Checkpoint("two\nlines", 1, ROOT)
    with pytest.raises(InputError, match="extension"):
        Checkpoint("log", 1, ROOT, ("",))
