"""The load of the crash test (:mod:`serve_crash`): clients that retry across kills.

Each client is a thread with its own ``httpx.Client`` (mutual TLS as ``drac``)
sending requests one after another, each with a fresh ``Idempotency-Key``:
``POST /v1/decide`` (ALLOW and DENY mixed, seeded) and, a :data:`PERSIST_SHARE`
of them, ``POST /v1/persist`` of a few hundred bytes to 4 KiB of random bytes
under ``artifacts/drac/`` (ALLOW; one in :data:`DENY_PERSIST_EVERY` under
``artifacts/emp/``, DENY). A connection error (the server was killed) is
retried with the same key, body and bytes once the server is back
(:class:`Endpoint` says where it listens now); every answer received is kept
as an :class:`Ack` (a persist's with its bytes and its write, a
:class:`Persisted`). Every :data:`LOSE_EVERY`-th answer a client pretends to
have lost: after the next restart it sends that key again and must get the
first decision back from the log (``replayed`` true, same index and leaf).

Several replicas (:mod:`replicas_crash`): client ``n`` asks the ``n % k``-th of
``k`` endpoints, and retries there. With an :class:`~crash_outages.Outages`, a
decision the server could not log (a DENY without a log index, its reason
given, or a 503) is a refusal, not a failure: it is noted, and the same key is
sent again a little later; a logged DENY of a request that should be allowed
is accepted only with an outage's reason (:data:`OUTAGE_CODES`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson
from crash_endpoint import Endpoint
from crash_outages import Outages

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "server"))  # served.py

from served import Prepared, request

from sop_verified.server.certs import client_ssl_context

__all__ = [
    "DENY_PERSIST_EVERY",
    "LOSE_EVERY",
    "OUTAGE_CODES",
    "PERSIST_BYTES",
    "PERSIST_SHARE",
    "Ack",
    "ClientLoad",
    "Endpoint",
    "Persisted",
]

LOSE_EVERY = 40
"""Every this many acknowledgements, a client resends the key after the next restart."""

PERSIST_SHARE = 1 / 3
"""The share of requests that are ``POST /v1/persist`` (the others ``POST /v1/decide``)."""

PERSIST_BYTES = (200, 4096)
"""How many random bytes a persist carries (uniform, seeded): small, so each is stored with its
decision in one commit (``INLINE_MAX_BYTES``); ``--persist-bytes`` of :mod:`serve_crash`
changes it (past 64 KiB the file is written after the decision's commit)."""

DENY_PERSIST_EVERY = 8
"""About one persist in this many targets ``artifacts/emp/`` (DENY: no effect may follow)."""

OUTAGE_CODES = frozenset({"log_append_failed", "obligation_unknown"})
"""The reasons a request that should be allowed may be denied for while the database is away:
its decision could not be logged, or its proof obligation's verdict could not be stored."""

_RETRY_PAUSE = 0.05

Post = Callable[[httpx.Client, str, str], httpx.Response]
"""Sends one request: ``(client, base URL, idempotency key)`` to the response."""


@dataclass(frozen=True)
class Persisted:
    """What a persist's client sent and was told was written.

    Attributes:
        resource: the persisted resource.
        data: the bytes sent.
        write_index: the ``persist.effect`` entry's index (``write.index``); None when
            the answer carried no write (a DENY, or an ALLOW replayed from the log).
        write_leaf: that entry's leaf hash, from ``write.receipt``.
    """

    resource: str
    data: bytes
    write_index: int | None
    write_leaf: str | None

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the bytes."""
        return "sha256:" + hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Ack:
    """One acknowledged decision, as its client was given it."""

    key: str
    effect: str
    log_index: int
    leaf_hash: str
    tree_size: int
    checkpoint: str
    persisted: Persisted | None = None


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
    persists_sent: int
    persists_refused: int
    persists_acknowledged: int
    persists_allowed: int
    persists_written: int
    persists_retried: int
    persists_replayed: int


def _persist_post(header: str, data: bytes) -> Post:
    def post(http: httpx.Client, url: str, key: str) -> httpx.Response:
        headers = {
            "SOP-Request": header,
            "Content-Type": "application/octet-stream",
            "Idempotency-Key": key,
        }
        return http.post(f"{url}/v1/persist", content=data, headers=headers)

    return post


def _problem_code(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("code") or answer.status_code)
    except ValueError:
        return str(answer.status_code)


def _decide_post(body: dict[str, Any]) -> Post:
    def post(http: httpx.Client, url: str, key: str) -> httpx.Response:
        return http.post(f"{url}/v1/decide", json=body, headers={"Idempotency-Key": key})

    return post


@dataclass(frozen=True)
class _Sent:
    """One request as its client will resend it: the same key, body and bytes."""

    key: str
    resource: str
    post: Post
    data: bytes | None = None  # a persist's bytes


class _Client:
    """One client thread's state: its HTTP client, its answers, its lost answers."""

    def __init__(self, n: int, load: ClientLoad) -> None:
        self.n = n
        self.load = load
        self.replica = n % len(load.endpoints)
        self.endpoint = load.endpoints[self.replica]
        self.rng = random.Random(f"{load.seed}-{n}")
        self.ctx = client_ssl_context(*load.prepared.client("drac"))
        self.generation = -1
        self.http: httpx.Client | None = None
        self.acks: list[Ack] = []
        # (key, decision index, refusal index): a logged ALLOW whose write was refused (a kill
        # cut a large write short and boot repair aborted it; a retry is told so, as a DENY)
        self.refused: list[tuple[str, int, int]] = []
        self.lost: list[tuple[int, _Sent, Ack]] = []  # (generation, request, first answer)
        names = ["sent", "attempts", "retried", "replayed", "replayed_after_kill", "resent"]
        names += ["persists_sent", "persists_retried", "persists_replayed", "persists_refused"]
        self.counts = dict.fromkeys(names, 0)
        self.failures: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.load.stopping.is_set():
            self.load.resumed.wait()
            i += 1
            self.resend_lost()
            sent = self.next_request(i)
            self.counts["sent"] += 1
            self.counts["persists_sent"] += sent.data is not None
            answer, retried = self.send(sent)
            if answer is None:  # a failure (kept) or no server any more
                continue
            self.counts["retried"] += retried
            self.counts["persists_retried"] += retried and sent.data is not None
            ack = self.accept(sent, answer, retried=retried)
            if ack is not None and len(self.acks) % LOSE_EVERY == 0:
                self.lost.append((self.generation, sent, ack))
        if self.http is not None:
            self.http.close()

    def next_request(self, i: int) -> _Sent:
        """The ``i``-th request: a decision, or (:data:`PERSIST_SHARE`) a persist with its bytes."""
        key, number = f"crash-{self.n}-{i}", self.n * 1_000_000 + i
        token = self.load.prepared.token
        if self.rng.random() >= PERSIST_SHARE:
            body = request(token, number, allow=self.rng.random() < 0.5)
            return _Sent(key, body["resource"], _decide_post(body))
        where = "emp" if self.rng.randrange(DENY_PERSIST_EVERY) == 0 else "drac"
        data = self.rng.randbytes(self.rng.randint(*self.load.persist_bytes))
        req = {
            "request_id": f"p-{number}",
            "principal": "drac",
            "action": "artifact.persist",
            "resource": f"artifacts/{where}/p-{number}.bin",
            "capability": token,
        }
        header = base64.urlsafe_b64encode(orjson.dumps(req)).rstrip(b"=").decode()
        return _Sent(key, req["resource"], _persist_post(header, data), data)

    def send(self, sent: _Sent) -> tuple[dict[str, Any] | None, bool]:
        """POST until an answer comes (None: a failure, kept, or no server any more).

        Returns:
            The decision and whether a connection error forced a retry.
        """
        retried = False
        while True:
            where = self.endpoint.wait()
            if where is None:
                return None, retried
            http = self.connect(*where)
            self.counts["attempts"] += 1
            try:
                answer = sent.post(http, where[1], sent.key)
            except httpx.TransportError:
                retried = True  # killed in flight: the same key again, on the next server
                time.sleep(_RETRY_PAUSE)
                continue
            if answer.status_code in (409, 429, 503):  # in flight, full, stopping: later
                if answer.status_code == 503 and self.load.outages is not None:
                    self.load.outages.refused(self.replica, 503, _problem_code(answer), answer.text)
                    if self.load.stopping.is_set():  # the test ends: a replica still refusing
                        self.failures.append(
                            f"key `{sent.key}`: replica {self.replica} still refuses as the test"
                            f" ends: {answer.text[:300]}"
                        )
                        return None, retried
                time.sleep(_RETRY_PAUSE)
                continue
            if answer.status_code != 200:
                self.failures.append(
                    f"key `{sent.key}`: `{answer.status_code}` {answer.text[:300]}"
                )
                return None, retried
            d = answer.json()
            if self.load.outages is not None and d.get("log_index") is None:
                if not self.unlogged(sent, d):
                    return None, retried
                if self.load.stopping.is_set():  # the test ends: a replica still refusing
                    self.failures.append(
                        f"key `{sent.key}`: replica {self.replica} still refuses as the test"
                        f" ends: {d.get('reasons')}"
                    )
                    return None, retried
                time.sleep(_RETRY_PAUSE)  # nothing was decided: the same key again, later
                continue
            return d, retried

    def unlogged(self, sent: _Sent, d: dict[str, Any]) -> bool:
        """A decision the server could not log: a DENY with its reason (noted), or a failure."""
        assert self.load.outages is not None
        reasons = d.get("reasons") or [{}]
        why = next((r for r in reasons if r.get("code") in OUTAGE_CODES), reasons[-1])
        code, message = str(why.get("code") or ""), str(why.get("message") or "")
        if d.get("effect") != "DENY" or not code or not message:
            self.failures.append(
                f"key `{sent.key}`: an answer without a log index must be a DENY with its"
                f" reason, got {d}"
            )
            return False
        self.load.outages.refused(self.replica, 200, code, message)
        return True

    def connect(self, generation: int, _url: str) -> httpx.Client:
        if self.http is None or generation != self.generation:
            if self.http is not None:
                self.http.close()  # its pool holds the killed server's connections
            self.http = httpx.Client(verify=self.ctx, timeout=60)
            self.generation = generation
        return self.http

    def accept(self, sent: _Sent, d: dict[str, Any], *, retried: bool) -> Ack | None:
        expected = "ALLOW" if sent.resource.startswith("artifacts/drac/") else "DENY"
        receipt = d.get("receipt") or {}
        if not isinstance(d.get("log_index"), int) or receipt.get("index") != d["log_index"]:
            self.failures.append(f"key `{sent.key}`: an answer without its log entry: {d}")
            return None
        outages = self.load.outages
        if outages is not None and expected == "ALLOW" and d.get("effect") == "DENY":
            reasons = d.get("reasons") or [{}]
            code = str(reasons[0].get("code") or "")
            if code in OUTAGE_CODES and d.get("decision_index") is None:
                outages.refused(  # a logged DENY: its client's answer, and a refusal
                    self.replica, 200, code, str(reasons[0].get("message")), logged=True
                )
                expected = "DENY"
        refused_write = (
            sent.data is not None
            and expected == "ALLOW"
            and d.get("effect") == "DENY"
            and isinstance(d.get("decision_index"), int)
            and isinstance(d.get("log_index"), int)
            and d["decision_index"] < d["log_index"] == receipt.get("index")
        )
        if refused_write:
            if not retried:  # only a write cut short by a kill is refused here
                self.failures.append(f"key `{sent.key}`: a write refused at once: {d}")
            self.counts["persists_refused"] += 1
            self.refused.append((sent.key, d["decision_index"], d["log_index"]))
            return None
        if d.get("effect") != expected or receipt.get("index") != d.get("log_index"):
            self.failures.append(f"key `{sent.key}`: expected a logged `{expected}`, got {d}")
            return None
        if d.get("replayed") is True:
            if not retried:
                self.failures.append(f"key `{sent.key}` sent once was answered from the log: {d}")
            self.counts["replayed"] += 1
            self.counts["replayed_after_kill"] += 1
            self.counts["persists_replayed"] += sent.data is not None
        persisted = None
        if sent.data is not None:
            persisted = self.persisted(sent, d)
            if persisted is None:
                return None
        ack = Ack(
            sent.key,
            expected,
            d["log_index"],
            receipt["leaf_hash"],
            receipt["tree_size"],
            receipt["checkpoint"],
            persisted,
        )
        self.acks.append(ack)
        if outages is not None:
            outages.logged(self.replica)
        return ack

    def persisted(self, sent: _Sent, d: dict[str, Any]) -> Persisted | None:
        """A persist's write as answered: written now, none (DENY), or replayed (no write)."""
        assert sent.data is not None
        write = d.get("write")
        if write is None:
            if d["effect"] == "ALLOW" and d.get("replayed") is not True:
                self.failures.append(f"key `{sent.key}`: an ALLOW persist without a write: {d}")
                return None
            return Persisted(sent.resource, sent.data, None, None)
        if d["effect"] != "ALLOW":
            self.failures.append(f"key `{sent.key}`: a write without an ALLOW: {d}")
            return None
        persisted = Persisted(
            sent.resource,
            sent.data,
            write.get("index"),
            (write.get("receipt") or {}).get("leaf_hash"),
        )
        said = (write.get("outcome"), write.get("digest"), write.get("size"))
        index = write.get("index")
        if (
            said != ("written", persisted.digest, len(sent.data))
            or not isinstance(index, int)
            or index <= d["log_index"]
            or (write.get("receipt") or {}).get("index") != index
        ):
            self.failures.append(
                f"key `{sent.key}`: expected `{persisted.digest}` ({len(sent.data)} bytes) written"
                f" after decision `{d['log_index']}`, got {write}"
            )
            return None
        return persisted

    def resend_lost(self) -> None:
        """Resend the keys whose answers were "lost", once the server was restarted."""
        keep = []
        for generation, sent, first in self.lost:
            if generation == self.endpoint.generation:
                keep.append((generation, sent, first))
                continue
            answer, _ = self.send(sent)
            if answer is None:
                continue
            self.counts["resent"] += 1
            self.counts["replayed"] += answer.get("replayed") is True
            self.counts["persists_replayed"] += (
                answer.get("replayed") is True and sent.data is not None
            )
            again = (answer.get("log_index"), (answer.get("receipt") or {}).get("leaf_hash"))
            if answer.get("replayed") is not True or again != (first.log_index, first.leaf_hash):
                self.failures.append(
                    f"key `{first.key}` resent after a restart: expected its first decision"
                    f" `{first.log_index}` replayed from the log, got {answer}"
                )
        self.lost = keep


class ClientLoad:
    """``clients`` client threads against :class:`Endpoint` (or several), until :meth:`stop`."""

    def __init__(
        self,
        prepared: Prepared,
        endpoint: Endpoint | Sequence[Endpoint],
        clients: int,
        seed: int,
        persist_bytes: tuple[int, int] = PERSIST_BYTES,
        *,
        outages: Outages | None = None,
    ) -> None:
        """``clients`` clients; client ``n`` asks ``endpoint`` (the ``n % k``-th of ``k``).

        With ``outages``, a decision the server could not log is a refusal noted there
        (the same key is sent again later), not a failure.
        """
        self.prepared = prepared
        self.endpoints = [endpoint] if isinstance(endpoint, Endpoint) else list(endpoint)
        self.outages = outages
        self.seed = seed
        self.persist_bytes = persist_bytes
        self.stopping = threading.Event()
        self.resumed = threading.Event()  # cleared while :meth:`paused`
        self.resumed.set()
        self._clients = [_Client(n, self) for n in range(clients)]
        self._threads = [
            threading.Thread(target=c.run, name=f"crash-client-{c.n}", daemon=True)
            for c in self._clients
        ]

    def start(self) -> None:
        """Start every client."""
        for thread in self._threads:
            thread.start()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """No client starts a request meanwhile (those in flight finish).

        For checks that ask the servers for every answer given since the last one: with
        the load running they compete with it for the cores, and each takes longer than
        the one before, as the answers given during it pile up for the next.
        """
        self.resumed.clear()
        try:
            yield
        finally:
            self.resumed.set()

    def stop(self, timeout: float = 120.0) -> None:
        """Let every client finish the request it is sending (the server must be up), then stop."""
        self.stopping.set()
        self.resumed.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for endpoint in self.endpoints:
            endpoint.close()
        for thread in self._threads:
            thread.join(5)
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"clients did not stop: {alive}")

    def acks(self) -> list[Ack]:
        """Every answer received so far (a snapshot)."""
        return [ack for c in self._clients for ack in list(c.acks)]

    def refused(self) -> list[tuple[str, int, int]]:
        """Every refused write answered so far: (key, decision index, refusal index)."""
        return [r for c in self._clients for r in list(c.refused)]

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
        persisted = [a.persisted for a in acks if a.persisted is not None]
        report.persists_acknowledged = len(persisted)
        report.persists_allowed = sum(a.persisted is not None and a.effect == "ALLOW" for a in acks)
        report.persists_written = sum(p.write_index is not None for p in persisted)
        for c in self._clients:
            for name, value in c.counts.items():
                setattr(report, name, getattr(report, name) + value)
