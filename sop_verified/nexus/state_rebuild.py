"""Derived state rebuilt from the log: where a tampered store differs, and its repair (INV-11).

The signed log is the only source of truth (DESIGN.md §7). Every derived
table is a projection of it, or holds content the log commits to by digest:

- the persistence index: re-derived by the index's own code from the
  copied log (:func:`~sop_verified.core.persistence.entries.index_entries`);
- capabilities and revocations: from the ``capability.admitted``,
  ``capability.attenuated`` and ``capability.revoked`` admin entries;
- policy sets: from ``policy.activate`` entries, the document taken from
  the old store only when it hashes to the logged digest;
- protocol records: every entry :func:`~sop_verified.protocols.ledger.record_kind`
  recognises, with the receipt its batch's checkpoint gives;
- small blobs: taken from the old store only when their SHA-256 is the
  digest the effect entry logged;
- verdicts (not in the log): taken from the old store only when their own
  MAC (the verdict seal) verifies; a deleted verdict is re-proved when next
  asked for.

:func:`rebuild` writes that projection into a new database, sealed as it is
written; :func:`diff` compares it with the old store and names each row that
differs with the log entry it comes from. ``sop state check`` and the boot's
failure path use both to say where a seal mismatch is; ``sop state repair``
puts the rebuilt database in place and logs that it did.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from sop_verified.core.persistence.entries import index_entries
from sop_verified.core.proofgate.sealed import SealedVerdictStore, derive_seal_key
from sop_verified.core.proofgate.store import InMemoryVerdictStore
from sop_verified.errors import IntegrityError, PolicyError, StorageError
from sop_verified.protocols.ledger import record_kind
from sop_verified.storage.sqlite import SQLiteBackend
from sop_verified.storage.sqlite_db import connect_read_only
from sop_verified.storage.sqlite_seal import check_state_file
from sop_verified.storage.unit_of_work import KeptBlob
from sop_verified.tools.canonical import canonical_json
from sop_verified.tools.tlog_store import Receipt

__all__ = [
    "LOCATE_LIMIT",
    "MAX_SHOWN",
    "Mismatch",
    "Rebuilt",
    "StateCheck",
    "check_store",
    "diff",
    "locate",
    "rebuild",
]

MAX_SHOWN = 20
"""Mismatches a diff keeps (the count goes on)."""

_ADMIN = b'"type":"admin"'
_BOOT = b'"type":"boot"'
_CHUNK = 20_000
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One row where the store and the log's projection differ."""

    table: str
    row: str
    log_index: int | None
    expected: str
    found: str

    def message(self) -> str:
        """One line: the table, the row, the log entry, what was expected and found."""
        where = "" if self.log_index is None else f" (log entry {self.log_index})"
        return (
            f"table `{self.table}`, row `{self.row}`{where}: expected {self.expected},"
            f" found {self.found}"
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "table": self.table,
            "row": self.row,
            "log_index": self.log_index,
            "expected": self.expected,
            "found": self.found,
        }


@dataclass
class Rebuilt:
    """What :func:`rebuild` made: the new database and what it could not take from the old."""

    path: Path
    log_size: int
    dropped: dict[str, list[str]] = field(default_factory=dict)
    """Rows of the old store that did not authenticate, by table (verdicts, documents, blobs)."""
    sources: dict[tuple[str, str], int] = field(default_factory=dict)
    """The log index each rebuilt capability, revocation and policy row comes from."""
    config: str | None = None
    """The configuration digest the log last names (a READY boot or ``config.accept``)."""


def _entries(src: sqlite3.Connection, size: int) -> Iterator[tuple[int, bytes, bytes]]:
    at = 0
    while at < size:
        rows = src.execute(
            "SELECT idx, leaf_hash, payload FROM log_entries WHERE idx >= ? AND idx < ?"
            " ORDER BY idx",
            (at, min(size, at + _CHUNK)),
        ).fetchall()
        yield from ((int(i), bytes(h), bytes(p)) for i, h, p in rows)
        at += _CHUNK


def _open_ro(path: Path) -> sqlite3.Connection:
    return connect_read_only(path, "read-only")


def rebuild(old: Path, target: Path, master: bytes, progress: Progress | None = None) -> Rebuilt:
    """Write the projection of ``old``'s log into a new database at ``target``.

    The caller audits the log first (a projection of a tampered log proves
    nothing). ``target`` must not exist.

    Args:
        old: The data directory's database.
        target: Where the rebuilt database goes.
        master: The capability MAC key (the state and verdict keys derive from it).
        progress: Called with ``(step, done, total)``.

    Returns:
        The rebuilt database and what of the old store it dropped.

    Raises:
        StorageError: a read or write failed.
    """
    if target.exists():
        raise StorageError(f"`{target}` already exists; remove it or choose another path")
    store = SQLiteBackend.open(target, state_key=master)
    try:
        size = store.copy_log(old, None if progress is None else lambda d, t: progress("log", d, t))
        store.set_entry_indexer(index_entries)  # the persistence index, by its own code
        out = Rebuilt(target, size)
        src = _open_ro(old)
        try:
            _project_entries(store, src, size, out)
            _restore_blobs(store, src, out)
            _restore_verdicts(store, src, master, out)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read `{old}`: {exc}") from exc
        finally:
            src.close()
        store.verify_state(size)  # the rebuilt store is sealed exactly
    finally:
        store.close()
    return out


def _checkpoints(src: sqlite3.Connection) -> list[tuple[int, str]]:
    return [(int(s), str(n)) for s, n in src.execute("SELECT size, note FROM log_checkpoints")]


def _project_entries(
    store: SQLiteBackend, src: sqlite3.Connection, size: int, out: Rebuilt
) -> None:
    """Capabilities, revocations, policy sets and protocol records from the log, in log order."""
    documents: dict[str, bytes] = {}
    for digest, document in src.execute("SELECT digest, document FROM policy_sets"):
        if isinstance(document, bytes) and _policy_digest(document) == digest:
            documents[str(digest)] = document
    covering = sorted(_checkpoints(src))
    at = 0
    for index, leaf, payload in _entries(src, size):
        kind = record_kind(payload)
        if kind is not None:
            while at < len(covering) and covering[at][0] <= index:
                at += 1
            tree_size, note = covering[at] if at < len(covering) else (size, None)
            receipt = canonical_json(Receipt(index, leaf, tree_size, note).to_dict())
            store.records.add(index, kind, receipt, indexed_to=0)
        if _ADMIN in payload:
            _admin(store, index, orjson.loads(payload), documents, out)
        elif _BOOT in payload:
            entry = orjson.loads(payload)
            if entry.get("type") == "boot":
                out.config = entry["manifest"]["config_digest"]
    store.records.set_indexed_to(size)
    if out.config is not None:
        store.accept_config(out.config)


def _admin(
    store: SQLiteBackend, index: int, entry: dict[str, Any], docs: dict[str, bytes], out: Rebuilt
) -> None:
    op = entry.get("op")
    if op in ("capability.admitted", "capability.attenuated"):
        claims = entry["capability"]
        store.capabilities.save_capability(
            claims["id"], claims["parent_id"], canonical_json(claims)
        )
        out.sources[("capabilities", claims["id"])] = index
    elif op == "capability.revoked":
        times = entry.get("at") or {}
        for cap_id in entry["revoked"]:
            if ("revocations", cap_id) not in out.sources:  # the first revocation's time
                store.capabilities.save_revocation(cap_id, int(times.get(cap_id, entry["time"])))
                out.sources[("revocations", cap_id)] = index
    elif op == "config.accept":
        out.config = entry["config_digest"]
    elif op == "policy.activate":
        digest = entry["policy_digest"]
        document = docs.get(digest)
        if document is None:  # the log names a set whose document nobody kept intact
            out.dropped.setdefault("policy_sets", []).append(f"{digest} (log entry {index})")
            return
        store.policies.save_policy_set(
            digest, document, int(entry.get("activated_at", entry["time"]))
        )
        out.sources[("policy_sets", digest)] = index


def _policy_digest(document: bytes) -> str | None:
    from sop_verified.core.policy import PolicySet  # noqa: PLC0415 — the policy engine is heavy

    try:
        return PolicySet.from_canonical(document).digest
    except PolicyError:  # a document that does not load has no digest
        return None


def _restore_blobs(store: SQLiteBackend, src: sqlite3.Connection, out: Rebuilt) -> None:
    """The old store's small blobs whose bytes hash to the digest their effect entry logged."""
    kept = []
    rows = src.execute(
        "SELECT i.effect_index, i.data FROM persist_inline i ORDER BY i.effect_index"
    ).fetchall()
    for effect_index, data in rows:
        record = store.persist.object_at(int(effect_index))
        if record is None or not isinstance(data, bytes):
            out.dropped.setdefault("persist_inline", []).append(str(effect_index))
            continue
        if "sha256:" + hashlib.sha256(data).hexdigest() != record.digest:
            out.dropped.setdefault("persist_inline", []).append(str(effect_index))
            continue
        kept.append(KeptBlob(int(effect_index), record.scope, record.stored, data))
    if kept:
        store.restore_blobs(kept)


def _restore_verdicts(
    store: SQLiteBackend, src: sqlite3.Connection, master: bytes, out: Rebuilt
) -> None:
    """The old store's verdicts whose own seal (MAC) verifies; the rest are dropped."""
    key = derive_seal_key(master)
    for digest, record in src.execute("SELECT digest, record FROM verdicts ORDER BY digest"):
        if not isinstance(digest, str) or not isinstance(record, bytes):
            out.dropped.setdefault("verdicts", []).append(repr(digest))
            continue
        probe = InMemoryVerdictStore()
        probe.put_once(digest, record)
        try:
            SealedVerdictStore(probe, key).get(digest)
        except IntegrityError:
            out.dropped.setdefault("verdicts", []).append(digest)
            continue
        store.verdicts.put_once(digest, record)


# ---- the diff -------------------------------------------------------------------------------
_KEYS: dict[str, tuple[str, ...]] = {
    "capabilities": ("id",),
    "revocations": ("id",),
    "policy_sets": ("digest",),
    "verdicts": ("digest",),
    "persist_pending": ("decision_index",),
    "persist_effects": ("effect_index",),
    "persist_tombstones": ("effect_index",),
    "persist_purge": ("tombstone_index",),
    "persist_versions": ("scope", "name"),
    "persist_inline": ("effect_index",),
    "protocol_records": ("log_index",),
}
"""The tables a diff compares row by row, and each one's key. The two marks
(``persist_state``, ``protocol_state``) are left to the seal: they say how far
an index has followed the log, which a rebuild sets to the end."""

_LOG_INDEX = {
    "persist_pending": "decision_index",
    "persist_effects": "effect_index",
    "persist_tombstones": "tombstone_index",
    "persist_purge": "tombstone_index",
    "persist_inline": "effect_index",
    "protocol_records": "log_index",
}


def _table(db: sqlite3.Connection, table: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    db.row_factory = sqlite3.Row
    try:
        rows = db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 — constant names
    finally:
        db.row_factory = None
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        values = dict(row)
        if table == "protocol_records":  # the receipt's checkpoint depends on when it was taken
            values["receipt"] = _receipt_leaf(values["receipt"])
        if table == "policy_sets":  # the order of activation rows is SQLite's, not the log's
            values.pop("seq")
        out[tuple(values[k] for k in _KEYS[table])] = values
    return out


def _receipt_leaf(receipt: object) -> str:
    try:
        return str(orjson.loads(receipt)["leaf_hash"])  # type: ignore[arg-type]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"unreadable receipt {receipt!r:.40}"


def _show(values: dict[str, Any] | None) -> str:
    if values is None:
        return "no row"
    shown = {k: (f"<{len(v)} bytes>" if isinstance(v, bytes) else v) for k, v in values.items()}
    return orjson.dumps(shown, default=str).decode()


def diff(old: Path, rebuilt: Rebuilt) -> tuple[list[Mismatch], int]:
    """Every row where ``old`` differs from the projection in ``rebuilt``, in log order.

    Returns:
        The first :data:`MAX_SHOWN` mismatches, sorted by the log index they
        concern, and how many there are in all.

    Raises:
        StorageError: either database cannot be read.
    """
    a, b = _open_ro(old), _open_ro(rebuilt.path)
    found: list[Mismatch] = []
    try:
        for table in _KEYS:
            have, want = _table(a, table), _table(b, table)
            for key in sorted(set(have) | set(want), key=repr):
                got, expected = have.get(key), want.get(key)
                if got == expected:
                    continue
                if table == "persist_purge" and got is None:
                    continue  # a purge already done leaves the queue; the log does not say when
                found.append(_mismatch(table, key, got, expected, rebuilt))
    except sqlite3.Error as exc:
        raise StorageError(f"cannot compare derived state: {exc}") from exc
    finally:
        a.close()
        b.close()
    found.sort(key=lambda m: (m.log_index is None, m.log_index or 0, m.table, m.row))
    return found[:MAX_SHOWN], len(found)


def _mismatch(
    table: str,
    key: tuple[Any, ...],
    got: dict[str, Any] | None,
    expected: dict[str, Any] | None,
    rebuilt: Rebuilt,
) -> Mismatch:
    row = "/".join(str(k) for k in key)
    column = _LOG_INDEX.get(table)
    index: int | None = None
    if column is not None:
        source = expected if expected is not None else got
        value = None if source is None else source.get(column)
        index = value if isinstance(value, int) else None
    else:
        index = rebuilt.sources.get((table, row))
    if table == "verdicts" and got is not None and row in rebuilt.dropped.get("verdicts", []):
        return Mismatch(table, row, None, "a record whose verdict seal verifies", "an altered one")
    return Mismatch(table, row, index, _show(expected), _show(got))


# ---- what boot, `sop state check` and `sop state repair` call -------------------------------
LOCATE_LIMIT = 100_000
"""Largest log boot rebuilds to locate a mismatch (beyond it, ``sop state check`` does)."""


def locate(db: Path, master: bytes, log_size: int) -> str:
    """Where the store differs from the log's projection, as one sentence for a boot failure.

    Rebuilds into a temporary directory (the failure path only; bounded by
    :data:`LOCATE_LIMIT` entries, past which it says what to run instead).
    """
    if log_size > LOCATE_LIMIT:
        return f"run `sop state check` to locate the row (the log holds {log_size:,} entries)"
    with tempfile.TemporaryDirectory(prefix="sop-locate-") as tmp:
        try:
            rebuilt = rebuild(db, Path(tmp) / "rebuilt.db", master)
            shown, total = diff(db, rebuilt)
        except (StorageError, IntegrityError) as exc:
            return f"the rows could not be located: {exc}"
    if not shown:
        return "no row differs from the log's projection (an index mark was changed)"
    more = f" (and {total - 1} more)" if total > 1 else ""
    return f"first mismatch: {shown[0].message()}{more}"


@dataclass
class StateCheck:
    """What ``sop state check`` found."""

    log_ok: bool
    log_detail: str
    seal: str
    mismatches: list[Mismatch] = field(default_factory=list)
    total: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when the log verifies, the seal matches and no row differs."""
        return self.log_ok and self.seal == "ok" and self.total == 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form."""
        return {
            "ok": self.ok,
            "log_verified": self.log_ok,
            "log": self.log_detail,
            "seal": self.seal,
            "mismatches": [m.to_dict() for m in self.mismatches],
            "total_mismatches": self.total,
            "unauthenticated_rows": {t: len(v) for t, v in self.dropped.items()},
        }


def check_store(db: Path, master: bytes, log_size: int, work: Path) -> StateCheck:
    """Check the seal, then compare every row with the log's projection (built under ``work``).

    The caller has verified the log (``log_size`` entries).
    """
    check = StateCheck(True, f"{log_size} entries verified", "ok")
    try:
        check_state_file(db, master, log_size)
    except IntegrityError as exc:
        check.seal = str(exc)
    rebuilt = rebuild(db, work / "rebuilt.db", master)
    check.mismatches, check.total = diff(db, rebuilt)
    check.dropped = rebuilt.dropped
    return check
