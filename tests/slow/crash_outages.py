"""What the clients of a fault test saw, in time: logged answers and refusals, per replica.

The replicas' fault test (:mod:`replicas_crash`) takes the database away (a
PostgreSQL restart, a replica's connections cut) while clients keep asking.
A decision that cannot be logged then must be refused: a DENY that names its
reason (not logged, so the client sends the same key again later) or a 503,
never a 500 and never an ALLOW without a log entry (:mod:`crash_clients` keeps
those as failures). :class:`Outages` is told of every logged answer and every
refusal as it comes, with its time and replica, so a test can say how long a
replica took to decide again after a fault and how many requests were refused
meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

__all__ = ["Outages", "Refusal"]


@dataclass(frozen=True)
class Refusal:
    """One refused request: when, by which replica, the HTTP status, the reason given."""

    at: float
    replica: int
    status: int
    code: str
    logged: bool  # a logged DENY (its reason an outage's) rather than a DENY not logged, or 503
    message: str


class Outages:
    """Logged answers and refusals, by replica and time (``time.monotonic``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._logged: dict[int, list[float]] = {}
        self.refusals: list[Refusal] = []

    def logged(self, replica: int) -> None:
        """``replica`` answered with a logged decision now."""
        with self._cond:
            self._logged.setdefault(replica, []).append(time.monotonic())
            self._cond.notify_all()

    def refused(
        self, replica: int, status: int, code: str, message: str, *, logged: bool = False
    ) -> None:
        """``replica`` refused a request now (``logged``: with a logged DENY)."""
        with self._cond:
            self.refusals.append(
                Refusal(time.monotonic(), replica, status, code, logged, message[:300])
            )

    def first_logged(self, replica: int, after: float, timeout: float) -> float | None:
        """When ``replica`` first answered with a logged decision after ``after``, waiting
        up to ``timeout`` seconds for one (None: none came)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                later = [t for t in self._logged.get(replica, ()) if t > after]
                if later:
                    return min(later)
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def between(self, start: float, end: float, replica: int | None = None) -> list[Refusal]:
        """The refusals from ``start`` to ``end`` (of ``replica``, or of any)."""
        with self._cond:
            return [
                r
                for r in self.refusals
                if start <= r.at <= end and (replica is None or r.replica == replica)
            ]

    def codes(self) -> dict[str, int]:
        """How many refusals gave each reason code."""
        with self._cond:
            return dict(Counter(r.code for r in self.refusals))
