"""Integrity alarms, logged: each becomes an ``alarm`` entry, and so a ``sop.alarm.v1`` event.

An alarm (a witness refusing a checkpoint, stored bytes that do not match the
log, a proof-gate verdict that cannot be trusted) turns SOP DEGRADED at once,
in the registry (:meth:`~sop_verified.nexus.registry.ServiceRegistry.raise_alarm`);
every decision is DENY from then on, whether or not the alarm reaches the log.
:class:`AlarmLog` then appends ``{"type": "alarm", "service", "reason",
"health", "time"}`` from a thread of its own: an alarm is often raised on a
path that holds the store or the log (a read checking bytes, a commit), and
appending there could wait on itself. The log then says when SOP stopped
admitting anything and why, and the Ops_Event_Bus publishes it like any entry.

Each ``(service, reason)`` is logged once per process (a tampered row read a
hundred times is one alarm). When the append fails — the log or the store may
be what failed — the alarm is logged as a warning instead and stays in
``/health/ready`` and ``/metrics``; nothing else depends on it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from sop_verified.core.ports import Clock
from sop_verified.tools.canonical import canonical_json

__all__ = ["ALARM_TYPE", "MAX_PENDING", "AlarmLog"]

ALARM_TYPE = "alarm"
"""The ``type`` of an alarm's log entry."""

MAX_PENDING = 1024
"""Alarms waiting for the log at most; more are warned about and not logged."""

_log = logging.getLogger(__name__)
_STOP = ("", "")


class AlarmLog:
    """Appends each new alarm to the log, from its own thread."""

    def __init__(self, append: Callable[[bytes], int], now: Clock) -> None:
        """Log alarms with ``append`` (the log's append: the payload in, its index out).

        Args:
            append: appends one entry durably and returns its index.
            now: the clock for the entry's ``time``.
        """
        self._append = append
        self._now = now
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[str, str]] = queue.Queue(MAX_PENDING)
        self._thread = threading.Thread(target=self._run, name="sop-alarm-log", daemon=True)
        self._thread.start()

    def record(self, service: str, reason: str) -> None:
        """An alarm was raised: log it once (never blocks the caller)."""
        with self._lock:
            if (service, reason) in self._seen:
                return
            self._seen.add((service, reason))
        try:
            self._queue.put_nowait((service, reason))
        except queue.Full:
            _log.warning("alarm not logged (%d waiting): %s: %s", MAX_PENDING, service, reason)

    def close(self, timeout: float = 5.0) -> None:
        """Log what is waiting (for at most ``timeout`` seconds), then stop."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            service, reason = self._queue.get()
            if (service, reason) == _STOP:
                return
            entry = {
                "type": ALARM_TYPE,
                "service": service,
                "reason": reason,
                "health": "DEGRADED",
                "time": self._now(),
            }
            try:
                self._append(canonical_json(entry))
            except Exception as exc:  # the log may be what failed: the alarm stands anyway
                _log.warning(
                    "integrity alarm of `%s` not logged (%s: %s): %s",
                    service,
                    type(exc).__name__,
                    exc,
                    reason,
                )
