"""CSP's snapshot book: lineage (no rollback without the operator), revocation, parents.

The lineage obligation the kernel derives is checked against the book's
plain-code check on every (anchor, snapshot) pair of a small forest: the gate
proves it exactly when the book allows the resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sop_verified.core.obligations import Verdict
from sop_verified.core.proofgate import GateConfig, Z3ProofGate
from sop_verified.errors import IntegrityError, ProtocolError
from sop_verified.protocols.csp import REVOKE_OP, ROLLBACK_OP, Manifest, SnapshotBook
from sop_verified.tools.tlog_store import Receipt

RECEIPT = Receipt(0, b"\0" * 32, 1)


def _snap(n: int) -> str:
    return f"snap-{n:032x}"


def _seal(book: SnapshotBook, n: int, parent: int | None, session: str = "s") -> None:
    entry: dict[str, Any] = {
        "type": "csp.seal",
        "snapshot": _snap(n),
        "session": session,
        "parent": None if parent is None else _snap(parent),
        "created": n,
        "merkle_root": "0" * 64,
        "manifest_digest": "sha256:" + "0" * 64,
        "resource": f"snapshots/csp/manifests/{session}/{_snap(n)}.json",
        "entries": 1,
        "envelope": {},
    }
    book.apply(n, entry, b"", RECEIPT)


def _resume(book: SnapshotBook, n: int, session: str = "s") -> None:
    entry = {"type": "csp.resume", "session": session, "snapshot": _snap(n)}
    book.apply(100 + n, entry, b"", RECEIPT)


def _book() -> SnapshotBook:
    """1 <- 2 <- 3, and 2 <- 4 (a branch), all in session ``s``."""
    book = SnapshotBook()
    for n, parent in ((1, None), (2, 1), (3, 2), (4, 2)):
        _seal(book, n, parent)
    return book


def _code(book: SnapshotBook, n: int, session: str = "s") -> str | None:
    try:
        book.check_resume(session, _snap(n))
    except ProtocolError as exc:
        return exc.code
    return None


def test_any_snapshot_descending_from_the_first_resumes_before_any_resume() -> None:
    book = _book()
    assert [_code(book, n) for n in (1, 2, 3, 4)] == [None, None, None, None]


def test_an_older_snapshot_than_the_last_resumed_is_a_rollback() -> None:
    book = _book()
    _resume(book, 3)
    assert _code(book, 3) is None
    assert _code(book, 2) == "lineage"
    assert _code(book, 1) == "lineage"
    assert _code(book, 4) == "lineage"  # a sibling branch is not a descendant either


def test_an_authorised_rollback_moves_the_anchor_back() -> None:
    book = _book()
    _resume(book, 3)
    book.apply(200, {"type": "admin", "op": ROLLBACK_OP, "session": "s", "snapshot": _snap(2)},
               b"", RECEIPT)  # fmt: skip
    assert _code(book, 2) is None and _code(book, 4) is None
    assert _code(book, 1) == "lineage"


def test_a_revoked_snapshot_and_its_descendants_are_refused() -> None:
    book = _book()
    book.apply(300, {"type": "admin", "op": REVOKE_OP, "snapshot": _snap(2)}, b"", RECEIPT)
    assert book.is_revoked(_snap(2)) and not book.is_revoked(_snap(3))
    assert [_code(book, n) for n in (1, 2, 3, 4)] == [None, "revoked", "revoked", "revoked"]


def test_unknown_sessions_and_snapshots_are_refused() -> None:
    book = _book()
    assert _code(book, 1, session="other") == "unknown_session"
    assert _code(book, 9) == "unknown_snapshot"
    _seal(book, 10, None, session="t")
    assert _code(book, 10) == "unknown_snapshot"  # it exists, in another session


def test_parents_are_snapshots_of_the_same_session() -> None:
    book = _book()
    _seal(book, 10, None, session="t")
    with pytest.raises(ProtocolError, match="names its parent"):
        book.check_parent("s", None)
    with pytest.raises(ProtocolError) as info:
        book.check_parent("s", _snap(10))
    assert info.value.code == "unknown_parent"
    book.check_parent("s", _snap(4))
    book.check_parent("new-session", None)


def test_a_record_that_does_not_fit_is_an_integrity_error() -> None:
    book = _book()
    with pytest.raises(IntegrityError, match="already"):
        _seal(book, 2, 1)  # sealed twice
    _resume(book, 3)
    with pytest.raises(IntegrityError, match="rollback"):
        _resume(book, 1)  # a replayed log cannot resume what the live one refused


@pytest.fixture(scope="module")
def gate() -> Iterator[Z3ProofGate]:
    g = Z3ProofGate(GateConfig(workers=1))
    yield g
    g.close()


def test_the_lineage_obligation_is_proved_exactly_when_the_book_allows(gate: Z3ProofGate) -> None:
    book = _book()
    _seal(book, 5, 3)
    cases = []
    for anchor in (None, 2, 3):
        if anchor is not None:
            _resume(book, anchor)
        for n in (1, 2, 3, 4, 5, 77):
            proved = gate.check(book.lineage_obligation("s", _snap(n))).verdict is Verdict.PROVED
            cases.append((anchor, n, proved, _code(book, n) is None))
    assert all(proved == allowed for _, _, proved, allowed in cases), cases
    assert any(proved for *_, proved, _ in cases) and not all(p for *_, p, _ in cases)


def test_a_manifest_must_be_canonical_and_sorted() -> None:
    m = Manifest.build(session="s", parent=None, created=1, entries={"b": "sha256:" + "1" * 64})
    with pytest.raises(ProtocolError) as info:
        Manifest.parse(m.to_bytes().replace(b",", b", ", 1))
    assert info.value.code == "bad_manifest"
    unsorted = (
        b'{"created":1,"entries":[{"digest":"sha256:' + b"1" * 64 + b'","key":"b"},'
        b'{"digest":"sha256:' + b"1" * 64 + b'","key":"a"}],"parent":null,"session":"s"}'
    )
    with pytest.raises(ProtocolError, match="sorted"):
        Manifest.parse(unsorted)
    with pytest.raises(ProtocolError):
        Manifest.build(session="s", parent=None, created=1, entries={})
