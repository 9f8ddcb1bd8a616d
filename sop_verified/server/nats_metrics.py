"""The NATS sink on ``/metrics``: how far behind the log it is, and whether the broker answers.

Only when ``sop.toml`` has ``[events.nats]``; otherwise nothing is added. The
values are read from the sink at each scrape (a Prometheus custom collector), so
the sink, in the events layer, knows nothing of Prometheus. No label carries a
server URL: a broker's address may hold a password, and it is the operator's
own configuration anyway (``sop status`` shows it, redacted).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sop_verified.events.nats_sink import NatsSinkControl
from sop_verified.nexus.sop import SOP

__all__ = ["NatsSinkCollector"]


class NatsSinkCollector(Collector):
    """A Prometheus collector over SOP's NATS sink (nothing when there is none)."""

    def __init__(self, sop: SOP) -> None:
        """Collect from ``sop``'s sink at each scrape."""
        self._sop = sop

    def _sink(self) -> NatsSinkControl | None:
        try:
            return self._sop.nats_sink
        except Exception:  # boot did not finish: nothing to report
            return None

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (the registry needs their names once)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The families with the sink's current values."""
        sink = self._sink()
        if sink is None:
            return
        s = sink.stats()
        lag, acked, connected, outages, published, duplicates, restarts = self._families()
        lag.add_metric([], s.lag)
        acked.add_metric([], s.acked)
        connected.add_metric([], 1 if s.connected else 0)
        outages.add_metric([], s.outages)
        published.add_metric([], s.published)
        duplicates.add_metric([], s.duplicates)
        restarts.add_metric([], s.restarts)
        yield from (lag, acked, connected, outages, published, duplicates, restarts)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily,
        GaugeMetricFamily,
        GaugeMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
        CounterMetricFamily,
    ]:
        return (
            GaugeMetricFamily(
                "sop_events_nats_lag",
                "Events (of log entries and checkpoints) the NATS broker has not acknowledged"
                " yet (the log's events minus the sink's cursor); it grows while the broker"
                " is down.",
            ),
            GaugeMetricFamily(
                "sop_events_nats_acked",
                "Events the NATS broker acknowledged: the first `acked` of the log's events"
                " (entries and checkpoints, in log order) are in the stream.",
            ),
            GaugeMetricFamily(
                "sop_events_nats_connected",
                "1 while the sink publishes to the broker, 0 during an outage (SOP stays READY).",
            ),
            CounterMetricFamily(
                "sop_events_nats_outages",
                "Times the sink lost the broker (or the stream refused it) since SOP started.",
            ),
            CounterMetricFamily(
                "sop_events_nats_published",
                "Events the broker stored from this process since SOP started.",
            ),
            CounterMetricFamily(
                "sop_events_nats_duplicates",
                "Publishes the broker acknowledged as duplicates (already in the stream, not"
                " stored again: Nats-Msg-Id).",
            ),
            CounterMetricFamily(
                "sop_events_nats_process_restarts",
                "Times the sink's own process died and was started again since SOP started"
                " (events wait in the log meanwhile).",
            ),
        )
