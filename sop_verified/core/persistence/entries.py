"""The persistence controller's log entries, and how the index reads the log.

Three kinds of entry matter to persistence (all canonical JSON, RFC 8785):

- ``decision`` (written by the kernel): an ALLOW of a persist action opens a
  *pending* effect, keyed by the decision's log index;
- ``persist.effect`` (written here, after the effect): ``outcome`` is
  ``written`` (an object was stored), ``unchanged`` (it already was),
  ``refused`` (a rule said no; nothing was written) or ``aborted`` (boot found
  the effect never completed and cleaned up); a write effect closes its
  pending decision;
- ``persist.tombstone`` (written here, before a retention deletion).

:func:`index_entries` is the storage's
:data:`~sop_verified.storage.persist_index.EntryIndexer`: a pure function from
log entries to the :class:`~sop_verified.storage.persist_index.IndexOps` they
imply (data, no connection). The backend puts them in the batch's
:class:`~sop_verified.storage.unit_of_work.UnitOfWork` and applies it in the
log's own transaction, so this never raises; an entry it cannot read is not a
persistence entry.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, require
from sop_verified.core.request import PERSIST_ACTIONS, Reason
from sop_verified.storage.persist_index import (
    EffectRecord,
    IndexOps,
    ObjectRecord,
    PendingDecision,
    TombstoneRecord,
)
from sop_verified.tools.canonical import canonical_json

__all__ = [
    "EFFECT_TYPE",
    "TOMBSTONE_TYPE",
    "EffectOutcome",
    "effect_entry",
    "index_entries",
    "request_key",
    "tombstone_entry",
]

EFFECT_TYPE = "persist.effect"
TOMBSTONE_TYPE = "persist.tombstone"
_DECISION_MARK = b'"type":"decision"'
_ALLOW_MARK = b'"effect":"ALLOW"'
_PERSIST_MARKS = tuple(f'"action":"{a}"'.encode() for a in sorted(PERSIST_ACTIONS))
_EFFECT_MARK = f'"type":"{EFFECT_TYPE}"'.encode()
_TOMBSTONE_MARK = f'"type":"{TOMBSTONE_TYPE}"'.encode()


class EffectOutcome(enum.StrEnum):
    """What became of an ALLOW persist decision (a ``persist.effect`` entry's ``outcome``)."""

    WRITTEN = "written"
    UNCHANGED = "unchanged"
    REFUSED = "refused"
    ABORTED = "aborted"


@require(lambda op: op in ("write", "read"), helper=True)
@ensure(lambda result: result.startswith(b"{"), helper=True)
def effect_entry(
    *,
    op: str,
    outcome: EffectOutcome,
    time: int,
    decision_index: int | None,
    request_id: str | None,
    scope: str = "",
    name: str = "",
    stored: str = "",
    digest: str = "",
    size: int = 0,
    reasons: Sequence[Reason] = (),
    repaired: bool = False,
) -> bytes:
    """The canonical ``persist.effect`` entry.

    Args:
        op: ``write`` or ``read`` (only refused reads are logged: the ALLOW is their record).
        outcome: what happened.
        time: the clock reading.
        decision_index: the ALLOW it carries out; None for a refusal of a decision
            that was not pending (it closes nothing).
        request_id: the request's id.
        scope: the scope's name ("" when unknown).
        name: the path below the scope's prefix.
        stored: the path below the scope root.
        digest: ``sha256:<hex>`` of the content.
        size: its size in bytes.
        reasons: why, for refusals and aborts.
        repaired: boot recorded it after a crash.

    Returns:
        Canonical JSON bytes.
    """
    entry: dict[str, Any] = {
        "type": EFFECT_TYPE,
        "op": op,
        "outcome": str(outcome),
        "time": time,
        "decision_index": decision_index,
        "request_id": request_id,
        "scope": scope,
        "name": name,
        "stored": stored,
        "digest": digest,
        "size": size,
    }
    if reasons:
        entry["reasons"] = [r.to_dict() for r in reasons]
    if repaired:
        entry["repaired"] = True
    return canonical_json(entry)


@require(lambda rule: rule in ("keep", "max_age"))
@ensure(lambda result: result.startswith(b"{"))
def tombstone_entry(obj: ObjectRecord, *, rule: str, time: int) -> bytes:
    """The canonical ``persist.tombstone`` entry for deleting ``obj`` by retention."""
    return canonical_json(
        {
            "type": TOMBSTONE_TYPE,
            "effect_index": obj.effect_index,
            "scope": obj.scope,
            "name": obj.name,
            "version": obj.version,
            "stored": obj.stored,
            "digest": obj.digest,
            "rule": rule,
            "time": time,
        }
    )


def _load(payload: bytes) -> dict[str, Any] | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _pending(index: int, payload: bytes) -> PendingDecision | None:
    data = _load(payload)
    if data is None or data.get("type") != "decision" or data.get("effect") != "ALLOW":
        return None
    request = data.get("request")
    if not isinstance(request, dict) or request.get("action") not in PERSIST_ACTIONS:
        return None
    return PendingDecision(index, request_key(request))


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


def _effect(index: int, payload: bytes) -> EffectRecord | None:
    data = _load(payload)
    if data is None or data.get("type") != EFFECT_TYPE or data.get("op") != "write":
        return None
    texts = [data.get(k) for k in ("outcome", "scope", "name", "stored", "digest")]
    size, time = _int(data.get("size")), _int(data.get("time"))
    if not all(isinstance(t, str) for t in texts) or size is None or time is None:
        return None
    outcome, scope, name, stored, digest = (str(t) for t in texts)
    return EffectRecord(
        index, _int(data.get("decision_index")), outcome, scope, name, stored, digest, size, time
    )


def _tombstone(index: int, payload: bytes) -> TombstoneRecord | None:
    data = _load(payload)
    if data is None or data.get("type") != TOMBSTONE_TYPE:
        return None
    target = _int(data.get("effect_index"))
    return None if target is None else TombstoneRecord(index, target)


@ensure(lambda result: result.startswith(b"{"), helper=True)
def request_key(request: dict[str, Any]) -> bytes:
    """How the index keys a logged request: sorted-key JSON (orjson), compared byte for byte.

    Both sides (the logged request, parsed back, and the request handed to the
    controller, as ``Request.to_dict()``) are serialised the same way, so
    equal bytes mean the same request (types included: ``true`` is not ``1``).
    """
    return orjson.dumps(request, option=orjson.OPT_SORT_KEYS)


@ensure(
    lambda entries, result: (
        len(result.pending) + len(result.effects) + len(result.tombstones) <= len(entries)
    ),
    "at most one index row per entry",
    helper=True,
)
def index_entries(entries: Sequence[tuple[int, bytes]]) -> IndexOps:
    """What the given log entries change in the persistence index (never raises).

    A decision whose effect entry is among the same entries (a small write
    recorded with its decision, ADR 0007) would open a pending row that the
    effect closes at once: it is left out, and its request is not parsed.

    Args:
        entries: ``(index, payload)`` in log order.

    Returns:
        New pending decisions, effects and tombstones, each in log order.
    """
    candidates: list[tuple[int, bytes]] = []
    effects: list[EffectRecord] = []
    tombstones: list[TombstoneRecord] = []
    for index, payload in entries:
        if _ALLOW_MARK in payload and _DECISION_MARK in payload:
            if any(mark in payload for mark in _PERSIST_MARKS):
                candidates.append((index, payload))  # else not a persist decision: skipped
        elif _EFFECT_MARK in payload:
            e = _effect(index, payload)
            if e is not None:
                effects.append(e)
        elif _TOMBSTONE_MARK in payload:
            t = _tombstone(index, payload)
            if t is not None:
                tombstones.append(t)
    closed = {e.decision_index for e in effects if e.decision_index is not None}
    opened_here = {index for index, _ in candidates}
    pending = [
        p
        for index, payload in candidates
        if index not in closed and (p := _pending(index, payload)) is not None
    ]
    closes = tuple(sorted(closed - opened_here))  # rows opened by earlier entries
    return IndexOps(tuple(pending), tuple(effects), tuple(tombstones), closes)
