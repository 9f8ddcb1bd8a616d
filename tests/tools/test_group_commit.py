"""Group commit: callers share a batch, each returns after its batch committed, errors reach all."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from sop_verified.tools.group_commit import GroupCommit, Ticket


class Recorder:
    def __init__(self, fail_on: object = None, delay: float = 0.0) -> None:
        self.batches: list[list[object]] = []
        self.committed: list[object] = []
        self.fail_on = fail_on
        self.delay = delay

    def commit(self, batch: list[Ticket[list[object]]]) -> None:
        items = [x for t in batch for x in t.items]
        time.sleep(self.delay)
        if self.fail_on in items:
            raise OSError("disk full")
        self.batches.append(items)
        self.committed += items
        for t in batch:
            t.result = list(t.items)


def _take_all(queue: list[Ticket[Any]]) -> int:
    return len(queue)


def test_single_caller_gets_its_result() -> None:
    rec = Recorder()
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, _take_all)
    assert gc.submit(Ticket([1, 2])) == [1, 2]
    assert rec.batches == [[1, 2]]


def test_concurrent_callers_are_batched_and_each_acknowledged_after_commit() -> None:
    rec = Recorder(delay=0.01)
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, _take_all)
    acknowledged: list[object] = []
    lock = threading.Lock()

    def call(i: int) -> None:
        result = gc.submit(Ticket([i]))
        with lock:
            assert result == [i]
            assert i in rec.committed  # acknowledged only once committed
            acknowledged.append(i)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(acknowledged) == list(range(24))
    assert sorted(rec.committed) == list(range(24))
    assert len(rec.batches) < 24  # some callers shared a batch


def test_a_failed_batch_fails_every_caller_in_it_and_nobody_else() -> None:
    rec = Recorder(fail_on="bad")
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, lambda q: 1)
    with pytest.raises(OSError, match="disk full"):
        gc.submit(Ticket(["bad"]))
    assert gc.submit(Ticket(["good"])) == ["good"]
    assert rec.committed == ["good"]


def test_take_limits_the_batch() -> None:
    rec = Recorder(delay=0.005)
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, lambda q: 2)
    threads = [threading.Thread(target=gc.submit, args=(Ticket([i]),)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(len(b) <= 2 for b in rec.batches)
    assert sorted(rec.committed) == list(range(10))  # type: ignore[type-var]  # ints


def test_commit_without_result_is_an_error() -> None:
    gc: GroupCommit[list[object]] = GroupCommit(lambda batch: None, _take_all)
    with pytest.raises(RuntimeError, match="without a result"):
        gc.submit(Ticket([1]))
