"""The log: RFC 9162 proofs from tiles, a checkpoint per batch, tail-only open, no forks."""

from __future__ import annotations

import random
import threading

import pytest
from tlog_memory import MemoryLogStore

from sop_verified.errors import InputError, IntegrityError, StorageError, VerificationError
from sop_verified.tools import merkle, tlog
from sop_verified.tools.checkpoint import open_checkpoint
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Batch, LinkedPart
from sop_verified.tools.tlog_tiles import TreeState, locate, tile_key

ORIGIN = "example.test/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


def _log(store: MemoryLogStore, signer: Signer | None) -> TransparencyLog:
    return TransparencyLog(store, origin=ORIGIN, signer=signer)


def test_proofs_from_tiles_equal_the_list_based_ones(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    data = [b"e%d" % i for i in range(300)]
    rng = random.Random(7)
    at = 0
    while at < len(data):
        n = rng.choice([1, 2, 5, 16, 33])
        log.append_many(data[at : at + n])
        at += n
    for size in [1, 2, 3, 16, 17, 100, 255, 256, 257, 299, 300][: len(data)]:
        for index in range(0, size, max(1, size // 13)):
            assert log.inclusion_proof(index, size) == merkle.inclusion_proof(data[:size], index)
        for size1 in range(1, size + 1, max(1, size // 11)):
            assert log.consistency_proof(size1, size) == merkle.consistency_proof(
                data[:size], size1
            )
    assert log.root() == merkle.root_hash(data)


def test_every_batch_gets_a_signed_consistent_checkpoint(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    receipts = [log.append(b"a"), *log.append_many([b"b", b"c"]), log.append(b"d")]
    assert [r.index for r in receipts] == [0, 1, 2, 3]
    assert [r.tree_size for r in receipts] == [1, 3, 3, 4]
    sizes = sorted(store.checkpoints)
    assert sizes == [1, 3, 4]
    roots = {}
    for size, note in store.checkpoints.items():
        cp = open_checkpoint(note, [signer.verifier()], origin=ORIGIN)
        assert cp.size == size
        roots[size] = cp.root_hash
    merkle.verify_consistency(1, 4, log.consistency_proof(1, 4), roots[1], roots[4])
    r = receipts[1]
    assert r.checkpoint is not None and r.leaf_hash == merkle.leaf_hash(b"b")
    cp = open_checkpoint(r.checkpoint, [signer.verifier()], origin=ORIGIN)
    merkle.verify_inclusion(r.leaf_hash, r.index, cp.size, log.inclusion_proof(1, 3), cp.root_hash)


def test_reopen_reads_only_the_tail(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append_many([b"%d" % i for i in range(20_000)])
    store.reads = 0
    again = _log(store, signer)
    assert again.size == 20_000 and again.root() == log.root()
    assert store.reads <= 30 * 5  # a few tiles and leaves, not 20,000 entries


def test_tail_not_matching_the_checkpoint_fails_to_open(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append_many([b"%d" % i for i in range(40)])
    del store.entries[39]  # truncated: the latest checkpoint signs 40 entries
    with pytest.raises(IntegrityError, match="does not match the stored log"):
        _log(store, signer)


def test_checkpoint_by_another_key_fails_to_open(signer: Signer) -> None:
    store = MemoryLogStore()
    _log(store, signer).append(b"x")
    other = Signer.from_string(generate(ORIGIN)[0])
    with pytest.raises(VerificationError, match="no signature by a known key"):
        _log(store, other)


def test_entries_without_a_checkpoint_fail_to_open_signed(signer: Signer) -> None:
    store = MemoryLogStore()
    _log(store, None).append(b"unsigned")
    with pytest.raises(IntegrityError, match="no signed checkpoint"):
        _log(store, signer)


def test_unsigned_view_cannot_append_to_a_signed_log(signer: Signer) -> None:
    store = MemoryLogStore()
    _log(store, signer).append(b"x")
    view = TransparencyLog(store, origin=ORIGIN, signer=None, trusted=[signer.verifier()])
    with pytest.raises(StorageError, match="open it with its checkpoint key"):
        view.append(b"y")
    assert len(store.entries) == 1


def test_failed_write_acknowledges_nothing_and_the_log_goes_on(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"first")
    store.fail_writes = True
    with pytest.raises(StorageError, match="injected"):
        log.append(b"lost")
    assert log.size == 1 and len(store.entries) == 1
    store.fail_writes = False
    assert log.append(b"second").index == 1
    assert log.root() == merkle.root_hash([b"first", b"second"])


@pytest.fixture
def quick_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write waits a moment, not 20 s, for the store to say whether it was stored."""
    monkeypatch.setattr(tlog, "SETTLE_SECONDS", 0.3)


def test_a_store_that_stopped_answering_is_written_to_again_once_it_is_back(
    signer: Signer, quick_settle: None
) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"first")
    store.down = True  # the write fails, and so does re-reading the tail after it
    with pytest.raises(StorageError, match="not answering"):
        log.append(b"lost")
    with pytest.raises(StorageError, match="store is not answering"):
        log.append(b"lost too")  # still down: refused, nothing written
    assert len(store.entries) == 1
    store.down = False
    other = _log(store, signer)  # meanwhile another writer of the store appended
    other.append(b"by another writer")
    assert log.append(b"second").index == 2  # the tail was re-read first
    assert log.root() == merkle.root_hash([b"first", b"by another writer", b"second"])


@pytest.mark.parametrize("down_after", [0, 3], ids=["store-answers", "store-down-a-moment"])
def test_a_batch_whose_commit_answer_was_lost_is_read_back_and_acknowledged(
    signer: Signer, down_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"first")
    store.lose_answers = 1  # stored, then the connection drops before COMMIT's answer
    if down_after:
        store.down, store.up_after = False, None
        real = store.write_batch

        def then_down(batch: Batch) -> None:
            try:
                real(batch)
            finally:
                store.down, store.up_after = True, down_after

        monkeypatch.setattr(store, "write_batch", then_down)
    receipts = log.append_many([b"a", b"b"])
    assert [r.index for r in receipts] == [1, 2]  # the stored batch is acknowledged
    assert [store.entries[i][1] for i in range(3)] == [b"first", b"a", b"b"]  # once
    assert receipts[-1].checkpoint == store.checkpoints[3]
    assert log.append(b"next").index == 3


def test_a_batch_whose_outcome_stays_unknown_is_refused_and_the_log_goes_on(
    signer: Signer, quick_settle: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"first")
    store.lose_answers = 1
    real = store.write_batch

    def then_down(batch: Batch) -> None:
        try:
            real(batch)
        finally:
            store.down = True  # and stays down past SETTLE_SECONDS

    monkeypatch.setattr(store, "write_batch", then_down)
    with pytest.raises(StorageError, match="whether it was stored is unknown"):
        log.append(b"maybe")
    monkeypatch.setattr(store, "write_batch", real)
    store.down = False
    assert log.append(b"after").index == 2  # the tail re-read first: `maybe` was stored


@pytest.mark.parametrize("back", ["cut-back", "fork"])
def test_a_store_that_came_back_without_the_tree_it_held_is_refused_for_good(
    signer: Signer, back: str, quick_settle: None
) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append_many([b"a", b"b"])
    snapshot = (dict(store.entries), dict(store.tiles), dict(store.checkpoints))
    log.append(b"c")
    store.down = True
    with pytest.raises(StorageError):
        log.append(b"lost")
    store.down = False
    store.entries, store.tiles, store.checkpoints = snapshot  # restored: `c` is gone
    if back == "fork":  # ... and another tree of size 3 written on it
        _log(store, signer).append(b"not c")
    with pytest.raises(IntegrityError, match="kept checkpoint"):
        log.append(b"d")
    with pytest.raises(StorageError, match="unavailable after a failed write"):
        log.append(b"e")  # broken for good: this log takes no more entries
    assert b"d" not in {p for _, p in store.entries.values()}


def test_never_signs_a_checkpoint_inconsistent_with_the_last(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append_many([b"%d" % i for i in range(20)])
    real = tlog.extend

    def buggy(state: TreeState, leaves: list[bytes]) -> tuple[TreeState, list[tuple[int, bytes]]]:
        new, tiles = real(state, leaves)
        # node (2, 4), leaves [16, 20) of the signed prefix, comes out wrong in its tile
        key, pos = tile_key(0, 1), locate(2, 4)[2]
        return new, [
            (k, t[: 32 * pos] + bytes(32) + t[32 * pos + 32 :] if k == key else t) for k, t in tiles
        ]

    monkeypatch.setattr(tlog, "extend", buggy)
    before = dict(store.checkpoints)
    with pytest.raises(IntegrityError, match="inconsistent checkpoint"):  # spec: INV-5
        log.append_many([b"%d" % i for i in range(20, 40)])
    assert store.checkpoints == before
    assert len(store.entries) == 20


def test_corrupt_stored_tile_gives_proofs_that_do_not_verify(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    data = [b"%d" % i for i in range(40)]
    log.append_many(data)
    key = tile_key(0, 0)
    store.tiles[key] = bytes(len(store.tiles[key]))
    root = log.root()
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(merkle.leaf_hash(data[3]), 3, 40, log.inclusion_proof(3), root)


def test_previous_checkpoint_not_the_extended_tree_is_refused(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append_many([b"a", b"b", b"c"])
    other = TransparencyLog(MemoryLogStore(), origin=ORIGIN, signer=signer)
    other.append_many([b"x", b"y", b"z"])
    log._checkpoint = other.checkpoint  # a forked state: same size, another root
    with pytest.raises(IntegrityError, match="refusing to sign"):
        log.append(b"d")
    assert len(store.entries) == 3


def test_group_commit_threads_get_gap_free_unique_indices(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    got: dict[bytes, int] = {}
    lock = threading.Lock()

    def work(w: int) -> None:
        for i in range(50):
            payload = b"w%d-%d" % (w, i)
            r = log.append(payload)
            with lock:
                got[payload] = r.index

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got.values()) == list(range(400))
    assert all(store.entries[i][1] == p for p, i in got.items())
    assert len(store.checkpoints) <= 400  # batched: usually far fewer


def test_rotation_is_cosigned_and_switches_keys(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"before")
    new = Signer.from_string(generate(ORIGIN)[0])
    receipt = log.rotate(new, b"announcement")
    assert receipt.checkpoint is not None
    for key in (signer, new):
        open_checkpoint(receipt.checkpoint, [key.verifier()], origin=ORIGIN)
    after = log.append(b"after")
    assert after.checkpoint is not None
    with pytest.raises(VerificationError):
        open_checkpoint(after.checkpoint, [signer.verifier()], origin=ORIGIN)
    assert _log(store, new).size == 3


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda log: log.inclusion_proof(5, 3), InputError),
        (lambda log: log.inclusion_proof(0, 99), VerificationError),
        (lambda log: log.consistency_proof(0, 3), InputError),
        (lambda log: log.consistency_proof(2, 4), VerificationError),
        (lambda log: log.entry(3), InputError),
        (lambda log: log.entry(-1), InputError),
        (lambda log: log.prove(7), InputError),
        (lambda log: log.append("text"), TypeError),
    ],
)
def test_bad_arguments_are_rejected(signer: Signer, call: object, error: type) -> None:
    log = _log(MemoryLogStore(), signer)
    log.append_many([b"a", b"b", b"c"])
    with pytest.raises(error):
        call(log)  # type: ignore[operator]  # parametrized lambdas


def test_unsigned_log_has_nothing_to_prove_against() -> None:
    log = _log(MemoryLogStore(), None)
    log.append(b"a")
    with pytest.raises(InputError, match="no signed checkpoint"):
        log.prove(0)
    with pytest.raises(ValueError, match="no key to rotate"):
        log.rotate(Signer.from_string(generate(ORIGIN)[0]), b"x")


def test_rotating_to_the_current_key_is_refused(signer: Signer) -> None:
    log = _log(MemoryLogStore(), signer)
    log.append(b"a")
    with pytest.raises(ValueError, match="is the current one"):
        log.rotate(signer, b"announcement")
    assert log.size == 1


def test_linked_entry_follows_its_first_entry_in_the_same_batch(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    log.append(b"before")
    ((first, second),) = log.append_parts(
        [
            LinkedPart(
                b"decision",
                lambda index: f"effect of {index}".encode(),
                (("scope", "key", b"bytes"),),
            )
        ]
    )
    assert second is not None and (first.index, second.index) == (1, 2)
    assert first.checkpoint == second.checkpoint and first.tree_size == second.tree_size == 3
    assert [p for _, _, p in store.read_entries(0, 3)] == [b"before", b"decision", b"effect of 1"]
    assert store.attachments == [("scope", "key", b"bytes")]


def test_failing_linked_builder_fails_its_caller_alone(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)
    gate = threading.Barrier(9)
    errors: list[BaseException] = []

    def builder(_index: int) -> bytes:
        raise ValueError("cannot build")

    def linked() -> None:
        gate.wait()
        (got,) = log.append_parts([LinkedPart(b"doomed", builder, (("scope", "doomed", b"x"),))])
        if isinstance(got, ValueError):
            errors.append(got)

    def plain(i: int) -> None:
        gate.wait()
        log.append(f"plain {i}".encode())

    threads = [threading.Thread(target=linked)]
    threads += [threading.Thread(target=plain, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(errors) == 1 and str(errors[0]) == "cannot build"
    payloads = [p for _, _, p in store.read_entries(0, log.size)]
    assert sorted(payloads) == sorted(f"plain {i}".encode() for i in range(8))
    assert store.attachments == []  # nothing of the failed call was stored
    log.verify_tail()


def test_linked_builder_must_return_bytes(signer: Signer) -> None:
    log = _log(MemoryLogStore(), signer)
    (got,) = log.append_parts([LinkedPart(b"first", lambda _i: "text")])  # type: ignore[arg-type, return-value]
    assert isinstance(got, TypeError) and "must be bytes" in str(got)
    assert log.size == 0


def test_parts_share_one_batch_and_a_failing_part_is_left_out_alone(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)

    def doomed(_index: int) -> bytes:
        raise ValueError("cannot build")

    got = log.append_parts(
        [
            LinkedPart(b"plain"),
            LinkedPart(b"b", lambda i: f"effect of {i}".encode(), (("s", "b", b"B"),)),
            LinkedPart(b"c", doomed, (("s", "c", b"C"),)),
            LinkedPart(b"d", lambda i: f"effect of {i}".encode(), (("s", "d", b"D"),)),
        ]
    )
    plain, b, c, d = got
    assert isinstance(c, ValueError) and str(c) == "cannot build"
    assert isinstance(plain, tuple) and plain[0].index == 0 and plain[1] is None
    assert isinstance(b, tuple) and b[1] is not None and (b[0].index, b[1].index) == (1, 2)
    assert isinstance(d, tuple) and d[1] is not None and (d[0].index, d[1].index) == (3, 4)
    payloads = [p for _, _, p in store.read_entries(0, log.size)]
    assert payloads == [b"plain", b"b", b"effect of 1", b"d", b"effect of 3"]
    assert store.attachments == [("s", "b", b"B"), ("s", "d", b"D")]  # nothing of `c`
    assert len({r.checkpoint for r in (plain[0], b[0], b[1], d[0], d[1])}) == 1
    log.verify_tail()


def test_parts_whose_every_builder_fails_append_nothing(signer: Signer) -> None:
    store = MemoryLogStore()
    log = _log(store, signer)

    def doomed(_index: int) -> bytes:
        raise ValueError("cannot build")

    (got,) = log.append_parts([LinkedPart(b"x", doomed, (("s", "x", b"X"),))])
    assert isinstance(got, ValueError)
    assert log.size == 0 and store.attachments == []
    assert log.append(b"after").index == 0  # the log goes on
