"""The protocols' ledger: every DRAC, EMP and CSP state change is a log entry first.

Protocol state (DRAC sessions and catalog, EMP keys and outputs, CSP seals,
resumes, revocations and rollbacks) is *derived from the log*: each change
is one canonical JSON entry appended to the tamper-evident log, and only
after the append returns is it applied in memory (INV-9). A small index
(which log entries are protocol records, and each one's receipt) lets boot
replay them without reading the whole log; entries appended since the
index last followed the log are found by :meth:`ProtocolLedger.catch_up`.

Appends of protocol records are serialised, so the index's high-water mark
never passes a record it has not indexed; if indexing fails the ledger goes
*stale* and refuses every further record until SOP is booted again
(fail-closed, INV-2).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import orjson

from sop_verified.core.contracts import ensure, invariant, require
from sop_verified.core.persistence.entries import EffectOutcome, effect_entry
from sop_verified.core.ports import Clock
from sop_verified.core.refusals import logged_refusal
from sop_verified.core.request import Decision, Permission, Reason, Request
from sop_verified.errors import IntegrityError, StorageError
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "ADMIN_OPS",
    "RECORD_MARKS",
    "RECORD_TYPES",
    "REFUSED_TYPE",
    "ProtocolLedger",
    "ReceiptAppender",
    "RecordIndex",
    "RecordSink",
    "receipt_from_json",
    "record_kind",
]

_log = logging.getLogger(__name__)

RECORD_TYPES = frozenset({"drac.phase", "drac.artifact", "emp.output", "csp.seal", "csp.resume"})
"""Entry ``type`` values that change protocol state."""

ADMIN_OPS = frozenset(
    {"emp.key.register", "emp.key.revoke", "csp.snapshot.revoke", "csp.rollback.authorize"}
)
"""Admin-plane entries (``type`` = ``admin``) that change protocol state."""

REFUSED_TYPE = "protocol.refused"
"""A refusal of a protocol effect or a diagnosis of a denial: logged, changes nothing."""

RECORD_MARKS = (b'"type":"drac.', b'"type":"emp.', b'"type":"csp.', b'"op":"emp.', b'"op":"csp.')
"""Every protocol record's payload holds one of these (a store may pre-filter by them)."""
_CATCH_UP_CHUNK = 5_000


class ReceiptAppender(Protocol):
    """The log, as the ledger needs it."""

    def log_size(self) -> int:
        """Number of entries in the log."""

    def append_receipt(self, payload: bytes) -> Receipt:
        """Durably append one entry; return its receipt; raise StorageError on failure."""


class RecordIndex(Protocol):
    """Which log entries are protocol records (storage port; derived from the log)."""

    def add(self, index: int, kind: str, receipt: bytes, *, indexed_to: int) -> None:
        """Index the record at ``index`` and raise the high-water mark to ``indexed_to``."""

    def indexed_to(self) -> int:
        """Every record below this log index is indexed."""

    def set_indexed_to(self, index: int) -> None:
        """Raise the high-water mark (never lowers it)."""

    def records(self) -> list[tuple[int, str, bytes, bytes]]:
        """Every indexed record as ``(index, kind, payload from the log, receipt json)``."""


class RecordSink(Protocol):
    """A protocol's state: applies its records in log order."""

    def check(self, entry: Mapping[str, Any]) -> None:
        """Raise IntegrityError if ``entry`` cannot be applied to the state as it is now."""

    def apply(self, index: int, entry: Mapping[str, Any], payload: bytes, receipt: Receipt) -> None:
        """Apply one logged record; raise IntegrityError if it contradicts the state."""


@ensure(lambda result: result is None or result in RECORD_TYPES or result in ADMIN_OPS)
def record_kind(payload: bytes) -> str | None:
    """The record kind of a log entry (its protocol ``type`` or admin ``op``), or None.

    Args:
        payload: a log entry's bytes.

    Returns:
        The kind; None for every entry that is not a protocol record.
    """
    if not any(mark in payload for mark in RECORD_MARKS):
        return None  # the common case, decided without parsing
    entry = _load(payload)
    if entry is None:
        return None
    kind = entry.get("type")
    if kind == "admin":
        op = entry.get("op")
        return op if isinstance(op, str) and op in ADMIN_OPS else None
    return kind if isinstance(kind, str) and kind in RECORD_TYPES else None


@ensure(lambda result: result.index >= 0)
def receipt_from_json(raw: bytes) -> Receipt:
    """Parse a stored receipt (``Receipt.to_dict`` as JSON).

    Raises:
        IntegrityError: the stored receipt is malformed.
    """
    try:
        data = orjson.loads(raw)
        checkpoint = data["checkpoint"]
        receipt = Receipt(
            int(data["index"]),
            bytes.fromhex(data["leaf_hash"]),
            int(data["tree_size"]),
            checkpoint if isinstance(checkpoint, str) else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(f"a stored protocol receipt is malformed: {exc}") from None
    if receipt.index < 0 or len(receipt.leaf_hash) != 32:
        raise IntegrityError(f"a stored protocol receipt is malformed: index `{receipt.index}`")
    return receipt


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        entry = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return entry if isinstance(entry, dict) else None


@invariant(lambda self: self._sinks, "records go somewhere")
class ProtocolLedger:
    """Appends protocol records to the log, indexes them, and applies them to the state."""

    def __init__(
        self,
        *,
        log: ReceiptAppender,
        index: RecordIndex,
        sinks: Mapping[str, RecordSink],
        now: Clock,
    ) -> None:
        """Wire the ledger.

        Args:
            log: the tamper-evident log.
            index: the record index.
            sinks: the state each record kind goes to (by kind).
            now: the clock.

        Raises:
            ValueError: a record kind has no sink.
        """
        missing = (RECORD_TYPES | ADMIN_OPS) - set(sinks)
        if missing:
            raise ValueError(f"no sink for record kinds `{sorted(missing)}`")
        self._log = log
        self._index = index
        self._sinks = dict(sinks)
        self._now = now
        self._lock = threading.Lock()
        self._stale = False

    @ensure(lambda result: result >= 0)
    def log_size(self) -> int:
        """The number of entries in the log the ledger appends to."""
        return self._log.log_size()

    @require(lambda size: size >= 0)
    def followed_to(self, size: int) -> None:
        """Every record below ``size`` is indexed: raise the index's mark (a clean stop).

        Only while the ledger is not stale: every record SOP appends goes through
        :meth:`record`, which indexes it, so when no indexing failed, nothing below
        the log's end is missing. A stale ledger leaves the mark for the next
        boot's catch-up. A failure to raise it only costs that catch-up time.
        """
        with self._lock:
            if self._stale:
                return
            try:
                self._index.set_indexed_to(size)
            except StorageError as exc:
                _log.warning("the protocol index mark stays where it was: %s", exc)

    @property
    def stale(self) -> bool:
        """True once indexing failed: every further record is refused until the next boot."""
        return self._stale

    @require(lambda entry: entry.get("type") in RECORD_TYPES or entry.get("op") in ADMIN_OPS)
    @ensure(lambda result: result.index >= 0)
    def record(self, entry: dict[str, Any]) -> Receipt:
        """Append one protocol record, index it, then apply it (INV-9: logged before applied).

        Args:
            entry: the record (canonical JSON is made of it).

        Returns:
            The record's receipt.

        Raises:
            StorageError: the ledger is stale, or the append or the index failed.
            IntegrityError: the record contradicts the state (nothing is logged).
        """
        kind = str(entry["op"] if entry.get("type") == "admin" else entry["type"])
        payload = canonical_json(entry)
        with self._lock:
            if self._stale:  # spec: INV-2 — a ledger that lost track refuses everything
                raise StorageError("the protocol ledger is stale; boot SOP again")
            self._sinks[kind].check(entry)  # a record the state would refuse is never logged
            receipt = self._log.append_receipt(payload)  # spec: INV-9 — the log first
            try:
                receipt_json = canonical_json(receipt.to_dict())
                self._index.add(receipt.index, kind, receipt_json, indexed_to=receipt.index + 1)
            except BaseException as exc:
                self._stale = True  # spec: INV-2 — stop here; the next boot indexes and applies it
                raise StorageError(
                    f"record `{receipt.index}` is logged but not indexed: `{exc}`; "
                    "it takes effect at the next boot, and until then every record is refused"
                ) from exc
            self._sinks[kind].apply(receipt.index, entry, payload, receipt)
        return receipt

    @require(lambda reasons: len(reasons) > 0)
    @ensure(lambda result: not result.allowed, "a refusal is a DENY")
    def refuse(
        self, protocol: str, decision: Decision, request: Request, reasons: Sequence[Reason]
    ) -> Decision:
        """Log a ``protocol.refused`` entry and answer DENY with ``reasons`` first.

        Args:
            protocol: ``drac``, ``emp`` or ``csp``.
            decision: the kernel's decision (ALLOW refused its effect, or a DENY diagnosed).
            request: its request.
            reasons: why.

        Returns:
            The DENY; ``log_index``/``receipt`` are the refusal's (None when it could
            not be logged; the reasons then say so), ``decision_index`` the
            decision's.
        """
        said = tuple(reasons)
        entry = {
            "type": REFUSED_TYPE,
            "protocol": protocol,
            "time": self._now(),
            "decision_index": decision.log_index,
            "request_id": request.request_id,
            "reasons": [r.to_dict() for r in said],
        }
        kept = tuple(r for r in decision.reasons if decision.effect is Permission.DENY)
        return logged_refusal(
            decision,
            request,
            said,
            lambda: self._log.append_receipt(canonical_json(entry)),
            kept=kept,  # spec: INV-2 — the refusal stands even unlogged (logged_refusal)
        )

    @require(lambda decision: decision.allowed and decision.log_index is not None)
    @ensure(lambda result: not result.allowed, "a refusal is a DENY")
    def refuse_effect(
        self, decision: Decision, request: Request, why: Reason, *, now: int
    ) -> Decision:
        """Refuse the effect of a logged ALLOW persist decision: nothing is written.

        The refusal is a ``persist.effect`` entry with outcome ``refused`` that
        closes the pending decision, so boot repair has nothing to redo.

        Args:
            decision: the kernel's ALLOW.
            request: its request (a persist action).
            why: the reason.
            now: the clock reading.

        Returns:
            The DENY; if the refusal could not be logged, the reasons say so and
            boot repair aborts the pending decision.
        """
        entry = effect_entry(
            op="write",
            outcome=EffectOutcome.REFUSED,
            time=now,
            decision_index=decision.log_index,  # closes the pending decision: no effect follows
            request_id=request.request_id,
            reasons=(why,),
        )
        # spec: INV-2 — the refusal stands; boot aborts the pending decision if it is unlogged
        return logged_refusal(decision, request, (why,), lambda: self._log.append_receipt(entry))

    @require(lambda size: size >= 0)
    @ensure(lambda result: result >= 0)
    def catch_up(
        self,
        read_entries: Callable[[int, int], list[tuple[int, bytes, bytes]]],
        size: int,
        checkpoint: str | None,
    ) -> int:
        """Index the protocol records appended since the index last followed the log.

        Args:
            read_entries: reads log entries ``[start, end)`` as (index, leaf hash, payload).
            size: the log's size now.
            checkpoint: the latest checkpoint note (the receipts of records found here).

        Returns:
            How many records were found.

        Raises:
            StorageError: the log or the index failed.
        """
        found = 0
        start = self._index.indexed_to()
        while start < size:
            end = min(size, start + _CATCH_UP_CHUNK)
            for index, leaf, payload in read_entries(start, end):
                kind = record_kind(payload)
                if kind is not None:
                    receipt = Receipt(index, leaf, size, checkpoint)
                    self._index.add(index, kind, canonical_json(receipt.to_dict()), indexed_to=0)
                    found += 1
            self._index.set_indexed_to(end)
            start = end
        return found

    @ensure(lambda result: result >= 0)
    def replay(self) -> int:
        """Apply every indexed record to the state, in log order (boot).

        Returns:
            How many records were applied.

        Raises:
            IntegrityError: a record is malformed or contradicts the state before it.
            StorageError: the index failed.
        """
        rows = self._index.records()
        for index, kind, payload, receipt_json in rows:
            entry = _load(payload)
            if entry is None or record_kind(payload) != kind:
                raise IntegrityError(f"log entry `{index}` is indexed as `{kind}` but is not one")
            receipt = receipt_from_json(receipt_json)
            leaf = hashlib.sha256(b"\x00" + payload).digest()
            if receipt.index != index or receipt.leaf_hash != leaf:  # spec: INV-11
                raise IntegrityError(
                    f"protocol record `{index}`: the log entry hashes to leaf `{leaf.hex()}`,"
                    f" but its receipt names entry `{receipt.index}` with leaf"
                    f" `{receipt.leaf_hash.hex()}`: the entry or the receipt was altered"
                )
            self._sinks[kind].apply(index, entry, payload, receipt)
        return len(rows)
