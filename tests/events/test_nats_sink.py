"""The NATS sink alone, over a growing list of events and a private broker: exactly once, in order.

Each test reads the stream back through JetStream (its state and a consumer,
``nats_broker.stream_report``), never through the sink's own counters alone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig
from nats_broker import Broker, stream_report
from raw_events import ListEvents

from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.events.nats_cursor import read_cursor, write_cursor
from sop_verified.events.nats_pipeline import publish
from sop_verified.events.nats_sink import NatsSink

ORIGIN = "test.example/log"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "nats") as b:
        yield b


def config(url: str, **kw: object) -> NatsSinkConfig:
    return NatsSinkConfig.model_validate({"servers": (url,), "ack_timeout_seconds": 1, **kw})


def wait_for(what: Callable[[], bool], timeout: float = 20, why: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, f"timed out waiting: {why}"
        time.sleep(0.02)


def caught_up(sink: NatsSink, size: int) -> Callable[[], bool]:
    return lambda: sink.stats().acked == size


def test_every_event_is_in_the_stream_once_in_order_with_its_id(
    broker: Broker, tmp_path: Path
) -> None:
    source = ListEvents(ORIGIN, 300)
    sink = NatsSink(source, config(broker.url), tmp_path / "cursor")
    sink.start()
    try:
        wait_for(caught_up(sink, 300), why="the first 300 events")
        source.grow(700)  # the sink follows the log by polling alone (nothing wakes it)
        wait_for(caught_up(sink, 1000), why="the next 700 events")
    finally:
        sink.close()
    report = stream_report(broker.url)
    report.check_exactly_once(ORIGIN, 1000)
    assert {subject for _, _, subject in report.received} == {"sop.events.sop.test.v1"}
    stats = sink.stats()
    assert (stats.published, stats.duplicates, stats.lag) == (1000, 0, 0)
    assert read_cursor(tmp_path / "cursor", "SOP_EVENTS") == 1000  # written when it closed


def test_a_restarted_sink_resumes_where_the_stream_is_not_where_its_cursor_says(
    broker: Broker, tmp_path: Path
) -> None:
    source = ListEvents(ORIGIN, 400)
    first = NatsSink(source, config(broker.url), tmp_path / "cursor")
    first.start()
    wait_for(caught_up(first, 400))
    first.close()
    write_cursor(tmp_path / "cursor", "SOP_EVENTS", 100)  # a cursor 300 events stale
    source.grow(100)
    second = NatsSink(source, config(broker.url), tmp_path / "cursor")
    assert second.stats().lag == 400  # before it reaches the broker: log size minus cursor
    second.start()
    try:
        wait_for(caught_up(second, 500))
    finally:
        second.close()
    # the stream said where it was: nothing resent (no duplicate ack) and nothing missing
    assert (second.stats().published, second.stats().duplicates) == (100, 0)
    stream_report(broker.url).check_exactly_once(ORIGIN, 500)


def test_exactly_once_does_not_depend_on_the_duplicate_window(
    broker: Broker, tmp_path: Path
) -> None:
    asyncio.run(_make_stream(broker.url, duplicate_window=1.0))  # an operator's 1 s window
    source = ListEvents(ORIGIN, 200)
    cfg = config(broker.url, create_stream=False)
    first = NatsSink(source, cfg, tmp_path / "cursor")
    first.start()
    wait_for(caught_up(first, 200))
    first.close()
    (tmp_path / "cursor").unlink()  # the cursor is lost, and the broker forgot the ids
    time.sleep(1.5)
    second = NatsSink(source, cfg, tmp_path / "cursor")
    second.start()
    try:
        source.grow(50)
        wait_for(caught_up(second, 250))
    finally:
        second.close()
    assert (second.stats().published, second.stats().duplicates) == (50, 0)
    stream_report(broker.url).check_exactly_once(ORIGIN, 250)


async def _make_stream(url: str, *, duplicate_window: float) -> None:
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name="SOP_EVENTS", subjects=["sop.events.>"], duplicate_window=duplicate_window
        )
    )
    await nc.close()


def test_a_publish_lost_in_flight_leaves_no_gap_behind_later_ones(
    broker: Broker, tmp_path: Path
) -> None:
    lost: list[str] = []

    async def lose_event_50_once(
        nc: Client, subject: str, reply: str, body: bytes, headers: dict[str, str]
    ) -> None:
        if headers["Nats-Msg-Id"] == f"{ORIGIN}/50" and not lost:
            lost.append(subject)  # never sent; its acknowledgement never comes
            return
        await publish(nc, subject, reply, body, headers)

    source = ListEvents(ORIGIN, 200)
    sink = NatsSink(source, config(broker.url), tmp_path / "cursor", publish=lose_event_50_once)
    sink.start()
    try:
        wait_for(caught_up(sink, 200))
    finally:
        sink.close()
    assert lost  # 51..: sent behind the lost one, refused by the broker, sent again in order
    stream_report(broker.url).check_exactly_once(ORIGIN, 200)


def test_two_sinks_on_one_log_store_each_event_once(broker: Broker, tmp_path: Path) -> None:
    """Two replicas of a shared log each run a sink into the same stream."""
    source = ListEvents(ORIGIN, 0)
    sinks = [NatsSink(source, config(broker.url), tmp_path / f"cursor{i}") for i in range(2)]
    for sink in sinks:
        sink.start()
    try:
        for _ in range(20):
            source.grow(50)
            time.sleep(0.01)
        for sink in sinks:
            wait_for(caught_up(sink, 1000))
    finally:
        for sink in sinks:
            sink.close()
    stream_report(broker.url).check_exactly_once(ORIGIN, 1000)


def test_a_stream_of_another_log_is_refused(broker: Broker, tmp_path: Path) -> None:
    other = NatsSink(ListEvents("other.example/log", 10), config(broker.url), tmp_path / "c1")
    other.start()
    wait_for(caught_up(other, 10))
    other.close()
    sink = NatsSink(ListEvents(ORIGIN, 10), config(broker.url), tmp_path / "c2")
    sink.start()
    try:
        wait_for(lambda: sink.stats().last_error is not None, why="the refusal")
    finally:
        sink.close()
    stats = sink.stats()
    assert "other.example/log/9" in str(stats.last_error)
    assert stats.published == 0 and not stats.connected
    report = stream_report(broker.url)
    assert report.messages == 10  # nothing of this log went into the other log's stream


def test_cursor_writes_are_batched_not_one_per_event(
    broker: Broker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sop_verified.events.nats_sink as nats_sink

    writes: list[int] = []
    real = nats_sink.write_cursor

    def counted(path: Path, stream: str, acked: int) -> None:
        writes.append(acked)
        real(path, stream, acked)

    monkeypatch.setattr(nats_sink, "write_cursor", counted)
    source = ListEvents(ORIGIN, 0)
    sink = NatsSink(source, config(broker.url, cursor_interval_ms=200), tmp_path / "cursor")
    sink.start()
    try:
        started = time.monotonic()
        while time.monotonic() - started < 1.0:  # 1 s of events
            source.grow(20)
            time.sleep(0.005)
        wait_for(caught_up(sink, source.size()))
        time.sleep(0.3)  # idle: the last count is written within one interval
        assert writes[-1] == source.size()
    finally:
        sink.close()
    assert source.size() > 1000
    assert len(writes) <= 2 + (time.monotonic() - started) / 0.2, writes
    assert read_cursor(tmp_path / "cursor", "SOP_EVENTS") == source.size()


def test_a_purged_stream_goes_on_from_the_cursor(broker: Broker, tmp_path: Path) -> None:
    """The stream cannot say where it is once purged: the durable cursor does."""
    source = ListEvents(ORIGIN, 100)
    first = NatsSink(source, config(broker.url), tmp_path / "cursor")
    first.start()
    wait_for(caught_up(first, 100))
    first.close()
    assert read_cursor(tmp_path / "cursor", "SOP_EVENTS") == 100
    asyncio.run(_purge(broker.url))
    source.grow(50)
    second = NatsSink(source, config(broker.url), tmp_path / "cursor")
    second.start()
    try:
        wait_for(caught_up(second, 150))
    finally:
        second.close()
    report = stream_report(broker.url)
    assert [msg_id for _, msg_id, _ in report.received] == [
        f"{ORIGIN}/{i}" for i in range(100, 150)
    ]
    assert [seq for seq, _, _ in report.received] == list(range(101, 151))  # no re-send of 0..99


async def _purge(url: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().purge_stream("SOP_EVENTS")
    await nc.close()
