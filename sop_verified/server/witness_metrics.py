"""Publication through witnesses on ``/metrics``: how far it got, and what each witness answered.

Only when ``sop.toml`` names witnesses; otherwise nothing is added. The
counters are read from the publisher at each scrape (a Prometheus custom
collector), so the publisher, in the nexus layer, knows nothing of Prometheus.
The ``witness`` label is the witness's key name from ``sop.toml``, and
``outcome`` is ``cosigned`` or a refusal code of
:mod:`sop_verified.tools.witness_client`: both small, operator-chosen vocabularies.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sop_verified.nexus.sop import SOP
from sop_verified.nexus.witness_publisher import WitnessPublisher

__all__ = ["WitnessCollector"]


class WitnessCollector(Collector):
    """A Prometheus collector over SOP's witness publisher (nothing when there is none)."""

    def __init__(self, sop: SOP) -> None:
        """Collect from ``sop``'s publisher at each scrape."""
        self._sop = sop

    def _publisher(self) -> WitnessPublisher | None:
        try:
            return self._sop.witnesses
        except Exception:  # boot did not finish: nothing to report
            return None

    def describe(self) -> Iterator[Metric]:
        """The families, without samples (the registry needs their names once)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        """The families with the publisher's current counters."""
        publisher = self._publisher()
        if publisher is None:
            return
        size, witnesses = publisher.stats()
        published, outcomes, cosigned, alarm = self._families()
        published.add_metric([], size)
        for w in witnesses:
            for outcome, count in sorted(w.outcomes.items()):
                outcomes.add_metric([w.name, outcome], count)
            cosigned.add_metric([w.name], w.cosigned_size)
            alarm.add_metric([w.name], 0 if w.alarm is None else 1)
        yield from (published, outcomes, cosigned, alarm)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, CounterMetricFamily, GaugeMetricFamily, GaugeMetricFamily
    ]:
        return (
            GaugeMetricFamily(
                "sop_witnessed_size",
                "Entries covered by the published checkpoint (the latest one `min` witnesses"
                " cosigned); 0 before the first.",
            ),
            CounterMetricFamily(
                "sop_witness_submissions",
                "Answers to SOP's add-checkpoint by witness and outcome: `cosigned`, or a"
                " refusal code (`unreachable`, `fork`, `bad_proof`, ...).",
                labels=("witness", "outcome"),
            ),
            GaugeMetricFamily(
                "sop_witness_cosigned_size",
                "The size each witness last cosigned for this log, as SOP knows it.",
                labels=("witness",),
            ),
            GaugeMetricFamily(
                "sop_witness_alarm",
                "1 once a witness refused a checkpoint as a fork or a rollback (the integrity"
                " alarm), else 0.",
                labels=("witness",),
            ),
        )
