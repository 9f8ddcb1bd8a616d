"""Idempotency keys: a retry gets the first answer, never a second decision or effect.

Every state-changing call of the bridge plane may carry an ``Idempotency-Key``
header (the IETF httpapi idempotency-key draft). The first call with a key is
carried out and its answer kept; a retry with the same key and the same
request gets that answer again, byte for byte, and SOP decides nothing; the
same key with another request is refused (422, ``idempotency_key_reused``); a
retry while the first call is still running is refused (409,
``idempotency_key_in_flight``). Keys belong to the authenticated principal:
two clients cannot collide.

A key lives in two places. While the server runs, its answer is kept in
memory (the last :data:`MAX_ANSWERS`). And the key is written into the
decision's own log entry (``transport.idempotency_key``, see
:mod:`sop_verified.core.transport`), so the log itself says which keys were
used: at start the server reads them back from the log, and a retry after a
crash or a restart is answered from the authenticated log entry (its
decision, index and receipt; ``replayed`` is true) instead of being decided a
second time.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sop_verified.errors import SOPError, StateMovedError

__all__ = [
    "MAX_ANSWERS",
    "Answer",
    "IdempotencyKeys",
    "KeyInFlightError",
    "KeyReusedError",
]

MAX_ANSWERS = 100_000
"""Answers kept in memory; older keys are answered from the log."""

_NEEDLE = b'"idempotency_key"'


class KeyInFlightError(SOPError):
    """The first call with this key is still running (HTTP 409)."""


class KeyReusedError(SOPError):
    """The key was used for another request (HTTP 422)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer as first given: status, media type, body."""

    status: int
    media_type: str
    body: bytes


class IdempotencyKeys:
    """Keys per principal: the first answer in memory, the log entries they were logged in."""

    def __init__(self, *, max_answers: int = MAX_ANSWERS) -> None:
        self._lock = threading.Lock()
        self._answers: collections.OrderedDict[tuple[str, str], tuple[str, Answer]] = (
            collections.OrderedDict()
        )
        self._running: dict[tuple[str, str], str] = {}
        self._logged: dict[tuple[str, str], int] = {}
        self._max = max_answers

    def load(self, entries: Sequence[tuple[int, bytes, bytes]]) -> int:
        """Remember the keys the log's entries carry; returns how many.

        Args:
            entries: ``(index, leaf hash, payload)`` of entries that may carry a key
                (the log's ``log_entries_containing`` with :meth:`needles`). The
                payloads are not trusted here: a replay re-reads its entry with an
                inclusion proof (:func:`replay_entry`).
        """
        found = 0
        for index, _leaf, payload in entries:
            try:
                entry = orjson.loads(payload)
                transport = entry["transport"]
                # no principal: a call the transport authenticated nobody for (--unsafe-no-tls),
                # kept under "-" as the edge keeps it (no principal name can be "-")
                key = (transport.get("principal") or "-", transport["idempotency_key"])
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue
            if isinstance(key[0], str) and isinstance(key[1], str):
                with self._lock:
                    self._logged.setdefault(key, index)  # the first use wins
                found += 1
        return found

    def foreign(self, entries: Sequence[tuple[int, bytes, bytes]]) -> None:
        """Another replica's entries, read under the head lock as a batch of this one is sequenced.

        Their keys are remembered (:meth:`load`). One that a call of this replica is
        still running with means that call's decision may be in the batch: it must not
        be logged, since the other replica's is the key's first. So the batch is given
        back and decided again; the kernel then finds the key decided
        (:meth:`logged`) and logs nothing for it, and the edge answers with the first.

        Raises:
            StateMovedError: a key of these entries is one a call here still runs with.
        """
        self.load(entries)
        with self._lock:
            running = set(self._running)
            taken = sorted(k for k in running if k in self._logged)
        if taken:
            raise StateMovedError(
                f"idempotency key `{taken[0][1]}` was decided by another replica while a call"
                " with it ran here: deciding the batch again"
            )

    @staticmethod
    def needles() -> list[bytes]:
        """What a log entry holding a key contains (the store's prefilter)."""
        return [_NEEDLE]

    def begin(self, principal: str, key: str, fingerprint: str) -> Answer | int | None:
        """Start a call with ``key``.

        Returns:
            The first answer (replay it), the log index of the first decision (a
            key from before this start: answer from the log), or None (carry the
            call out, then :meth:`finish` or :meth:`abandon`).

        Raises:
            KeyInFlightError: the first call with the key still runs.
            KeyReusedError: the key was used for another request.
        """
        slot = (principal, key)
        with self._lock:
            if slot in self._running:
                raise KeyInFlightError(
                    f"a call with idempotency key `{key}` is still running; retry when it is done"
                )
            kept = self._answers.get(slot)
            if kept is not None:
                if kept[0] != fingerprint:
                    raise KeyReusedError(_reused(key))
                self._answers.move_to_end(slot)
                return kept[1]
            logged = self._logged.get(slot)
            if logged is not None:
                return logged
            self._running[slot] = fingerprint
            return None

    def finish(self, principal: str, key: str, answer: Answer, log_index: int | None) -> None:
        """Keep the first answer for ``key`` (and the log index its decision has)."""
        slot = (principal, key)
        with self._lock:
            fingerprint = self._running.pop(slot, None)
            if fingerprint is None:
                return
            self._answers[slot] = (fingerprint, answer)
            if log_index is not None:
                self._logged.setdefault(slot, log_index)
            while len(self._answers) > self._max:
                self._answers.popitem(last=False)

    def logged(self, principal: str, key: str) -> int | None:
        """The log index of the decision first made with ``key``, if the log holds one."""
        with self._lock:
            return self._logged.get((principal, key))

    def remember(self, principal: str, key: str, log_index: int) -> None:
        """Note that ``key``'s decision was logged at ``log_index`` (a batch item's key)."""
        with self._lock:
            self._logged.setdefault((principal, key), log_index)

    def abandon(self, principal: str, key: str) -> None:
        """Forget a call that changed nothing (refused before any decision): a retry runs it."""
        with self._lock:
            self._running.pop((principal, key), None)


def _reused(key: str) -> str:
    return f"idempotency key `{key}` was used for another request; use a new key for a new request"


def check_replay(entry: dict[str, Any], principal: str, key: str, request: dict[str, Any]) -> None:
    """Check that a logged entry is the first call of (``principal``, ``key``) for ``request``.

    Raises:
        KeyReusedError: the entry's request is another one.
        SOPError: the entry does not carry the key (the index came from a planted row).
    """
    transport = entry.get("transport") or {}
    said = transport.get("principal") or "-", transport.get("idempotency_key")  # "-": see load
    if said != (principal, key):
        raise SOPError(f"log entry does not carry idempotency key `{key}` of `{principal}`")
    if entry.get("request") != request:
        raise KeyReusedError(_reused(key))
