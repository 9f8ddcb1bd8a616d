"""Group commit: callers share a batch, each returns after its batch committed, errors reach all."""

from __future__ import annotations

import random
import signal
import threading
import time
from typing import Any
from unittest.mock import ANY

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


class _Abort(BaseException):
    """Stands for KeyboardInterrupt/SystemExit without upsetting pytest."""


def _start(target: Any, *args: Any) -> threading.Thread:
    t = threading.Thread(target=target, args=args, daemon=True)  # daemon: a hang cannot block exit
    t.start()
    return t


def _join_all(threads: list[threading.Thread], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    assert not [t for t in threads if t.is_alive()], "a caller never returned: a ticket was lost"


def _submit_in_thread(gc: GroupCommit[list[object]], items: list[object]) -> object:
    """Submit from a fresh thread, so a stalled queue fails the test instead of hanging it."""
    got: list[object] = []
    _join_all([_start(lambda: got.append(gc.submit(Ticket(items))))])
    return got[0]


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

    _join_all([_start(call, i) for i in range(24)])
    assert sorted(acknowledged) == list(range(24))  # type: ignore[type-var]  # ints
    assert sorted(rec.committed) == list(range(24))  # type: ignore[type-var]  # ints
    assert len(rec.batches) < 24  # some callers shared a batch


def test_a_failed_batch_fails_every_caller_in_it_and_nobody_else() -> None:
    rec = Recorder(fail_on="bad")
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, lambda q: 1)
    with pytest.raises(OSError, match="disk full"):
        gc.submit(Ticket(["bad"]))
    assert _submit_in_thread(gc, ["good"]) == ["good"]
    assert rec.committed == ["good"]


def test_take_limits_the_batch() -> None:
    rec = Recorder(delay=0.005)
    gc: GroupCommit[list[object]] = GroupCommit(rec.commit, lambda q: 2)
    _join_all([_start(gc.submit, Ticket([i])) for i in range(10)])
    assert all(len(b) <= 2 for b in rec.batches)
    assert sorted(rec.committed) == list(range(10))  # type: ignore[type-var]  # ints


def test_commit_without_result_is_an_error() -> None:
    gc: GroupCommit[list[object]] = GroupCommit(lambda batch: None, _take_all)
    with pytest.raises(RuntimeError, match="without a result"):
        gc.submit(Ticket([1]))


# ---- many threads, failures, leadership ------------------------------------------------------


def _wait_queued(gc: GroupCommit[Any], n: int) -> None:
    """Wait until ``n`` tickets are queued (white-box: reads the private queue)."""
    deadline = time.monotonic() + 5.0
    while len(gc._queue) < n:
        assert time.monotonic() < deadline, f"expected `{n}` queued tickets"
        time.sleep(0.001)


def _outcomes(
    gc: GroupCommit[Any],
    tickets: dict[str, Ticket[Any]],
    entered: threading.Event,
    gate: threading.Event,
) -> dict[str, object]:
    """Submit each ticket from its own thread, in order, behind the first one's gated commit."""
    got: dict[str, object] = {}

    def call(name: str) -> None:
        try:
            got[name] = gc.submit(tickets[name])
        except BaseException as exc:  # the test inspects _Abort too
            got[name] = exc

    first, *rest = tickets
    threads = [_start(call, first)]
    assert entered.wait(5.0)  # the first caller leads and is inside commit, held by the gate
    for k, name in enumerate(rest, 1):
        threads.append(_start(call, name))
        _wait_queued(gc, k)  # the rest queue in order
    gate.set()
    _join_all(threads)
    return got


def test_no_ticket_is_lost_under_many_threads_with_random_batch_failures() -> None:
    rng = random.Random(9162)
    rng_lock = threading.Lock()
    committed: list[int] = []
    failed: dict[int, BaseException] = {}  # item -> the error its batch raised
    sizes: list[int] = []

    def take(queue: list[Ticket[Any]]) -> int:
        with rng_lock:
            return rng.randint(1, len(queue))

    def commit(batch: list[Ticket[list[object]]]) -> None:
        items = [x for t in batch for x in t.items]
        sizes.append(len(items))
        time.sleep(0.0001)  # lets the other callers queue up, as an fsync would
        with rng_lock:
            fail = rng.random() < 0.3
        if fail:
            exc = OSError(f"disk full at {items}")
            failed.update(dict.fromkeys(items, exc))
            raise exc
        committed.extend(items)
        for t in batch:
            t.result = list(t.items)

    gc: GroupCommit[list[object]] = GroupCommit(commit, take)
    acked: list[int] = []
    errors: dict[int, BaseException] = {}
    start = threading.Barrier(32)

    def call(k: int) -> None:
        start.wait()
        for i in range(k * 200, (k + 1) * 200):
            try:
                assert gc.submit(Ticket([i])) == [i]
                acked.append(i)
            except OSError as exc:
                errors[i] = exc

    _join_all([_start(call, k) for k in range(32)])
    assert len(committed) == len(set(committed))  # each ticket committed once
    assert sorted(acked) == sorted(committed)  # acknowledged exactly the committed ones
    assert errors == failed  # each failed caller got its own batch's error, nobody else did
    assert sorted(acked + list(errors)) == list(range(32 * 200))
    assert failed and committed  # both paths were exercised
    assert max(sizes) > 1  # and callers really did queue behind each other


def test_each_caller_gets_exactly_its_own_result() -> None:
    def commit(batch: list[Ticket[list[object]]]) -> None:
        time.sleep(0.0002)
        for t in batch:
            t.result = [t.tag, *t.items]  # a fresh object per ticket

    gc: GroupCommit[list[object]] = GroupCommit(commit, lambda q: min(len(q), 5))
    mismatches: list[object] = []

    def call(k: int) -> None:
        for i in range(100):
            ticket: Ticket[list[object]] = Ticket([k, i], tag=object())
            result = gc.submit(ticket)
            if result is not ticket.result or result != [ticket.tag, k, i]:
                mismatches.append((k, i, result))

    _join_all([_start(call, k) for k in range(16)])
    assert mismatches == []


def test_commit_never_runs_in_two_threads_at_once() -> None:
    active, most = 0, 0
    counter = threading.Lock()

    def commit(batch: list[Ticket[list[object]]]) -> None:
        nonlocal active, most
        with counter:
            active += 1
            most = max(most, active)
        time.sleep(0.0005)  # a wide window for a second committer to enter
        with counter:
            active -= 1
        for t in batch:
            t.result = list(t.items)

    gc: GroupCommit[list[object]] = GroupCommit(commit, lambda q: min(len(q), 3))

    def call(k: int) -> None:
        for i in range(30):
            gc.submit(Ticket([k, i]))

    _join_all([_start(call, k) for k in range(16)])
    assert most == 1


def test_leadership_passes_to_the_next_queued_caller_after_a_failing_batch() -> None:
    entered, gate = threading.Event(), threading.Event()
    ran_in: dict[str, int] = {}

    def commit(batch: list[Ticket[list[object]]]) -> None:
        (item,) = [x for t in batch for x in t.items]
        ran_in[str(item)] = threading.get_ident()
        if item == "bad":
            entered.set()
            assert gate.wait(5.0)
            raise OSError("disk full")
        batch[0].result = [item, threading.get_ident()]

    gc: GroupCommit[list[object]] = GroupCommit(commit, lambda q: 1)
    tickets: dict[str, Ticket[list[object]]] = {n: Ticket([n]) for n in ("bad", "b", "c")}
    got = _outcomes(gc, tickets, entered, gate)
    assert isinstance(got["bad"], OSError)
    # the queued tickets were committed after the failure, each in its own caller's thread:
    # leadership was handed to the front of the queue, not left to whoever woke first
    assert got["b"] == ["b", ran_in["b"]]
    assert got["c"] == ["c", ran_in["c"]]
    assert len({ran_in["bad"], ran_in["b"], ran_in["c"]}) == 3
    assert _submit_in_thread(gc, ["after"]) == ["after", ANY]  # nobody is left leading


def test_a_base_exception_from_commit_propagates_in_the_leader_and_fails_its_batch() -> None:
    entered, gate = threading.Event(), threading.Event()
    abort = _Abort("interrupted")
    committed: list[object] = []

    def commit(batch: list[Ticket[list[object]]]) -> None:
        items = [x for t in batch for x in t.items]
        if items == ["hold"]:
            entered.set()
            assert gate.wait(5.0)
        if "abort" in items:
            raise abort
        committed.extend(items)
        for t in batch:
            t.result = list(t.items)

    gc: GroupCommit[list[object]] = GroupCommit(commit, lambda q: 2)
    names = ("hold", "abort", "x", "y")  # "hold" leads; "abort" leads [abort, x]; "y" comes after
    tickets: dict[str, Ticket[list[object]]] = {n: Ticket([n]) for n in names}
    got = _outcomes(gc, tickets, entered, gate)
    assert got["hold"] == ["hold"]
    assert got["abort"] is abort  # raised in the leader
    assert got["x"] is abort  # the batch's follower gets it as its error
    assert tickets["x"].error is abort
    assert got["y"] == ["y"]  # the next queued caller took over
    assert _submit_in_thread(gc, ["after"]) == ["after"]
    assert committed == ["hold", "y", "after"]


def test_a_take_error_fails_only_its_leader_and_the_queue_carries_on() -> None:
    entered, gate = threading.Event(), threading.Event()
    committed: list[object] = []

    def take(queue: list[Ticket[Any]]) -> int:
        if queue[0].tag == "boom":
            raise ValueError("bad tag")
        return 1

    def commit(batch: list[Ticket[list[object]]]) -> None:
        if batch[0].items == ["hold"]:
            entered.set()
            assert gate.wait(5.0)
        committed.extend(x for t in batch for x in t.items)
        for t in batch:
            t.result = list(t.items)

    gc: GroupCommit[list[object]] = GroupCommit(commit, take)
    tickets: dict[str, Ticket[list[object]]] = {
        "hold": Ticket(["hold"]),
        "boom": Ticket(["boom"], tag="boom"),  # handed leadership, then its take raises
        "next": Ticket(["next"]),
    }
    got = _outcomes(gc, tickets, entered, gate)
    assert isinstance(got["boom"], ValueError)
    assert got["hold"] == ["hold"]
    assert got["next"] == ["next"]  # the failed leader withdrew its ticket and handed over
    assert committed == ["hold", "next"]


def test_an_interrupted_waiter_withdraws_its_ticket() -> None:
    entered, gate = threading.Event(), threading.Event()
    committed: list[object] = []

    def commit(batch: list[Ticket[list[object]]]) -> None:
        entered.set()
        assert gate.wait(5.0)
        committed.extend(x for t in batch for x in t.items)
        for t in batch:
            t.result = list(t.items)

    def interrupt(signum: int, frame: object) -> None:
        raise _Abort("interrupted while waiting")

    gc: GroupCommit[list[object]] = GroupCommit(commit, _take_all)
    leader = _start(gc.submit, Ticket(["lead"]))
    assert entered.wait(5.0)  # the leader is inside commit, held by the gate
    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        with pytest.raises(_Abort):
            gc.submit(Ticket(["gone"]))  # waits behind the gated leader until the signal
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    gate.set()
    _join_all([leader])
    assert _submit_in_thread(gc, ["after"]) == ["after"]
    assert committed == ["lead", "after"]  # the withdrawn ticket was never committed


def test_a_done_ticket_cannot_be_submitted_again() -> None:
    gc: GroupCommit[list[object]] = GroupCommit(Recorder().commit, _take_all)
    ticket: Ticket[list[object]] = Ticket([1])
    gc.submit(ticket)
    with pytest.raises(ValueError, match="already submitted"):
        gc.submit(ticket)


def test_tickets_queued_while_a_commit_waits_join_it_and_are_woken_with_it() -> None:
    waiting, go = threading.Event(), threading.Event()
    batches: list[list[object]] = []

    def commit(batch: list[Ticket[list[object]]]) -> None:
        if batch[0].items == ["first"]:
            waiting.set()
            go.wait(5)  # a lock another process holds
            assert gc.take_more(batch) == 2  # what queued meanwhile, up to `take`'s limit
        batches.append([x for t in batch for x in t.items])
        for t in batch:
            t.result = list(t.items)

    gc: GroupCommit[list[object]] = GroupCommit(commit, lambda q: min(len(q), 3))
    got: dict[str, object] = {}
    first = _start(lambda: got.update(first=gc.submit(Ticket(["first"]))))
    assert waiting.wait(5)
    later = [_start(lambda k=k: got.update({k: gc.submit(Ticket([k]))})) for k in "abc"]
    while len(gc._queue) < 3:
        time.sleep(0.001)
    go.set()
    _join_all([first, *later])
    assert batches[0][0] == "first" and len(batches[0]) == 3  # two joined the waiting batch
    assert sorted(x for b in batches for x in b) == ["a", "b", "c", "first"]  # each once
    assert got == {k: [k] for k in ("first", "a", "b", "c")}  # every caller got its own result
