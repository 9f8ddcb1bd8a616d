"""How soon another replica serves a decision's receipt, for ``bench_postgres.py``.

A decision's receipt comes back with the decision (the log integrates before
it answers), so on the replica that decided it is there when the answer is.
What this measures is the other replicas: :class:`ReceiptProbe` runs on a
thread beside the load, decides one request at a time on replica *k*, then
asks replica *k+1*'s read plane for ``/v1/receipts/<log_index>`` every
``poll`` seconds until it answers 200 (or ``give_up`` passes), and records the
time from the decision's answer to that 200. :func:`idle_receipt` asks the
same question once with no load running, and again after the other replica
decided a request of its own.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ReceiptProbe", "idle_receipt"]


class _Client:
    """One keep-alive HTTP/1.1 connection to one plane."""

    def __init__(self, base: str) -> None:
        parts = urlsplit(base)
        self._conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

    def call(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self._conn.request(method, path, body=body, headers=headers)
        answer = self._conn.getresponse()
        return answer.status, answer.read()

    def close(self) -> None:
        self._conn.close()


def _decide(bridge: _Client, body: bytes) -> int:
    status, answer = bridge.call("POST", "/v1/decide", body)
    decision = json.loads(answer) if status == 200 else {}
    if "receipt" not in decision or not isinstance(decision.get("log_index"), int):
        raise RuntimeError(f"a decision without its receipt: {status} {answer[:300]!r}")
    return int(decision["log_index"])


def _await_receipt(read: _Client, index: int, poll: float, give_up: float) -> float | None:
    """Seconds until ``read`` serves entry ``index``'s receipt, or None past ``give_up``."""
    t0 = time.perf_counter()
    while True:
        status, body = read.call("GET", f"/v1/receipts/{index}")
        waited = time.perf_counter() - t0
        if status == 200 and body:
            return waited
        if status != 404:
            raise RuntimeError(f"receipt {index}: HTTP {status} {body[:300]!r}")
        if waited >= give_up:
            return None
        time.sleep(poll)


class ReceiptProbe(threading.Thread):
    """Decide on one replica, time the receipt on the next, until stopped."""

    def __init__(
        self,
        bridges: list[str],
        reads: list[str],
        bodies: list[list[str]],
        *,
        tag: str,
        until: float,
        every: float = 0.05,
        poll: float = 0.005,
        give_up: float = 3.0,
    ) -> None:
        """Probe ``bridges[k]`` then ``reads[k + 1]``, one probe every ``every`` seconds.

        Args:
            bridges: the replicas' bridge planes.
            reads: the replicas' read planes, in the same order.
            bodies: ``/v1/decide`` templates (``bench_http.bodies``).
            tag: put in every ``request_id``.
            until: ``time.monotonic()`` after which no probe starts (before the load ends:
                an idle replica does not catch up on the log, see :func:`idle_receipt`).
            every: seconds between probes.
            poll: seconds between receipt requests.
            give_up: a receipt not served within this many seconds counts as missed.
        """
        super().__init__(name="receipt-probe", daemon=True)
        self._until = until
        self._bridges, self._reads = bridges, reads
        self._bodies, self._tag = bodies, tag
        self._every, self._poll, self._give_up = every, poll, give_up
        self._stop_event = threading.Event()
        self.waits: list[float] = []
        self.missed = 0
        self.error: str | None = None

    def run(self) -> None:
        """Probe until :meth:`stop`."""
        n = len(self._bridges)
        bridges = [_Client(b) for b in self._bridges]
        reads = [_Client(r) for r in self._reads]
        k = 0
        try:
            while not self._stop_event.is_set() and time.monotonic() < self._until:
                prefix, suffix = self._bodies[k % len(self._bodies)]
                body = f"{prefix}{self._tag}-receipt-{k}{suffix}".encode()
                index = _decide(bridges[k % n], body)
                waited = _await_receipt(reads[(k + 1) % n], index, self._poll, self._give_up)
                if waited is None:
                    self.missed += 1
                else:
                    self.waits.append(waited)
                k += 1
                self._stop_event.wait(self._every)
        except Exception as exc:  # reported with the run, not raised on a thread
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            for c in (*bridges, *reads):
                c.close()

    def stop(self) -> dict[str, Any]:
        """Stop probing; what was measured."""
        self._stop_event.set()
        self.join(self._give_up + 30)
        return {"waits_s": self.waits, "missed": self.missed, "error": self.error}


def idle_receipt(
    first: tuple[str, str], second: tuple[str, str], bodies: tuple[bytes, bytes], give_up: float
) -> dict[str, Any]:
    """With no load: decide on ``first``, time its receipt on ``second``; then once more
    after ``second`` has decided a request of its own (``(bridge, read)`` URL pairs).

    Returns:
        The entry's index, the seconds until ``second`` served it (None: not within
        ``give_up``) and the same after ``second``'s own decision.
    """
    clients = [_Client(u) for u in (*first, *second)]
    b1, _, b2, r2 = clients
    try:
        index = _decide(b1, bodies[0])
        waited = _await_receipt(r2, index, 0.01, give_up)
        _decide(b2, bodies[1])
        after = _await_receipt(r2, index, 0.01, give_up)
        return {"index": index, "waited_s": waited, "after_own_write_s": after}
    finally:
        for c in clients:
            c.close()
