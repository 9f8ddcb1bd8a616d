"""SOP booted with ``[events.nats]``: each log entry reaches the stream once, broker up or down.

The broker is stopped and restarted while decisions run (issue 16, item 3):
decisions go on unaffected and SOP stays READY, the outage shows in ``status``
and ``/metrics`` with one warning line (never the password), and once the
broker is back every log index is in the stream exactly once, in order, read
back through JetStream.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import statistics
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from typer.testing import CliRunner

with warnings.catch_warnings():  # starlette asks for httpx2; httpx is what is installed
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient
from nats_broker import Broker, free_port, stream_report
from nats_sop import Decider, checkpoint_sizes, decide, nats_data_dir
from prometheus_client import CollectorRegistry, generate_latest
from test_nats_sink import wait_for

from sop_verified import cli
from sop_verified.core.health import Health
from sop_verified.events.nats_sink import NatsSink
from sop_verified.nexus.nats_process import NatsSinkProcess
from sop_verified.nexus.sop import SOP
from sop_verified.server.decisions import DecisionQueue
from sop_verified.server.nats_metrics import NatsSinkCollector
from sop_verified.server.public import public_routes
from sop_verified.server.state import ServerState

SINK_LOGGER = "sop_verified.events.nats_sink"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with Broker(tmp_path / "nats") as b:
        yield b


def _sink(sop: SOP) -> NatsSink:
    sink = sop.nats_sink
    assert sink is not None
    return sink


def _caught_up(sop: SOP) -> bool:
    s = _sink(sop).stats()
    return s.lag == 0 and s.acked == sop.events.size


def _metrics(sop: SOP) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(NatsSinkCollector(sop))
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name.removesuffix("_total")] = float(value)
    return out


def test_every_log_entry_of_a_booted_sop_reaches_the_stream_once(
    broker: Broker, tmp_path: Path
) -> None:
    data = nats_data_dir(tmp_path / "d", broker.url)
    with SOP.boot(data) as sop:
        assert sop.health is Health.READY
        for i in range(100):
            assert decide(sop, "once", i).log_index is not None
        wait_for(lambda: _caught_up(sop), why="the sink to catch up")
        status = sop.status()["events_nats"]
        assert (status["connected"], status["lag"], status["acked"]) == (True, 0, sop.events.size)
        assert status["servers"] == [broker.url]
        size, origin, events = sop.log.size, sop.log.origin, sop.events.size
        metrics = _metrics(sop)
    assert metrics["sop_events_nats_lag"] == 0
    assert metrics["sop_events_nats_acked"] == events
    assert metrics["sop_events_nats_connected"] == 1
    stream_report(broker.url).check_exactly_once(origin, size, checkpoint_sizes(data))


def test_broker_stopped_and_restarted_mid_load(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    data = nats_data_dir(tmp_path / "d", broker.url, max_backoff_seconds=1)
    with SOP.boot(data) as sop:
        with Decider(sop) as before:
            wait_for(lambda: _sink(sop).stats().acked > 200, why="events before the outage")
            broker.stop()
            stopped_at = sop.log.size
            with Decider(sop) as during:  # the broker is down: decisions go on
                wait_for(lambda: sop.log.size > stopped_at + 300, why="decisions in the outage")
                wait_for(lambda: not _sink(sop).stats().connected, why="the outage to show")
                assert sop.health is Health.READY  # a projection down is not SOP down
                status = sop.status()["events_nats"]
                assert status["outages"] == 1 and status["lag"] > 0, status
                assert _metrics(sop)["sop_events_nats_connected"] == 0
                broker.start()  # the same port and store
                time.sleep(0.5)
        assert before.unlogged == during.unlogged == 0
        wait_for(lambda: _caught_up(sop), why="the sink to catch up after the outage")
        size, origin = sop.log.size, sop.log.origin
        stats = _sink(sop).stats()
    warnings = [r for r in caplog.records if r.name == SINK_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # one line per outage
    assert stats.outages == 1 and stats.connected
    # the decisions did not wait for the broker: their median latency stayed a decision's
    assert statistics.median(during.latencies) < 0.05
    stream_report(broker.url).check_exactly_once(origin, size, checkpoint_sizes(data))


def test_a_broker_that_is_down_leaves_sop_ready_and_its_password_unsaid(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-Pa55"
    url = f"nats://sop:{secret}@127.0.0.1:{free_port()}"  # nothing listens there
    data = nats_data_dir(tmp_path / "d", url, max_backoff_seconds=1)
    with SOP.boot(data) as sop:
        assert sop.health is Health.READY
        started = time.perf_counter()
        for i in range(50):
            assert decide(sop, "down", i).log_index is not None
        assert time.perf_counter() - started < 5
        wait_for(lambda: _sink(sop).stats().outages == 1, why="the outage to be seen")
        time.sleep(2.5)  # a few retries with backoff: still one warning
        status = sop.status()
        assert status["health"] == "READY"
        shown = json.dumps(status)
        assert status["events_nats"]["lag"] == sop.events.size  # the log holds every event
        assert status["events_nats"]["servers"] == [url.replace(secret, "***")]
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert secret not in logged and secret not in shown
    warnings = [r for r in caplog.records if r.name == SINK_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "sop:***@127.0.0.1" in warnings[0].getMessage()


def test_without_the_table_there_is_no_sink(tmp_path: Path) -> None:
    SOP.init(tmp_path / "d")
    with SOP.boot(tmp_path / "d") as sop:
        assert sop.nats_sink is None
        assert "events_nats" not in sop.status()
        assert _metrics(sop) == {}


def test_a_read_only_boot_starts_no_sink(broker: Broker, tmp_path: Path) -> None:
    """A dry run changes no byte of the data directory: no cursor, nothing published."""
    data = nats_data_dir(tmp_path / "d", broker.url)
    SOP.boot(data).close()  # a first boot makes the database
    with SOP.boot(data, read_only=True) as sop:
        assert sop.nats_sink is None
        assert sop.services.events is not None  # the in-process bus is there all the same


@pytest.mark.slow
def test_broker_stopped_and_killed_again_and_again_under_load(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Five outages (three SIGTERM, two SIGKILL), 1 to 3 s each, while eight threads decide."""
    caplog.set_level(logging.INFO)
    data = nats_data_dir(tmp_path / "d", broker.url, max_backoff_seconds=1)
    outages = [("term", 1.0), ("kill", 2.0), ("term", 3.0), ("kill", 1.5), ("term", 1.0)]
    with SOP.boot(data) as sop, Decider(sop, threads=8) as load:
        for k, (how, seconds) in enumerate(outages):
            wait_for(lambda: _sink(sop).stats().connected, why=f"the broker back ({k})")
            time.sleep(1.0)
            if how == "kill":
                assert broker.process is not None
                broker.process.kill()
                broker.process.wait()
            else:
                broker.stop()
            time.sleep(seconds)
            assert sop.health is Health.READY
            broker.start()
    with SOP.boot(data) as sop:  # the log as the load left it
        wait_for(lambda: _caught_up(sop), timeout=60, why="the sink to catch up")
        size, origin = sop.log.size, sop.log.origin
    assert load.unlogged == 0
    warnings = [r for r in caplog.records if r.name == SINK_LOGGER and r.levelno >= logging.WARNING]
    assert len(warnings) == len(outages), [r.getMessage() for r in warnings]
    stream_report(broker.url).check_exactly_once(origin, size, checkpoint_sizes(data))
    print(f"exactly once over {size} events across {len(outages)} broker outages")


def test_sop_status_reads_the_sinks_lag_from_its_cursor(broker: Broker, tmp_path: Path) -> None:
    """`sop status` is read-only: it shows what the durable cursor says, and contacts nobody."""
    url = broker.url.replace("nats://", "nats://sop:hunter2@")  # a broker without users takes it
    data = nats_data_dir(tmp_path / "d", url)
    with SOP.boot(data) as sop:
        for i in range(20):
            decide(sop, "status", i)
        wait_for(lambda: _caught_up(sop), why="the sink to catch up")
        size = sop.events.size  # the cursor is written as the sink stops
    shown = CliRunner().invoke(cli.app, ["status", "--data-dir", str(data)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output  # READY: a broker down is not SOP down
    assert "NATS stream SOP_EVENTS at nats://sop:***@127.0.0.1:" in shown.output
    assert "broker not contacted" in shown.output and "hunter2" not in shown.output
    as_json = CliRunner().invoke(cli.app, ["status", "--data-dir", str(data), "--json"])
    status = json.loads(as_json.output)["events_nats"]
    assert (status["acked"], status["lag"], status["events"]) == (size, 0, size)
    assert status["connected"] is None  # not asked


def test_the_read_plane_serves_the_lag_and_stays_ready_while_the_broker_is_down(
    tmp_path: Path,
) -> None:

    data = nats_data_dir(tmp_path / "d", f"nats://127.0.0.1:{free_port()}")  # nobody there
    with SOP.boot(data) as sop:
        queue = DecisionQueue(sop.submit_batch, threads=1)
        try:
            app = Starlette(routes=public_routes(ServerState(sop, queue)))
            with TestClient(app) as client:
                wait_for(lambda: _sink(sop).stats().outages == 1, why="the outage")
                assert client.get("/health/ready").status_code == 200
                metrics = client.get("/metrics").text
                events = sop.events.size
        finally:
            queue.close()
    assert f"sop_events_nats_lag {float(events)}" in metrics
    assert "sop_events_nats_connected 0.0" in metrics
    assert "sop_events_nats_outages_total 1.0" in metrics


def _parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no parent in /proc/{pid}/status")


def test_the_sink_runs_in_a_process_of_its_own_and_is_started_again_when_it_dies(
    broker: Broker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """ADR 0019: projecting and publishing take no CPU under SOP's interpreter lock."""
    caplog.set_level(logging.INFO)
    data = nats_data_dir(tmp_path / "d", broker.url, max_backoff_seconds=1)
    with SOP.boot(data) as sop:
        sink = _sink(sop)
        assert isinstance(sink, NatsSinkProcess)
        wait_for(lambda: sink.pid is not None, why="the sink's process to start")
        first = sink.pid
        assert first is not None and _parent_of(first) == os.getpid()
        assert "sop-events-nats" not in {t.name for t in threading.enumerate()}
        with Decider(sop) as load:
            wait_for(lambda: sink.stats().acked > 100, why="events before the kill")
            os.kill(first, signal.SIGKILL)
            wait_for(lambda: sink.restarts == 1, why="the sink's process to be seen dead")
            wait_for(lambda: sink.pid not in (None, first), why="a new sink process")
            assert sop.health is Health.READY  # the stream waits; decisions do not
            time.sleep(0.3)
        assert load.unlogged == 0
        wait_for(lambda: _caught_up(sop), why="the new process to catch up")
        assert sop.status()["events_nats"]["restarts"] == 1  # an operator sees it
        assert _metrics(sop)["sop_events_nats_process_restarts"] == 1
        second = sink.pid
        size, origin = sop.log.size, sop.log.origin
    assert second is not None
    assert not Path(f"/proc/{second}").exists()  # closed with SOP, and waited for
    exited = [r.getMessage() for r in caplog.records if "its process exited" in r.getMessage()]
    assert len(exited) == 1, exited
    stream_report(broker.url).check_exactly_once(origin, size, checkpoint_sizes(data))
