"""In-process subscribers: bounded, fed after each durable batch, never slowing a decision."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from pg_server import DSN, scratch_schema

from sop_verified.core.health import Health
from sop_verified.core.request import Request
from sop_verified.events.model import Event, EventSource
from sop_verified.events.subscribers import Subscription
from sop_verified.nexus.config import init_replica
from sop_verified.nexus.sop import SOP

NOW = 1_800_000_000


@pytest.fixture
def sop(tmp_path: Path) -> Iterator[SOP]:
    SOP.init(tmp_path / "data")
    booted = SOP.boot(tmp_path / "data", now=lambda: NOW)
    assert booted.health is Health.READY, booted.boot_report
    yield booted
    booted.close()


def _decide(sop: SOP, n: int, *, batch: int = 50, tag: str = "r") -> None:
    """``n`` decisions (DENY: no capability), logged in durable batches of ``batch``."""
    for at in range(0, n, batch):
        requests = [
            Request(
                request_id=f"{tag}-{i}",
                principal="drac",
                action="artifact.persist",
                resource=f"artifacts/drac/{i}.bin",
                context={"size_bytes": 5},
            )
            for i in range(at, min(n, at + batch))
        ]
        assert all(d.log_index is not None for d in sop.submit_batch(requests))


class _Stalled:
    """An event source whose reads wait until released (a subscriber stuck in a slow read)."""

    def __init__(self, inner: EventSource) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.entered = threading.Event()

    def size(self) -> int:
        return self.inner.size()

    def position_of(self, event_id: str) -> int | None:
        return self.inner.position_of(event_id)

    def entry_position(self, index: int) -> int:
        return self.inner.entry_position(index)

    def read(self, start: int, end: int) -> list[Event]:
        self.entered.set()
        assert self.release.wait(60)
        return self.inner.read(start, end)


def test_a_subscriber_that_never_reads_does_not_block_1000_decisions(sop: SOP) -> None:
    idle = sop.events.subscribe(start=0, max_queue=4)  # never read
    stalled = _Stalled(sop.events.source)
    sop.events._source = stalled  # the next subscriber's read hangs inside the log read
    stuck = sop.events.subscribe(start=0, max_queue=4)
    got: list[int] = []
    reader = threading.Thread(target=lambda: got.extend(e.position for e in stuck), daemon=True)
    reader.start()
    assert stalled.entered.wait(10)
    before = sop.log.size
    done = threading.Event()

    def decide() -> None:
        _decide(sop, 1000, batch=10)  # 100 durable batches, each notifying the hub
        done.set()

    threading.Thread(target=decide, daemon=True).start()
    assert done.wait(120), "decisions waited on a subscriber"
    assert sop.log.size == before + 1000
    assert idle.lag >= 1000 and idle.next_index == 0  # nothing was queued for it meanwhile
    stalled.release.set()
    deadline = time.monotonic() + 60
    while len(got) < sop.events.size and time.monotonic() < deadline:
        time.sleep(0.05)
    stuck.close()
    assert got == list(range(sop.events.size))  # every entry's and checkpoint's event


def _next_position(sub: Subscription) -> int:
    event = sub.poll(1)
    assert event is not None
    return event.position


def test_a_subscriber_that_falls_behind_gets_every_event_exactly_once_in_order(sop: SOP) -> None:
    sub = sop.events.subscribe(start=0, max_queue=8)
    seen = [_next_position(sub) for _ in range(3)]
    _decide(sop, 300, batch=25)
    seen += [_next_position(sub) for _ in range(5)]
    _decide(sop, 200, batch=40, tag="s")
    assert sub.lag > 8  # more than its queue holds: it reads on from the log
    while (event := sub.poll(0.2)) is not None:
        seen.append(event.position)
    assert sub.catch_ups > 0
    assert seen == list(range(sop.events.size))
    assert not sub.behind and sub.lag == 0


def test_a_type_filter_delivers_only_events_of_those_types(sop: SOP) -> None:
    _decide(sop, 20)
    decisions = sop.events.subscribe(["sop.decision.v1"], start=0, max_queue=5)
    boots = sop.events.subscribe(["sop.boot.v1", "sop.attestation.v1"], start=0)
    got = list(iter(lambda: decisions.poll(0.2), None))
    assert [e.type for e in got] == ["sop.decision.v1"] * 20
    assert [orjson.loads(e.body)["data"]["request"]["request_id"] for e in got] == [
        f"r-{i}" for i in range(20)
    ]
    others = {e.type for e in iter(lambda: boots.poll(0.2), None)}
    assert others == {"sop.boot.v1", "sop.attestation.v1"}


def test_an_unknown_event_type_is_refused(sop: SOP) -> None:
    with pytest.raises(ValueError, match=r"unknown event type `sop\.decisions\.v1`"):
        sop.events.subscribe(["sop.decisions.v1"])


def test_a_subscription_starts_from_now_by_default_and_waits_for_the_next_entry(sop: SOP) -> None:
    sub = sop.events.subscribe()
    assert sub.next_index == sop.events.size and sub.poll(0.05) is None
    _decide(sop, 1)
    event = sub.poll(5)
    assert event is not None and orjson.loads(event.body)["sopindex"] == str(sop.log.size - 1)
    assert event.type == "sop.decision.v1"


def test_iteration_ends_when_sop_closes(tmp_path: Path) -> None:
    SOP.init(tmp_path / "data")
    sop = SOP.boot(tmp_path / "data", now=lambda: NOW)
    sub = sop.events.subscribe()
    got: list[Event] = []
    reader = threading.Thread(target=lambda: got.extend(sub), daemon=True)
    reader.start()
    _decide(sop, 3)
    sop.close()
    reader.join(10)
    assert not reader.is_alive()
    decisions = [e.type for e in got if e.type != "sop.checkpoint.v1"]  # and their checkpoints
    assert decisions == ["sop.decision.v1"] * len(decisions)


def test_closing_a_subscription_wakes_its_waiting_poll(sop: SOP) -> None:
    sub = sop.events.subscribe()
    result: list[Event | None] = []
    waiter = threading.Thread(target=lambda: result.append(sub.poll(None)), daemon=True)
    waiter.start()
    time.sleep(0.1)
    sub.close()
    waiter.join(5)
    assert not waiter.is_alive() and result == [None]


def test_a_replica_s_subscriber_gets_the_other_replica_s_entries_in_order(tmp_path: Path) -> None:
    with scratch_schema() as schema:
        one, two = tmp_path / "one", tmp_path / "two"
        SOP.init(one, dsn=DSN, schema=schema)
        a = SOP.boot(one, now=lambda: NOW)
        try:
            init_replica(two, one)
            b = SOP.boot(two, now=lambda: NOW)
            try:
                assert a.health is b.health is Health.READY
                sub = b.events.subscribe(["sop.decision.v1"], max_queue=4)
                woken: list[Event | None] = []
                waiter = threading.Thread(target=lambda: woken.append(sub.poll(8)), daemon=True)
                waiter.start()  # waiting before A's entries exist; nothing notifies B of them
                _decide(a, 6, tag="on-a")
                time.sleep(0.2)
                assert not woken  # B's log has not read them yet
                assert b.log.refresh() == a.log.size  # B takes A's tail (as its read plane does)
                waiter.join(4)  # seen within RECHECK_SECONDS, though no batch of B's notified
                assert not waiter.is_alive() and woken and woken[0] is not None
                got = [woken[0], *iter(lambda: sub.poll(0.5), None)]
                _decide(b, 2, tag="on-b")  # then B's own batch after them
                got += list(iter(lambda: sub.poll(1), None))
            finally:
                b.close()
        finally:
            a.close()
    ids = [orjson.loads(e.body)["data"]["request"]["request_id"] for e in got]
    assert ids == [f"on-a-{i}" for i in range(6)] + ["on-b-0", "on-b-1"]
    assert [e.position for e in got] == sorted(e.position for e in got)
