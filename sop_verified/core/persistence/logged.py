"""Log entries read back as evidence: proved included under the signed checkpoint first.

The persistence index and the pending-effects journal are projections of the
log that live in the database, and the database is writable by the attacker
SOP defends against (DESIGN.md §7). So a read, and boot repair, take the
facts they act on from the log entry itself, and only after proving that the
entry *is* the log's: its leaf hash ``SHA-256(0x00 || payload)`` is computed
here from the payload (the stored leaf hash is not trusted) and verified by an
RFC 9162 inclusion proof against the root of the latest signed checkpoint the
opened log holds in memory. That root was checked against its Ed25519
signature when the log was opened and has only been extended by SOP since; the
proof's nodes come from the database, but a forged node cannot lead to that
root without a SHA-256 collision. The proof costs one tile read per level not
in the in-memory frontier (a few tiles at most), which is why it is done per
read instead of re-hashing anything larger. A reader of many consecutive
entries (the event bus) uses :func:`proved_entries`, which checks a whole
range against the same root with one hash per entry.

:func:`authenticated_entry` returns the parsed entry or raises
:class:`~sop_verified.errors.IntegrityError` naming the log index and what
was expected and found.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from sop_verified.core.contracts import ensure, require
from sop_verified.core.persistence.entries import EFFECT_TYPE, EffectOutcome
from sop_verified.core.persistence.ports import EffectLog
from sop_verified.errors import IntegrityError, SOPError, StorageError
from sop_verified.storage.persist_index import ObjectRecord
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.key_chain import ROTATION_MARK, Rotation, parse_rotation
from sop_verified.tools.merkle import verify_inclusion
from sop_verified.tools.tlog import TransparencyLog

__all__ = [
    "LoggedObject",
    "authenticated_entry",
    "logged_object",
    "proved_entries",
    "proved_entry",
    "proved_rotations",
]

RANGE_CHUNK = 1024
"""The most entries :func:`proved_entries` reads and checks at once (bounds its memory)."""


@require(lambda index: type(index) is int, helper=True)
@ensure(lambda result: isinstance(result, dict), helper=True)
def authenticated_entry(log: EffectLog, index: int, *, what: str) -> dict[str, Any]:
    """The entry at ``index``, parsed, once proved included under the latest signed checkpoint.

    Args:
        log: the log (its opened :class:`~sop_verified.tools.tlog.TransparencyLog`).
        index: the entry's log index, as a database row names it (untrusted).
        what: what the entry should be, for messages (``the effect entry``).

    Returns:
        The entry's JSON object.

    Raises:
        IntegrityError: no signed checkpoint covers ``index``, the payload is
            not the one the signed tree holds at ``index``, or it is not a JSON
            object.
        StorageError: the database failed (or lost the row).
    """
    return proved_entry(log.opened, index, what=what)


@require(lambda index: type(index) is int, helper=True)
@ensure(lambda result: isinstance(result, dict), helper=True)
def proved_entry(tlog: TransparencyLog, index: int, *, what: str) -> dict[str, Any]:
    """:func:`authenticated_entry` on an opened log itself (a reader that never appends).

    Args:
        tlog: the opened log; its latest signed checkpoint is what the entry is proved under.
        index: the entry's log index (untrusted).
        what: what the entry should be, for messages.

    Returns:
        The entry's JSON object.

    Raises:
        IntegrityError: no signed checkpoint covers ``index``, the payload is
            not the one the signed tree holds at ``index``, or it is not a JSON
            object.
        StorageError: the database failed (or lost the row).
    """
    checkpoint = tlog.checkpoint  # one object: its size and root belong together
    if checkpoint is None:  # fail closed: no signed root, nothing to prove against
        raise IntegrityError(
            f"{what} at log index `{index}` cannot be checked: the log is unsigned"
        )
    size = checkpoint.size
    if not 0 <= index < size:
        raise IntegrityError(
            f"{what} is named at log index `{index}`, "
            f"but the signed checkpoint covers `[0, {size})`"
        )
    try:
        payload = tlog.entry(index)
        leaf = hashlib.sha256(b"\x00" + payload).digest()  # spec: INV-5 — from the payload itself
        verify_inclusion(leaf, index, size, tlog.inclusion_proof(index, size), checkpoint.root_hash)
    except StorageError:
        raise  # the database failed: the caller refuses (INV-2), no evidence either way
    except SOPError as exc:  # VerificationError, IntegrityError (a missing tile), InputError
        raise IntegrityError(
            f"{what} stored at log index `{index}` is not the entry the signed checkpoint"
            f" (size `{size}`, root `{checkpoint.root_hash.hex()}`) holds there: {exc}"
        ) from None
    return _json_object(payload, index, what)


@require(lambda start, end: 0 <= start <= end, "a range of log indexes", helper=True)
@ensure(lambda start, end, result: len(result) == end - start, helper=True)
def proved_entries(
    tlog: TransparencyLog, start: int, end: int, *, what: str
) -> list[dict[str, Any]]:
    """:func:`proved_entry` for every entry of ``[start, end)``, at the cost of one range.

    The payloads are read in one query per :data:`RANGE_CHUNK` entries; their leaf
    hashes, computed here, and the ``O(log n)`` stored nodes around the range give the
    tree's root (:meth:`~sop_verified.tools.tlog.TransparencyLog.root_from_range`),
    which must equal the signed checkpoint's. That is one hash per entry and node of
    the range instead of an inclusion proof (and its tile reads) per entry; forging
    any payload of the range, or any node, would take a SHA-256 collision, as it
    would against the proofs. When the roots differ, the entries are proved one by
    one so that the error names the first bad index, as :func:`proved_entry` does.

    Args:
        tlog: the opened log; its latest signed checkpoint is what the range is proved under.
        start: the first log index.
        end: one past the last; at most the signed size.

    Returns:
        The entries' JSON objects, in index order.

    Raises:
        IntegrityError: the signed checkpoint does not cover the range, an entry is not
            the one the signed tree holds at its index (none of the range is returned),
            or one is not a JSON object.
        StorageError: the database failed (or lost a row).
    """
    checkpoint = tlog.checkpoint  # one object: its size and root belong together
    if start == end:
        return []
    if checkpoint is None or end > checkpoint.size:
        return [proved_entry(tlog, i, what=what) for i in range(start, end)]  # its refusal
    out: list[dict[str, Any]] = []
    for low in range(start, end, RANGE_CHUNK):
        high = min(low + RANGE_CHUNK, end)
        try:
            payloads = tlog.entries(low, high)
            leaves = [hashlib.sha256(b"\x00" + p).digest() for p in payloads]  # spec: INV-5
            matches = tlog.root_from_range(low, leaves, checkpoint.size) == checkpoint.root_hash
        except StorageError:
            raise  # the database failed: the caller refuses (INV-2), no evidence either way
        except SOPError:  # a missing tile or row: let the per-entry proofs say where
            matches = False
        if not matches:
            for index in range(low, high):  # the first that does not verify raises, naming it
                proved_entry(tlog, index, what=what)
            raise IntegrityError(  # every entry proved alone, yet not the range: stored nodes
                f"{what}s at log indexes `[{low}, {high})` do not give the signed root"
                f" (size `{checkpoint.size}`, root `{checkpoint.root_hash.hex()}`)"
            )
        out.extend(
            _json_object(p, i, what) for i, p in zip(range(low, high), payloads, strict=True)
        )
    return out


def _json_object(payload: bytes, index: int, what: str) -> dict[str, Any]:
    try:
        entry = orjson.loads(payload)
    except orjson.JSONDecodeError:
        entry = None
    if not isinstance(entry, dict):
        raise IntegrityError(f"{what} at log index `{index}` is not a JSON object")
    return entry


@dataclass(frozen=True, slots=True)
class LoggedObject:
    """What the log's effect entry at ``index`` says an object's content is."""

    index: int
    digest_hex: str
    size: int


def _show(values: tuple[Any, ...]) -> str:
    return "/".join(str(v) for v in values)


@ensure(lambda record, result: result.index == record.effect_index, helper=True)
def logged_object(log: EffectLog, scope: str, rel: str, record: ObjectRecord) -> LoggedObject:
    """The effect entry an index row names, proved in the log and checked against the row.

    The index row is only a pointer: the entry must be a ``written`` write
    effect of ``scope``, and every field the row repeats must be the entry's.

    Raises:
        IntegrityError: the entry is not in the signed log, is another kind of
            entry, or disagrees with the row (the field, both values and the index named).
        StorageError: the database failed.
    """
    at = record.effect_index
    what = f"the effect entry of `{rel}` in scope `{scope}`"
    entry = authenticated_entry(log, at, what=what)  # spec: INV-11 — the log decides
    kind = tuple(entry.get(k) for k in ("type", "op", "outcome", "scope"))
    want = (EFFECT_TYPE, "write", str(EffectOutcome.WRITTEN), scope)
    if kind != want:
        raise IntegrityError(
            f"the index row for `{rel}` in scope `{scope}` names log index `{at}`,"
            f" which holds `{_show(kind)}`, expected `{_show(want)}`"
            " (type/op/outcome/scope)"
        )
    row: dict[str, Any] = {
        "decision_index": record.decision_index,
        "scope": record.scope,
        "name": record.name,
        "stored": record.stored,
        "digest": record.digest,
        "size": record.size,
        "time": record.created_at,
    }
    for k, v in row.items():  # spec: INV-4 — the row must be the log's record of this object
        logged = entry.get(k)
        if logged != v or type(logged) is not type(v):
            raise IntegrityError(
                f"the index row for `{rel}` in scope `{scope}` disagrees with the"
                f" effect entry at log index `{at}`: `{k}` is `{v!s:.200}` in the row,"
                f" `{logged!s:.200}` in the log"
            )
    return LoggedObject(at, str(entry["digest"]).removeprefix("sha256:"), int(entry["size"]))


@require(lambda start, end: 0 <= start <= end, "a range of entries", helper=True)
@ensure(
    lambda start, end, result: (
        all(start <= r.index < end for r in result)
        and [r.index for r in result] == sorted(r.index for r in result)
    ),
    "announced in the range, in log order",
    helper=True,
)
def proved_rotations(tlog: TransparencyLog, start: int, end: int) -> list[Rotation]:
    """The checkpoint-key rotations announced in entries ``[start, end)``, each proved.

    A checkpoint signed before a rotation is signed by the key the rotation retired,
    which only the log announces: a reader that holds the current key learns the
    earlier ones here, each from an entry proved under the latest signed checkpoint.

    Args:
        tlog: the opened log.
        start: the first entry to search.
        end: the end of the search (at most the signed checkpoint's size).

    Returns:
        The rotations, in log order.

    Raises:
        IntegrityError: an announcement is not the entry the signed tree holds.
        InputError: a proved announcement is malformed.
        StorageError: the database failed.
    """
    out = []
    for index, _untrusted in tlog.entries_containing(start, end, [ROTATION_MARK]):
        entry = proved_entry(tlog, index, what="the key rotation")  # spec: INV-5 — proved,
        rotation = parse_rotation(index, canonical_json(entry))  # then read
        if rotation is not None:
            out.append(rotation)
    return out
