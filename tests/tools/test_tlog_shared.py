"""Several writers on one log store (SOP replicas on PostgreSQL): a moved head is re-read.

Two :class:`TransparencyLog` objects over one store stand for two replicas. A
batch built on a stale head is refused by the store (``LogHeadMovedError``),
the log re-reads the tail, tells ``on_foreign`` what the other writer
appended, and builds the batch again on the new head: indexes stay gap-free,
every checkpoint extends the one before, and linked entries point at their
decision's new index.
"""

from __future__ import annotations

import itertools

import pytest
from tlog_memory import MemoryLogStore

from sop_verified.errors import IntegrityError, LogHeadMovedError, StateMovedError, StorageError
from sop_verified.tools import tlog
from sop_verified.tools.checkpoint import open_checkpoint
from sop_verified.tools.merkle import verify_consistency
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog
from sop_verified.tools.tlog_store import Batch, LinkedPart

ORIGIN = "shared.test/log"


@pytest.fixture
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


def _replica(store: MemoryLogStore, signer: Signer, seen: list[tuple[int, int]]) -> TransparencyLog:
    return TransparencyLog(
        store, origin=ORIGIN, signer=signer, on_foreign=lambda a, b, _: seen.append((a, b))
    )


@pytest.mark.parametrize("under_lock", [True, False], ids=["rebuilt-under-lock", "retried"])
def test_a_stale_writer_rebuilds_its_batch_on_the_new_head(
    signer: Signer, under_lock: bool
) -> None:
    store = MemoryLogStore()
    store.refuse_rebuilds = not under_lock  # a store without Batch.rebuild: the log retries
    seen_a: list[tuple[int, int]] = []
    seen_b: list[tuple[int, int]] = []
    a, b = _replica(store, signer, seen_a), _replica(store, signer, seen_b)
    a.append(b"a0")
    b_receipt = b.append(b"b0")  # b still thinks the log is empty
    assert b_receipt.index == 1 and seen_b == [(0, 1)]
    a.append_many([b"a1", b"a2"])
    assert seen_a == [(1, 2)]
    assert sorted(store.entries) == [0, 1, 2, 3]
    assert [store.entries[i][1] for i in range(4)] == [b"a0", b"b0", b"a1", b"a2"]
    # every stored checkpoint verifies and extends the one before it
    sizes = sorted(store.checkpoints)
    assert sizes == [1, 2, 4]
    opened = [
        open_checkpoint(store.checkpoints[s], [signer.verifier()], origin=ORIGIN) for s in sizes
    ]
    for old, new in itertools.pairwise(opened):
        proof = a.consistency_proof(old.size, new.size)
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)


def test_a_linked_entry_names_its_decisions_index_after_the_rebuild(signer: Signer) -> None:
    store = MemoryLogStore()
    a, b = _replica(store, signer, []), _replica(store, signer, [])
    a.append_many([b"x", b"y"])
    part = LinkedPart(b"decision", lambda at: f"effect of {at}".encode(), ())
    ((decision, effect),) = b.append_parts([part])  # type: ignore[misc]
    assert (decision.index, effect.index) == (2, 3)
    assert store.entries[3][1] == b"effect of 2"  # built again on the new head, not `effect of 0`


def test_state_moved_gives_the_batch_back_unwritten(signer: Signer) -> None:
    store = MemoryLogStore()
    a = _replica(store, signer, [])

    def refuse(start: int, end: int, entries: object) -> None:
        raise StateMovedError(f"entries [{start}, {end}) changed the state")

    b = TransparencyLog(store, origin=ORIGIN, signer=signer, on_foreign=refuse)
    a.append(b"revocation")
    with pytest.raises(StateMovedError):
        b.append(b"decided on the old state")
    assert sorted(store.entries) == [0]  # nothing of b's batch was written
    assert b.size == 1  # b re-read the tail: its next batch goes on the new head
    assert b.append(b"decided again").index == 1


def test_a_head_that_keeps_moving_fails_the_batch_without_writing(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryLogStore()
    log = _replica(store, signer, [])
    monkeypatch.setattr(tlog, "HEAD_ATTEMPTS", 3)
    calls = 0

    def moved(batch: object) -> None:
        nonlocal calls
        calls += 1
        raise LogHeadMovedError("another writer, again")

    monkeypatch.setattr(store, "write_batch", moved)
    with pytest.raises(StorageError, match="moved under `3` attempts"):
        log.append(b"never written")
    assert calls == 3 and store.entries == {}


def test_no_checkpoint_is_signed_for_a_head_another_writer_moved(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    signed: list[int] = []
    real = tlog.sign_checkpoint

    def counting(checkpoint: object, *signers: Signer) -> str:
        signed.append(checkpoint.size)  # type: ignore[attr-defined]
        return real(checkpoint, *signers)  # type: ignore[arg-type]

    monkeypatch.setattr(tlog, "sign_checkpoint", counting)
    store = MemoryLogStore()
    a, b = _replica(store, signer, []), _replica(store, signer, [])
    a.append_many([b"a0", b"a1"])
    b.append(b"b0")  # first built on size 0 (refused by the store), then on size 2
    a.append(b"a2")  # built on size 2 (refused), then on size 3
    # one signature per stored checkpoint: the refused attempts signed nothing, and no
    # checkpoint of size 1 (b's stale tree) was ever signed
    assert signed == sorted(store.checkpoints) == [2, 3, 4]


def test_a_replica_is_told_the_entries_it_follows_checked_against_the_signed_tree(
    signer: Signer,
) -> None:
    store = MemoryLogStore()
    told: list[tuple[int, int, object]] = []
    a = _replica(store, signer, [])
    b = TransparencyLog(
        store, origin=ORIGIN, signer=signer, on_foreign=lambda s, e, got: told.append((s, e, got))
    )
    a.append_many([b"x", b"y"])
    assert b.append(b"z").index == 2  # built again on a's head, under the lock
    ((start, end, got),) = told
    assert (start, end) == (0, 2)
    assert [(i, p) for i, _, p in got] == [(0, b"x"), (1, b"y")]  # type: ignore[attr-defined]
    a.append(b"w")
    leaf, _ = store.entries[3]
    store.entries[3] = (leaf, b"edited")  # a payload that is not the one signed
    with pytest.raises(IntegrityError, match="entry `3` does not match its leaf hash"):
        b.refresh()
    assert b.size == 3  # nothing taken


def test_a_replica_far_behind_rebuilds_its_tree_from_the_tiles(
    signer: Signer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryLogStore()
    told: list[tuple[int, int, object]] = []
    a = _replica(store, signer, [])
    b = TransparencyLog(
        store, origin=ORIGIN, signer=signer, on_foreign=lambda s, e, got: told.append((s, e, got))
    )
    monkeypatch.setattr(tlog, "FOLLOW_MAX", 4)
    a.append_many([b"e%d" % i for i in range(10)])
    assert b.refresh() == 10 and b.root() == a.root()
    assert told == [(0, 10, None)]  # not read by the log: the hook reads what it needs


def test_a_tail_past_the_locked_head_is_a_lost_lock_retried_not_an_integrity_alarm(
    signer: Signer,
) -> None:
    """The head lock goes with its session (a database restart, a cut session): another
    writer appends meanwhile, and the batch finds the tail past the head it locked. That
    is retried on the new head (what was appended told to ``on_foreign``), never the
    integrity alarm a tail behind the locked head is."""
    store = MemoryLogStore()
    seen_b: list[tuple[int, int]] = []
    a, b = _replica(store, signer, []), _replica(store, signer, seen_b)
    a.append(b"a0")
    real = store.write_batch
    lost = [True]

    def lock_lost(batch: Batch) -> None:
        if lost.pop() if lost else False:
            a.append(b"a1")  # another writer, once the lock was gone
            batch.on_head(1)  # the head this batch had locked, after `a0`
            raise AssertionError("the rebuild should have refused the stale head")
        real(batch)

    store.write_batch = lock_lost  # type: ignore[method-assign]
    receipt = b.append(b"b0")
    assert receipt.index == 2  # built again on the head that moved to 2
    assert [store.entries[i][1] for i in range(3)] == [b"a0", b"a1", b"b0"]
    assert seen_b == [(0, 2)]  # the other writer's entries, told once
