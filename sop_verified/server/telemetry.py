"""Telemetry: Prometheus metrics and one JSON log line per decision.

The metrics live in a registry of their own (not the process-wide default),
served on the public read plane's ``/metrics`` in the Prometheus text format by
``prometheus-client``. Labels never carry request values: effects, stages and
codes are SOP's own small vocabularies, so a label cannot leak a context value
or grow without bound; a stage or code that is not shaped like one
(:func:`label`) is counted as ``other``. The decision log line carries the
decision's id, log index, effect, stage, code and latency, and no request
context value. docs/TELEMETRY.md is the whole boundary.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from sop_verified.core.request import Decision

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "decision_logger", "label"]

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `_created` series: they double the exposition for nothing

decision_logger = logging.getLogger("sop.decisions")
"""One JSON line per decision (INFO); configure a handler to keep them."""

_VOCABULARY = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def label(value: str) -> str:
    """``value`` if it is shaped like SOP's own stage and code names, else ``other``.

    Stages and codes are constants of SOP's code, never request values; this
    keeps it so for metrics and log lines even if one ever were not (free text,
    a context value with a space or a capital, a 5,000-character string).
    """
    return value if _VOCABULARY.fullmatch(value) else "other"


class Metrics:
    """SOP's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.decisions = Counter(
            "sop_decisions",
            "Decisions by effect, stage and code.",
            ("effect", "stage", "code"),
            registry=r,
        )
        self.latency = Histogram(
            "sop_decision_seconds",
            "End-to-end decision latency over HTTP, by endpoint.",
            ("endpoint",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "sop_decision_batch_size",
            "Requests decided per durable log batch.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=r,
        )
        self.stage = Histogram(
            "sop_decision_stage_seconds",
            "Seconds per stage of the server's path: `queue` (waiting for a deciding thread),"
            " `decide_and_log` (a batch: every decision stage and the durable log commit).",
            ("stage",),
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge(
            "sop_decision_queue_depth", "Requests waiting for a decision.", registry=r
        )
        self.rejected = Counter(
            "sop_http_rejected",
            "Requests refused before a decision, by reason.",
            ("reason",),
            registry=r,
        )
        self.tls_refused = Counter(
            "sop_tls_handshake_refused",
            "Bridge-plane TLS handshakes refused, by the fatal alert sent.",
            ("alert",),
            registry=r,
        )
        self.log_size = Gauge("sop_log_size", "Entries in the signed log.", registry=r)
        self.checkpoint_age = Gauge(
            "sop_checkpoint_age_seconds",
            "Seconds since the latest checkpoint was signed.",
            registry=r,
        )
        self.health = Gauge(
            "sop_health",
            "1 for SOP's current health state, 0 for the others.",
            ("state",),
            registry=r,
        )
        self.gate_queue = Gauge(
            "sop_proof_gate_queue", "Obligations waiting for a solver worker.", registry=r
        )
        self.worker_restarts = Gauge(
            "sop_proof_gate_worker_restarts", "Solver worker processes restarted.", registry=r
        )
        self.collect_hooks: list[Callable[[Metrics], None]] = []
        self._children: dict[tuple[str, str, str, str], tuple[Any, Any]] = {}

    def observe(self, decision: Decision, endpoint: str, started: float) -> float:
        """Count one decision and its latency; returns the latency in seconds."""
        elapsed = time.perf_counter() - started
        reason = decision.reasons[0] if decision.reasons else None
        stage = label(str(reason.stage)) if reason else ""  # spec: telemetry boundary
        code = label(reason.code) if reason else ""
        effect = str(decision.effect)
        children = self._children.get((effect, stage, code, endpoint))
        if children is None:  # labels() looks the child up each call; keep it instead
            children = (self.decisions.labels(effect, stage, code), self.latency.labels(endpoint))
            self._children[(effect, stage, code, endpoint)] = children
        children[0].inc()
        children[1].observe(elapsed)
        if decision_logger.isEnabledFor(logging.INFO):
            decision_logger.info(
                orjson.dumps(
                    {
                        "event": "decision",
                        "request_id": decision.request_id,
                        "log_index": decision.log_index,
                        "effect": str(decision.effect),
                        "stage": stage,
                        "code": code,
                        "latency_ms": round(elapsed * 1000, 3),
                        "endpoint": endpoint,
                    }
                ).decode()
            )
        return elapsed

    def observe_batch(self, size: int, waits: list[float], seconds: float) -> None:
        """Count one durable batch: its size, its requests' queue waits, its duration."""
        self.batch.observe(size)
        queue = self.stage.labels("queue")
        for wait in waits:
            queue.observe(wait)
        self.stage.labels("decide_and_log").observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition, after refreshing the sampled gauges."""
        for hook in self.collect_hooks:
            hook(self)
        return generate_latest(self.registry)
