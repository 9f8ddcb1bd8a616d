"""The NATS sink's cost (issue 16, item 7): ``bench_e2e.py --nats``. Not a test.

Two SOPs in one process, booted alike from fresh directories, one with
``[events.nats]`` (its sink publishing every log entry to a private
``nats-server -js`` on an ephemeral port) and one without. Rounds alternate
which goes first; each round runs the bench's closed loop (32 submitter
threads, ``sop.persist`` of 4 KiB, every operation ALLOW with its effect
written) on one SOP, then on the other. Reported:

- throughput off and on per round, their medians, and the drop in % within
  each round (the "on" run against the "off" run beside it, so that the
  machine's drift from round to round cancels), with its median over the
  rounds (target: at most 10 %);
- the sink's lag under that load: per operation, the time from
  ``sop.persist`` returning (the decision is durable) to the broker's
  acknowledgement of the decision's event (p50, p99, max over every
  operation of every "on" round), and the events behind (entries' and
  checkpoints') sampled every 10 ms;
- how long the sink took to drain after each "on" round;
- what pipelining gives: the sink alone publishing the first entries of a
  log with 1, 16 and 256 publishes in flight.

``events="log"`` (the default, ``--nats-events log``) is SOP as it ships: its
sink in a process of its own (``sop_verified/nexus/nats_process.py``) publishing
the Ops_Event_Bus's projection (each range of entries proved in the signed log,
then made CloudEvents). ``events="raw"`` publishes the tests' minimal events
instead (``tests/events/raw_events.py``: the entry's type and index, read in one
query a range) from a thread of SOP's process, the sink's in-process cost alone.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from e2e_scenario import RunResult, Scenario, run_clients

from sop_verified.core.request import Decision
from sop_verified.events.boundary import TelemetryBoundary
from sop_verified.events.model import Event, EventSource
from sop_verified.events.nats_config import NatsSinkConfig
from sop_verified.events.nats_sink import NatsSink
from sop_verified.events.source import LogEventSource
from sop_verified.storage.ports import StorageBackend
from sop_verified.tools.tlog import TransparencyLog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "events"))
from nats_broker import Broker  # the tests' private broker
from raw_events import RawLogEvents  # the tests' minimal events: the sink's own cost

__all__ = ["render_nats", "run_nats"]

EVENTS = ("log", "raw")
"""What the sink publishes: SOP's projection of the log, or the tests' minimal events."""

SAMPLE_SECONDS = 0.01
PIPELINE_EVENTS = 4000
PIPELINE_IN_FLIGHT = (1, 16, 256)


class _Recorder:
    """When each decision was answered, and when the broker acknowledged its event."""

    def __init__(self, sink: NatsSink) -> None:
        self.answered: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        original = sink.acked
        last = sink.cursor

        def acked(count: int, *, stored: int, duplicates: int) -> None:
            nonlocal last
            now = time.perf_counter()
            for index in range(last, count):
                self.acked[index] = now
            last = count
            original(count, stored=stored, duplicates=duplicates)

        sink.acked = acked  # type: ignore[method-assign]  # the session calls it on the instance

    def lags_ms(self, source: EventSource) -> list[float]:
        """Per decision: its answer to the ack of its event (at the entry's position)."""
        out = []
        for index, answered in self.answered.items():
            acked = self.acked.get(source.entry_position(index))
            if acked is not None:
                out.append(max(0.0, acked - answered) * 1e3)
        return out


def _sampler(scenario: Scenario, sink: NatsSink, behind: list[int]) -> threading.Event:
    """Every 10 ms: how far behind ``scenario``'s log the sink is (run in both modes alike)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            behind.append(max(0, scenario.sop.events.size - sink.stats().acked))
            time.sleep(SAMPLE_SECONDS)

    threading.Thread(target=loop, daemon=True).start()
    return stop


def _drain(scenario: Scenario, sink: NatsSink, timeout: float = 120) -> float:
    started = time.perf_counter()
    while sink.stats().acked < scenario.sop.events.size:
        if time.perf_counter() - started > timeout:
            raise RuntimeError(f"the sink did not catch up in {timeout:g} s: {sink.stats()}")
        time.sleep(0.005)
    return time.perf_counter() - started


def _round(
    s: Scenario, label: str, threads: int, per_thread: int, answered: dict[int, float]
) -> RunResult:
    def op(client: int, i: int) -> Decision:
        decision = s.persist(label, client, i)
        if decision.log_index is not None:  # in both modes: the same work around each call
            answered[decision.log_index] = time.perf_counter()
        return decision

    return run_clients(label, threads, per_thread, op, effect=True)


def _source(events: str, log: TransparencyLog, store: StorageBackend) -> EventSource:
    if events == "raw":
        return RawLogEvents(log, store)
    store_log = store.log
    return LogEventSource(lambda: store_log.opened, TelemetryBoundary())  # SOP's default


def _pipelining(off: Scenario, url: str, root: Path, events: str) -> list[dict[str, Any]]:
    """The sink alone: the first entries of a log published with 1, 16, 256 in flight."""
    rows = []
    for n in PIPELINE_IN_FLIGHT:
        source = _Prefix(_source(events, off.sop.log, off.sop.store), PIPELINE_EVENTS)
        config = NatsSinkConfig.model_validate(
            {
                "servers": (url,),
                "stream": f"PIPE{n}",
                "subject_prefix": f"bench.pipe{n}",
                "max_in_flight": n,
            }
        )
        sink = NatsSink(source, config, root / f"pipe{n}.cursor")
        started = time.perf_counter()
        sink.start()
        while sink.stats().acked < source.size():
            time.sleep(0.002)
        seconds = time.perf_counter() - started
        sink.close()
        rate = round(source.size() / seconds)
        rows.append({"in_flight": n, "events": source.size(), "events_per_s": rate})
    return rows


class _Prefix:
    """The first ``n`` events of a source."""

    def __init__(self, source: EventSource, n: int) -> None:
        self._source, self._n = source, n

    def size(self) -> int:
        return min(self._n, self._source.size())

    def read(self, start: int, end: int) -> list[Event]:
        return self._source.read(start, min(end, self.size()))


def run_nats(ops: int, threads: int, rounds: int, events: str = "log") -> dict[str, Any]:
    """Throughput with the sink off and on, alternating, in one process; the sink's lag.

    Args:
        ops: operations per run.
        threads: submitter threads.
        rounds: rounds of one run off and one on.
        events: ``log`` (SOP's projection) or ``raw`` (the tests' minimal events).

    Returns:
        The runs, the drops, the lag and the pipelining figures, as data.
    """
    if events not in EVENTS:
        raise ValueError(f"events `{events}` is not one of {EVENTS}")
    per_thread = max(1, ops // threads)
    with tempfile.TemporaryDirectory(prefix="sop-bench-nats-") as tmp:
        root = Path(tmp)
        broker = Broker(root / "nats").start()
        try:
            toml = f'[events.nats]\nservers = ["{broker.url}"]\n'
            off = Scenario(root / "off", clients=threads)
            boot: dict[str, Any] = {}  # `log`: SOP's own sink, in a process of its own
            if events == "raw":  # published from a thread of SOP's process
                boot = {"events": lambda log, store: _source(events, log, store)}
            on = Scenario(root / "on", clients=threads, toml=toml, boot=boot)
            try:
                sink = on.sop.nats_sink
                if sink is None:
                    raise RuntimeError("the `on` SOP booted without its NATS sink")
                off.warm()
                on.warm()
                _drain(on, sink)
                out = _measure(off, on, sink, threads, per_thread, rounds)
                out["pipelining"] = _pipelining(off, broker.url, root, events)
                out["sink"] = {
                    k: getattr(sink.stats(), k) for k in ("published", "duplicates", "outages")
                }
            finally:
                on.close()
                off.close()
        finally:
            broker.stop()
    out["setup"] = {
        "threads": threads,
        "ops_per_round": threads * per_thread,
        "rounds": rounds,
        "events": events,
    }
    return out


def _measure(
    off: Scenario, on: Scenario, sink: NatsSink, threads: int, per_thread: int, rounds: int
) -> dict[str, Any]:
    recorder = _Recorder(sink)
    behind: list[int] = []
    rows, drains = [], []
    for r in range(rounds):
        order = (off, on) if r % 2 == 0 else (on, off)
        runs: dict[str, RunResult] = {}
        for s in order:
            mode = "on" if s is on else "off"
            stop = _sampler(s, sink, behind if s is on else [])
            answered = recorder.answered if s is on else {}
            runs[mode] = _round(s, f"nats-{mode}-{r}", threads, per_thread, answered)
            stop.set()
            if s is on:
                drains.append(_drain(on, sink))
        rows.append({mode: run.summary() for mode, run in runs.items()})
    off_rates = [row["off"]["ops_per_s"] for row in rows]
    on_rates = [row["on"]["ops_per_s"] for row in rows]
    lags = sorted(recorder.lags_ms(on.sop.events.source))
    off_median, on_median = statistics.median(off_rates), statistics.median(on_rates)
    paired = [100 * (1 - on / off) for off, on in zip(off_rates, on_rates, strict=True)]
    behind.sort()
    return {
        "rounds": rows,
        "median_off_ops_per_s": off_median,
        "median_on_ops_per_s": on_median,
        "drop_percent": round(100 * (1 - on_median / off_median), 1),
        "paired_drop_percent": round(statistics.median(paired), 1),
        "paired_drops": [round(p, 1) for p in paired],
        "refused": sum(row[m]["refused"] for row in rows for m in ("off", "on")),
        "lag_ms": _percentiles(lags),
        "lag_ops": len(lags),
        "behind_entries": _percentiles([float(b) for b in behind]),
        "drain_seconds": [round(d, 3) for d in drains],
    }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "p50": round(ordered[n // 2], 2),
        "p99": round(ordered[min(n - 1, int(n * 0.99))], 2),
        "max": round(ordered[-1], 2),
    }


def render_nats(result: dict[str, Any]) -> str:
    """The result as text tables."""
    what = {"log": "SOP's projection of the log", "raw": "the tests' minimal events"}
    lines = [
        f"events published: {what[result['setup']['events']]}",
        "",
        "| round | sink off ops/s | sink on ops/s | off p99 ms | on p99 ms"
        " | off CPU us/op | on CPU us/op |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r, row in enumerate(result["rounds"]):
        off, on = row["off"], row["on"]
        lines.append(
            f"| {r} | {off['ops_per_s']:,} | {on['ops_per_s']:,} | {off['p99_ms']} | {on['p99_ms']}"
            f" | {off['cpu_us_per_op']} | {on['cpu_us_per_op']} |"
        )
    lag, behind = result["lag_ms"], result["behind_entries"]
    lines += [
        "",
        f"median ops/s: off {result['median_off_ops_per_s']:,},"
        f" on {result['median_on_ops_per_s']:,}; drop {result['drop_percent']} %",
        f"drop within each round (on against the off run beside it): {result['paired_drops']};"
        f" median {result['paired_drop_percent']} % (target <= 10 %:"
        f" {'PASS' if result['paired_drop_percent'] <= 10 else 'FAIL'})",
        f"lag, answer to broker ack, over {result['lag_ops']:,} ops: p50 {lag['p50']} ms,"
        f" p99 {lag['p99']} ms, max {lag['max']} ms",
        f"events behind, sampled every {SAMPLE_SECONDS * 1e3:g} ms: p50 {behind['p50']},"
        f" p99 {behind['p99']}, max {behind['max']}",
        f"drain after each 'on' round (s): {result['drain_seconds']}",
        f"sink: {result['sink']}; refused operations: {result['refused']}",
        "",
        "| publishes in flight | events | events/s (sink alone) |",
        "|---:|---:|---:|",
    ]
    for p in result["pipelining"]:
        lines.append(f"| {p['in_flight']} | {p['events']:,} | {p['events_per_s']:,} |")
    return "\n".join(lines)
