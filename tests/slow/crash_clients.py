"""The load of the crash test (:mod:`serve_crash`): clients that retry across kills.

Each client is a thread with its own ``httpx.Client`` (mutual TLS as ``drac``)
sending ``POST /v1/decide`` requests one after another, ALLOW and DENY mixed
(seeded), each with a fresh ``Idempotency-Key``. A connection error (the
server was killed) is retried with the same key and body once the server is
back (:class:`Endpoint` says where it listens now); every answer received is
kept as an :class:`Ack`. Every :data:`LOSE_EVERY`-th answer a client pretends
to have lost: after the next restart it sends that key again and must get the
first decision back from the log (``replayed`` true, same index and leaf).
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from served import Prepared, request

from sop_verified.server.certs import client_ssl_context

__all__ = ["LOSE_EVERY", "Ack", "ClientLoad", "Endpoint"]

LOSE_EVERY = 40
"""Every this many acknowledgements, a client resends the key after the next restart."""

_RETRY_PAUSE = 0.05


@dataclass(frozen=True)
class Ack:
    """One acknowledged decision, as its client was given it."""

    key: str
    effect: str
    log_index: int
    leaf_hash: str
    tree_size: int
    checkpoint: str


class _Counts(Protocol):
    sent: int
    attempts: int
    acknowledged: int
    allowed: int
    denied: int
    retried: int
    replayed: int
    replayed_after_kill: int
    resent: int


class Endpoint:
    """Where the bridge plane listens now; None while the server is down."""

    def __init__(self, url: str) -> None:
        self._cond = threading.Condition()
        self._url: str | None = url
        self._generation = 0
        self._closed = False

    def up(self, url: str) -> None:
        """A (re)started server listens at ``url``."""
        with self._cond:
            self._url, self._generation = url, self._generation + 1
            self._cond.notify_all()

    def down(self) -> None:
        """The server is about to be killed: clients wait for the next one."""
        with self._cond:
            self._url = None

    def close(self) -> None:
        """No server will come back: waiting clients give up."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def generation(self) -> int:
        """How many times a server came up (after the first)."""
        with self._cond:
            return self._generation

    def wait(self) -> tuple[int, str] | None:
        """The current server's generation and URL, waiting while it is down (None: closed)."""
        with self._cond:
            while self._url is None and not self._closed:
                self._cond.wait()
            return None if self._url is None else (self._generation, self._url)


class _Client:
    """One client thread's state: its HTTP client, its answers, its lost answers."""

    def __init__(self, n: int, load: ClientLoad) -> None:
        self.n = n
        self.load = load
        self.rng = random.Random(f"{load.seed}-{n}")
        self.ctx = client_ssl_context(*load.prepared.client("drac"))
        self.generation = -1
        self.http: httpx.Client | None = None
        self.acks: list[Ack] = []
        self.lost: list[tuple[int, dict[str, Any], Ack]] = []  # (generation, body, first answer)
        self.counts = dict.fromkeys(
            ("sent", "attempts", "retried", "replayed", "replayed_after_kill", "resent"), 0
        )
        self.failures: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.load.stopping.is_set():
            i += 1
            self.resend_lost()
            key = f"crash-{self.n}-{i}"
            body = request(
                self.load.prepared.token, self.n * 1_000_000 + i, allow=self.rng.random() < 0.5
            )
            self.counts["sent"] += 1
            answer, retried = self.send(key, body)
            if answer is None:  # a failure (kept) or no server any more
                continue
            self.counts["retried"] += retried
            ack = self.accept(key, body, answer, retried=retried)
            if ack is not None and len(self.acks) % LOSE_EVERY == 0:
                self.lost.append((self.generation, body, ack))
        if self.http is not None:
            self.http.close()

    def send(self, key: str, body: dict[str, Any]) -> tuple[dict[str, Any] | None, bool]:
        """POST until an answer comes (None: a failure, kept, or no server any more).

        Returns:
            The decision and whether a connection error forced a retry.
        """
        retried = False
        while True:
            where = self.load.endpoint.wait()
            if where is None:
                return None, retried
            http = self.connect(*where)
            self.counts["attempts"] += 1
            try:
                answer = http.post(
                    f"{where[1]}/v1/decide", json=body, headers={"Idempotency-Key": key}
                )
            except httpx.TransportError:
                retried = True  # killed in flight: the same key again, on the next server
                time.sleep(_RETRY_PAUSE)
                continue
            if answer.status_code in (409, 429, 503):  # in flight, full, stopping: later
                time.sleep(_RETRY_PAUSE)
                continue
            if answer.status_code != 200:
                self.failures.append(f"key `{key}`: `{answer.status_code}` {answer.text[:300]}")
                return None, retried
            return answer.json(), retried

    def connect(self, generation: int, _url: str) -> httpx.Client:
        if self.http is None or generation != self.generation:
            if self.http is not None:
                self.http.close()  # its pool holds the killed server's connections
            self.http = httpx.Client(verify=self.ctx, timeout=60)
            self.generation = generation
        return self.http

    def accept(
        self, key: str, body: dict[str, Any], d: dict[str, Any], *, retried: bool
    ) -> Ack | None:
        expected = "ALLOW" if body["resource"].startswith("artifacts/drac/") else "DENY"
        receipt = d.get("receipt") or {}
        if d.get("effect") != expected or receipt.get("index") != d.get("log_index"):
            self.failures.append(f"key `{key}`: expected a logged `{expected}`, got {d}")
            return None
        if d.get("replayed") is True:
            if not retried:
                self.failures.append(f"key `{key}` sent once was answered from the log: {d}")
            self.counts["replayed"] += 1
            self.counts["replayed_after_kill"] += 1
        ack = Ack(
            key,
            expected,
            d["log_index"],
            receipt["leaf_hash"],
            receipt["tree_size"],
            receipt["checkpoint"],
        )
        self.acks.append(ack)
        return ack

    def resend_lost(self) -> None:
        """Resend the keys whose answers were "lost", once the server was restarted."""
        keep = []
        for generation, body, first in self.lost:
            if generation == self.load.endpoint.generation:
                keep.append((generation, body, first))
                continue
            answer, _ = self.send(first.key, body)
            if answer is None:
                continue
            self.counts["resent"] += 1
            self.counts["replayed"] += answer.get("replayed") is True
            again = (answer.get("log_index"), (answer.get("receipt") or {}).get("leaf_hash"))
            if answer.get("replayed") is not True or again != (first.log_index, first.leaf_hash):
                self.failures.append(
                    f"key `{first.key}` resent after a restart: expected its first decision"
                    f" `{first.log_index}` replayed from the log, got {answer}"
                )
        self.lost = keep


class ClientLoad:
    """``clients`` client threads against :class:`Endpoint`, until :meth:`stop`."""

    def __init__(self, prepared: Prepared, endpoint: Endpoint, clients: int, seed: int) -> None:
        self.prepared = prepared
        self.endpoint = endpoint
        self.seed = seed
        self.stopping = threading.Event()
        self._clients = [_Client(n, self) for n in range(clients)]
        self._threads = [
            threading.Thread(target=c.run, name=f"crash-client-{c.n}", daemon=True)
            for c in self._clients
        ]

    def start(self) -> None:
        """Start every client."""
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 120.0) -> None:
        """Let every client finish the request it is sending (the server must be up), then stop."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.endpoint.close()
        for thread in self._threads:
            thread.join(5)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"clients did not stop: {alive}")

    def acks(self) -> list[Ack]:
        """Every answer received so far (a snapshot)."""
        return [ack for c in self._clients for ack in list(c.acks)]

    @property
    def failures(self) -> list[str]:
        """What the clients found wrong in their answers."""
        return [f for c in self._clients for f in c.failures]

    def count(self, report: _Counts) -> None:
        """Add the clients' counts to ``report``."""
        acks = self.acks()
        report.acknowledged = len(acks)
        report.allowed = sum(a.effect == "ALLOW" for a in acks)
        report.denied = len(acks) - report.allowed
        for c in self._clients:
            for name, value in c.counts.items():
                setattr(report, name, getattr(report, name) + value)
