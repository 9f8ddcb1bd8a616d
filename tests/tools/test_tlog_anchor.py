"""The log's side of the rollback anchor: the on_checkpoint hook and check_extends (INV-5)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tlog_memory import MemoryLogStore

from sop_verified.errors import IntegrityError, StorageError, VerificationError
from sop_verified.tools.checkpoint import Checkpoint, sign_checkpoint
from sop_verified.tools.merkle import EMPTY_ROOT
from sop_verified.tools.signed_note import Signer, generate
from sop_verified.tools.tlog import TransparencyLog

ORIGIN = "example.test/log"


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer.from_string(generate(ORIGIN)[0])


def _log(
    store: MemoryLogStore, signer: Signer, hook: Callable[[int, str], None] | None = None
) -> TransparencyLog:
    return TransparencyLog(store, origin=ORIGIN, signer=signer, on_checkpoint=hook)


def test_the_hook_gets_each_checkpoint_only_after_its_batch_is_stored(signer: Signer) -> None:
    store = MemoryLogStore()
    seen: list[tuple[int, str, bool]] = []
    log = _log(
        store, signer, lambda size, note: seen.append((size, note, size in store.checkpoints))
    )
    log.append(b"a")
    log.append_many([b"b", b"c"])
    assert [(s, stored) for s, _, stored in seen] == [(1, True), (3, True)]
    assert seen[-1][1] == log.checkpoint_note == store.checkpoints[3]


def test_a_batch_that_fails_to_commit_is_not_announced(signer: Signer) -> None:
    store = MemoryLogStore()
    seen: list[int] = []
    log = _log(store, signer, lambda size, note: seen.append(size))
    log.append(b"a")
    store.fail_writes = True
    with pytest.raises(StorageError):
        log.append(b"b")
    assert seen == [1]  # never ahead of the store


def test_a_failing_hook_keeps_the_batch_and_stops_the_log(signer: Signer) -> None:
    store = MemoryLogStore()

    def hook(size: int, note: str) -> None:
        raise OSError("disk gone")

    log = _log(store, signer, hook)
    receipt = log.append(b"a")  # durable, so acknowledged
    assert (receipt.index, log.size, 0 in store.entries) == (0, 1, True)
    with pytest.raises(StorageError, match="`on_checkpoint` failed: disk gone"):
        log.append(b"b")
    assert log.size == 1


@pytest.fixture
def grown(signer: Signer) -> tuple[TransparencyLog, list[str]]:
    store = MemoryLogStore()
    notes: list[str] = []
    log = _log(store, signer, lambda size, note: notes.append(note))
    for n in (1, 2, 5, 17, 3):
        log.append_many([b"e%d" % len(notes) + b"-%d" % i for i in range(n)])
    return log, notes


def test_the_log_extends_every_checkpoint_it_signed(
    grown: tuple[TransparencyLog, list[str]],
) -> None:
    log, notes = grown
    for note in notes:
        assert log.check_extends(note).size <= log.size


def test_a_log_smaller_than_the_kept_checkpoint_is_refused(
    grown: tuple[TransparencyLog, list[str]], signer: Signer
) -> None:
    _, notes = grown
    short = MemoryLogStore()
    cut = _log(short, signer)
    cut.append_many([b"e0-0"])
    with pytest.raises(
        IntegrityError, match=r"smaller than the kept checkpoint: expected at least"
    ):
        cut.check_extends(notes[-1])


def test_a_fork_of_the_same_size_is_refused(
    grown: tuple[TransparencyLog, list[str]], signer: Signer
) -> None:
    log, _ = grown
    fork = sign_checkpoint(Checkpoint(ORIGIN, log.size, bytes(32)), signer)
    with pytest.raises(IntegrityError, match=r"not the kept checkpoint \(a fork\)"):
        log.check_extends(fork)


def test_a_fork_of_a_smaller_size_is_refused(
    grown: tuple[TransparencyLog, list[str]], signer: Signer
) -> None:
    log, _ = grown
    fork = sign_checkpoint(Checkpoint(ORIGIN, 3, bytes(32)), signer)
    with pytest.raises(IntegrityError, match="not consistent with the kept checkpoint"):
        log.check_extends(fork)


def test_an_empty_kept_checkpoint_needs_the_empty_root(
    grown: tuple[TransparencyLog, list[str]], signer: Signer
) -> None:
    log, _ = grown
    assert log.check_extends(sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), signer)).size == 0
    with pytest.raises(IntegrityError, match="a fork"):
        log.check_extends(sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), signer))


def test_a_kept_checkpoint_under_another_key_is_refused(
    grown: tuple[TransparencyLog, list[str]],
) -> None:
    log, _ = grown
    other = Signer.from_string(generate(ORIGIN)[0])
    forged = sign_checkpoint(Checkpoint(ORIGIN, log.size, log.root()), other)
    with pytest.raises(VerificationError):
        log.check_extends(forged)
