"""The crash test's checks on effects (:mod:`serve_crash`): the log, the index, the stored bytes.

Read while no server runs (between a kill and the restart, and at the end),
from the database read-only, so a check sees what the kill left, before any
boot repair:

- **no effect without its logged ALLOW** (INV-9): every ``persist.effect``
  entry names, by ``decision_index``, a lower ``decision`` entry that is an
  ALLOW of a persist action, for the resource and the digest the effect
  stored; every small blob kept in the database (``persist_inline``) is
  under a ``written`` effect entry, and at the end every file under the scope
  roots is the ``stored`` path of one;
- **no idempotency key has two effects**: the ``written`` or ``unchanged``
  effects, grouped by the idempotency key of their decision (its
  ``transport.idempotency_key``), are at most one a key, and at most one a
  decision;
- **no acknowledged write is lost**: each persist a client was told ALLOW has
  its one ``written`` effect, of its bytes' digest, under the decision it was
  acknowledged with (at the index the answer's ``write`` said), and a DENY
  has none.

``sop state check`` (the index rows against the log) runs beside these, in
:mod:`serve_crash`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg
from crash_clients import Ack
from psycopg import sql

from sop_verified.core.request import PERSIST_ACTIONS
from sop_verified.nexus.config import load_config
from sop_verified.storage.sqlite_log import SQLiteLogReader

__all__ = ["EffectCounts", "LogRows", "check_effects", "read_log", "read_pg_log", "stored_files"]

_DB = "sop.db"
_EFFECT = "persist.effect"
_HELD = ("written", "unchanged")


@dataclass
class EffectCounts:
    """What the last effect check found in the log."""

    effects: int = 0
    written: int = 0
    unchanged: int = 0
    refused: int = 0
    aborted: int = 0
    keys: int = 0
    inline_blobs: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LogRows:
    """The log's entries as JSON objects, by index; the inline blobs' effect indexes.

    Read from PostgreSQL (:func:`read_pg_log`), also each entry's leaf hash (hex) and
    the head row's size.
    """

    entries: dict[int, dict[str, Any]]
    inline: tuple[int, ...]
    leaves: dict[int, str] = field(default_factory=dict)
    head: int | None = None


def read_log(data_dir: Path) -> LogRows:
    """Every log entry and every ``persist_inline`` row, read-only (no server may run)."""
    reader = SQLiteLogReader(data_dir / _DB)
    try:
        entries = {index: orjson.loads(payload) for index, _, payload in reader.iter_entries(4096)}
    finally:
        reader.close()
    db = sqlite3.connect(f"file:{data_dir / _DB}?mode=ro", uri=True)
    try:
        inline = tuple(int(r[0]) for r in db.execute("SELECT effect_index FROM persist_inline"))
    finally:
        db.close()
    return LogRows(entries, inline)


def read_pg_log(dsn: str, schema: str) -> LogRows:
    """Every log entry with its leaf hash, the head and every ``persist_inline`` row of a
    PostgreSQL schema, in one snapshot (read-only: replicas may be writing meanwhile)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        rows = conn.execute("SELECT idx, leaf_hash, payload FROM log_entries ORDER BY idx")
        entries, leaves = {}, {}
        for index, leaf, payload in rows:
            entries[int(index)] = orjson.loads(bytes(payload))
            leaves[int(index)] = bytes(leaf).hex()
        head = conn.execute("SELECT size FROM log_head WHERE id = 1").fetchone()
        inline = conn.execute("SELECT effect_index FROM persist_inline").fetchall()
    return LogRows(
        entries, tuple(int(r[0]) for r in inline), leaves, None if head is None else int(head[0])
    )


def _key(entry: dict[str, Any]) -> str | None:
    key = (entry.get("transport") or {}).get("idempotency_key")
    return key if isinstance(key, str) else None


def _effect_problem(index: int, effect: dict[str, Any], rows: LogRows) -> str | None:
    """Why the effect at ``index`` is not backed by its logged ALLOW (None: it is)."""
    at = effect.get("decision_index")
    if effect.get("op") != "write":
        return None  # a refused read: its ALLOW is the record, nothing was written
    if at is None:  # a refusal of a decision that was not pending: nothing written
        return None if effect.get("outcome") == "refused" else "no `decision_index`"
    decision = rows.entries.get(at) if isinstance(at, int) else None
    if decision is None or not at < index:
        return f"its decision `{at}` is not a lower log entry"
    request = decision.get("request") or {}
    said = (decision.get("type"), decision.get("effect"), request.get("action") in PERSIST_ACTIONS)
    if said != ("decision", "ALLOW", True):
        return f"entry `{at}` is not an ALLOW of a persist action: {said}"
    if effect.get("outcome") not in _HELD:
        return None
    resource = str(request.get("resource", ""))
    if request.get("content_digest") != effect.get("digest") or not resource.endswith(
        "/" + str(effect.get("name"))
    ):
        return (
            f"it stored `{effect.get('name')}` `{effect.get('digest')}`; its decision `{at}`"
            f" allowed `{resource}` `{request.get('content_digest')}`"
        )
    return None


def stored_files(data_dir: Path) -> dict[str, list[str]]:
    """The files under each scope's root, by scope name, as paths below the root."""
    out: dict[str, list[str]] = {}
    for scope in load_config(data_dir).scope:
        root = data_dir / "scopes" / scope.root
        found = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else []
        out[scope.name] = [p.relative_to(root).as_posix() for p in found]
    return out


def check_effects(
    rows: LogRows, acks: Sequence[Ack], *, files: dict[str, list[str]] | None = None
) -> EffectCounts:
    """Check the log's effects against its decisions, the kept blobs and the acknowledged persists.

    Args:
        rows: the log read after a kill (or at the end).
        acks: the answers the clients held when the server went down.
        files: :func:`stored_files` (None: not checked; a kill between a large write and
            its effect entry leaves a file that boot repair removes).

    Returns:
        The counts, with every failure found.
    """
    found = EffectCounts()
    held: dict[int, dict[str, Any]] = {}  # effect index -> entry, written or unchanged
    by_decision: dict[int, list[int]] = {}
    outcomes: dict[int, list[tuple[int, str]]] = {}  # decision index -> its effects, any outcome
    for index, entry in rows.entries.items():
        if entry.get("type") != _EFFECT:
            continue
        found.effects += 1
        outcome = str(entry.get("outcome"))
        setattr(found, outcome, getattr(found, outcome, 0) + 1)
        why = _effect_problem(index, entry, rows)
        if why is not None:  # spec: INV-9 — an effect without its logged ALLOW
            found.failures.append(f"effect entry `{index}` ({outcome}) has no logged ALLOW: {why}")
        if entry.get("op") == "write" and isinstance(entry.get("decision_index"), int):
            outcomes.setdefault(entry["decision_index"], []).append((index, outcome))
        if entry.get("op") == "write" and outcome in _HELD:
            held[index] = entry
            by_decision.setdefault(entry["decision_index"], []).append(index)
    _one_effect_each(rows, by_decision, found)
    _kept_blobs(rows, held, files, found)
    _acknowledged(acks, by_decision, held, outcomes, found)
    return found


def _one_effect_each(rows: LogRows, by_decision: dict[int, list[int]], found: EffectCounts) -> None:
    keys: Counter[str] = Counter()
    for decision, effects in by_decision.items():
        if len(effects) > 1:
            found.failures.append(f"decision `{decision}` has {len(effects)} effects: {effects}")
        key = _key(rows.entries.get(decision, {}))
        if key is not None:
            keys[key] += len(effects)
    found.keys = len(keys)
    for key, n in keys.items():
        if n > 1:
            found.failures.append(f"idempotency key `{key}` has {n} effects")


def _kept_blobs(
    rows: LogRows,
    held: dict[int, dict[str, Any]],
    files: dict[str, list[str]] | None,
    found: EffectCounts,
) -> None:
    found.inline_blobs = len(rows.inline)
    for index in rows.inline:
        if held.get(index, {}).get("outcome") != "written":
            found.failures.append(f"a blob is kept under `{index}`, not a written effect entry")
    if files is None:
        return
    found.files = sum(len(v) for v in files.values())
    stored = {(e.get("scope"), e.get("stored")) for e in held.values()}
    for scope, paths in files.items():
        for path in paths:
            if (scope, path) not in stored:
                found.failures.append(f"the file `{path}` of `{scope}` has no written effect entry")


def _acknowledged(
    acks: Sequence[Ack],
    by_decision: dict[int, list[int]],
    held: dict[int, dict[str, Any]],
    outcomes: dict[int, list[tuple[int, str]]],
    found: EffectCounts,
) -> None:
    for ack in acks:
        persisted = ack.persisted
        if persisted is None:
            continue
        effects = by_decision.get(ack.log_index, [])
        if ack.effect == "DENY":
            if effects:
                found.failures.append(f"key `{ack.key}` was denied but has effects {effects}")
            continue
        got = [(i, held[i].get("outcome"), held[i].get("digest")) for i in effects]
        expected_index = persisted.write_index
        if (
            len(got) != 1
            or got[0][1:] != ("written", persisted.digest)
            or (expected_index is not None and got[0][0] != expected_index)
        ):
            found.failures.append(
                f"key `{ack.key}`: acknowledged ALLOW `{ack.log_index}` of `{persisted.digest}`"
                f" (write `{expected_index}`); the log holds {got} written or unchanged, and its"
                f" effects are {outcomes.get(ack.log_index, [])}"
            )
