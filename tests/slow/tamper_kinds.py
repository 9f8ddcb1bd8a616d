"""The tamperings of the campaign (:mod:`tamper_campaign`): what the attacker of INV-11 does.

He can write ``sop.db`` and every file of the data directory except ``keys/``
(which he can neither read nor write). On a table he opens the database with
plain ``sqlite3`` (no SOP functions), drops the triggers in his way, edits
rows and then *puts the triggers back* from their own DDL, so that a check
for missing triggers cannot be what catches him: only the seal and the log
can. On a file he edits the bytes.

Each tampering returns a :class:`Tampering` that says exactly what it did
(row, column, offset, lengths: enough to reproduce it), or ``noop`` with the
reason when it could not change anything (an empty table, two identical rows,
an insertion every constraint of the table refuses). A no-op is proved, not
assumed: the table's rows (or the file's bytes) are compared before and after,
and a tampering that left them equal is rolled back and reported as a no-op.
"""

from __future__ import annotations

import random
import sqlite3
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FILE_KINDS", "TABLE_KINDS", "Tampering", "tamper_file", "tamper_table"]

TABLE_KINDS = ("flip", "delete", "insert", "swap", "truncate")
"""Byte flip in a cell, deletion of a row, insertion of a row, swap of two rows' non-key
contents, deletion of the last k rows."""

FILE_KINDS = ("flip", "delete", "insert", "swap", "truncate")
"""Byte flip, deletion of the file, insertion of bytes, swap of contents with another file,
truncation."""

_ATTEMPTS = 8  # constraint-refused edits retried on another row/cell before giving up


@dataclass
class Tampering:
    """What one tampering did; ``noop`` holds the reason when it changed nothing."""

    detail: dict[str, Any] = field(default_factory=dict)
    noop: str | None = None


# ---- tables -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    name: str
    cols: tuple[str, ...]
    types: tuple[str, ...]
    key: tuple[str, ...]  # primary-key columns; empty when the key is the implicit rowid
    unique: tuple[str, ...]  # the key and every column of a UNIQUE index

    @property
    def nonkey(self) -> tuple[str, ...]:
        return tuple(c for c in self.cols if c not in self.key)


def _table(db: sqlite3.Connection, name: str) -> _Table:
    info = db.execute(f'PRAGMA table_info("{name}")').fetchall()
    cols = tuple(r[1] for r in info)
    types = tuple(str(r[2]).upper() for r in info)
    key = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
    unique = set(key)
    for idx in db.execute(f'PRAGMA index_list("{name}")').fetchall():
        if idx[2]:  # unique
            unique.update(r[2] for r in db.execute(f'PRAGMA index_info("{idx[1]}")'))
    return _Table(name, cols, types, key, tuple(c for c in cols if c in unique))


def _snapshot(db: sqlite3.Connection, t: _Table) -> list[tuple[object, ...]]:
    """The table's rows as a sorted multiset of (type, value) pairs (storage order ignored)."""
    sel = ", ".join(f'typeof("{c}"), CAST("{c}" AS BLOB)' for c in t.cols)
    rows = db.execute(f'SELECT {sel} FROM "{t.name}"').fetchall()
    return sorted(rows, key=repr)


def _rowids(db: sqlite3.Connection, t: _Table) -> list[int]:
    return [r[0] for r in db.execute(f'SELECT rowid FROM "{t.name}" ORDER BY rowid')]


def _flip_bytes(data: bytes, rng: random.Random) -> tuple[bytes, dict[str, Any]]:
    if not data:
        b = rng.randrange(256)
        return bytes([b]), {"offset": 0, "was_empty": True}
    off = rng.randrange(len(data))
    mask = rng.randrange(1, 256)
    out = bytearray(data)
    out[off] ^= mask
    return bytes(out), {"offset": off, "mask": mask, "length": len(data)}


def _flip_value(value: object, decl: str, rng: random.Random) -> tuple[object, dict[str, Any]]:
    """``value`` with one byte flipped, keeping its storage class (TEXT stays TEXT)."""
    if isinstance(value, bool):  # pragma: no cover - sqlite never returns bool
        raise TypeError("bool")
    if isinstance(value, int):
        raw, info = _flip_bytes(struct.pack(">q", value), rng)
        return struct.unpack(">q", raw)[0], info
    if isinstance(value, float):
        raw, info = _flip_bytes(struct.pack(">d", value), rng)
        return struct.unpack(">d", raw)[0], info
    if isinstance(value, str):
        raw, info = _flip_bytes(value.encode("utf-8", "surrogatepass"), rng)
        return _Text(raw), info
    if isinstance(value, bytes):
        return _flip_bytes(value, rng)
    # NULL: give it a value of the declared type
    return _random_value(decl, rng), {"was_null": True}


class _Text(bytes):
    """Bytes to be stored as TEXT (possibly not UTF-8: the attacker writes what he likes)."""


def _bind(values: list[object]) -> tuple[str, list[object]]:
    marks = ["CAST(? AS TEXT)" if isinstance(v, _Text) else "?" for v in values]
    return ", ".join(marks), [bytes(v) if isinstance(v, _Text) else v for v in values]


def _random_value(decl: str, rng: random.Random) -> object:
    if "INT" in decl:
        return rng.randrange(-(2**31), 2**31)
    if "BLOB" in decl:
        return rng.randbytes(rng.randrange(1, 64))
    return rng.randbytes(rng.randrange(1, 24)).hex()


def _changed_key(value: object, decl: str, rng: random.Random) -> object:
    if isinstance(value, int):
        return value + rng.randrange(1, 1000)
    if isinstance(value, str):
        return value + "-" + rng.randbytes(3).hex()
    return _random_value(decl, rng)


def _row(db: sqlite3.Connection, t: _Table, rowid: int) -> list[object]:
    cols = ", ".join(f'"{c}"' for c in t.cols)
    return list(db.execute(f'SELECT {cols} FROM "{t.name}" WHERE rowid = ?', (rowid,)).fetchone())


def _set(
    db: sqlite3.Connection, t: _Table, rowid: int, cols: list[str], vals: list[object]
) -> None:
    sets = ", ".join(
        f'"{c}" = {"CAST(? AS TEXT)" if isinstance(v, _Text) else "?"}'
        for c, v in zip(cols, vals, strict=True)
    )
    _, params = _bind(vals)
    db.execute(f'UPDATE "{t.name}" SET {sets} WHERE rowid = ?', [*params, rowid])


def _t_flip(db: sqlite3.Connection, t: _Table, rng: random.Random) -> Tampering:
    ids = _rowids(db, t)
    if not ids:
        return Tampering(noop="the table is empty")
    for _ in range(_ATTEMPTS):
        rowid = rng.choice(ids)
        i = rng.randrange(len(t.cols))
        old = _row(db, t, rowid)[i]
        new, info = _flip_value(old, t.types[i], rng)
        try:
            _set(db, t, rowid, [t.cols[i]], [new])
        except sqlite3.IntegrityError:
            continue
        return Tampering({"rowid": rowid, "column": t.cols[i], **info})
    return Tampering(noop="every flip tried broke a constraint of the table")


def _t_delete(db: sqlite3.Connection, t: _Table, rng: random.Random) -> Tampering:
    ids = _rowids(db, t)
    if not ids:
        return Tampering(noop="the table is empty")
    rowid = rng.choice(ids)
    db.execute(f'DELETE FROM "{t.name}" WHERE rowid = ?', (rowid,))
    return Tampering({"rowid": rowid, "last": rowid == ids[-1]})


def _t_insert(db: sqlite3.Connection, t: _Table, rng: random.Random) -> Tampering:
    ids = _rowids(db, t)
    cols = ", ".join(f'"{c}"' for c in t.cols)
    for _ in range(_ATTEMPTS):
        if ids and rng.random() < 0.5:
            src = rng.choice(ids)
            vals = _row(db, t, src)
            keyed = t.unique or t.cols  # no declared key: change every column a little
            for c in keyed:
                i = t.cols.index(c)
                vals[i] = _changed_key(vals[i], t.types[i], rng)
            how: dict[str, Any] = {"copy_of_rowid": src, "changed": list(keyed)}
        else:
            vals = [_random_value(d, rng) for d in t.types]
            how = {"random": True}
        marks, params = _bind(vals)
        try:
            cur = db.execute(f'INSERT INTO "{t.name}" ({cols}) VALUES ({marks})', params)
        except sqlite3.IntegrityError:
            continue
        return Tampering({"rowid": cur.lastrowid, **how})
    return Tampering(noop="every insertion tried was refused by the table's constraints")


def _t_swap(db: sqlite3.Connection, t: _Table, rng: random.Random) -> Tampering:
    ids = _rowids(db, t)
    cols = list(t.nonkey)
    if len(ids) < 2 or not cols:
        return Tampering(noop="fewer than two rows, or no column outside the key")
    for _ in range(_ATTEMPTS):
        a, b = rng.sample(ids, 2)
        ra, rb = _row(db, t, a), _row(db, t, b)
        va = [ra[t.cols.index(c)] for c in cols]
        vb = [rb[t.cols.index(c)] for c in cols]
        held = [c for c in cols if c in t.unique]  # moved aside first, or UNIQUE refuses
        try:
            if held:
                marks = [_random_value(t.types[t.cols.index(c)], rng) for c in held]
                _set(db, t, a, held, marks)
            _set(db, t, b, cols, [_keep_text(v) for v in va])
            _set(db, t, a, cols, [_keep_text(v) for v in vb])
        except sqlite3.IntegrityError:
            continue
        return Tampering({"rowids": [a, b], "columns": cols})
    return Tampering(noop="every swap tried broke a constraint of the table")


def _keep_text(v: object) -> object:
    return _Text(v.encode("utf-8", "surrogatepass")) if isinstance(v, str) else v


def _t_truncate(db: sqlite3.Connection, t: _Table, rng: random.Random) -> Tampering:
    ids = _rowids(db, t)
    if not ids:
        return Tampering(noop="the table is empty")
    k = rng.randrange(1, len(ids) + 1)
    db.execute(f'DELETE FROM "{t.name}" WHERE rowid >= ?', (ids[-k],))
    return Tampering({"deleted_last": k, "of": len(ids)})


_TABLE_OPS = {
    "flip": _t_flip,
    "delete": _t_delete,
    "insert": _t_insert,
    "swap": _t_swap,
    "truncate": _t_truncate,
}


def tamper_table(db_path: Path, table: str, kind: str, rng: random.Random) -> Tampering:
    """Apply ``kind`` to ``table`` as the attacker: triggers dropped, edited, triggers restored.

    Everything runs in one transaction; when the table's rows are the same
    multiset afterwards, it is rolled back and the tampering is a no-op.
    """
    db = sqlite3.connect(str(db_path), isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        triggers = [
            (r[0], r[1])
            for r in db.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' ORDER BY rowid"
            )
        ]
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        t = _table(db, table)
        before = _snapshot(db, t)
        result = _TABLE_OPS[kind](db, t, rng)
        same = _snapshot(db, t) == before
        for _, sql in triggers:
            db.execute(sql)
        if result.noop is not None or same:
            db.execute("ROLLBACK")
            return Tampering(result.detail, result.noop or "the rows are unchanged as a multiset")
        db.execute("COMMIT")
        return result
    finally:
        db.close()


# ---- files --------------------------------------------------------------------------------


def tamper_file(
    root: Path, rel: str, kind: str, rng: random.Random, partners: list[str]
) -> Tampering:
    """Apply ``kind`` to the file ``root/rel``; ``partners`` are candidates for a swap."""
    path = root / rel
    before = path.read_bytes()
    detail: dict[str, Any] = {"length": len(before)}
    if kind == "delete":
        path.unlink()
        return Tampering(detail)
    if kind == "swap":
        others = [p for p in partners if p != rel]
        if not others:  # the only file of its class: swap two pieces of it instead
            return _swap_within(path, before, rng)
        other = rng.choice(others)
        theirs = (root / other).read_bytes()
        if theirs == before:
            return Tampering(detail, f"`{other}` holds the same bytes")
        path.write_bytes(theirs)
        (root / other).write_bytes(before)
        return Tampering({**detail, "with": other})
    if kind == "flip":
        after, info = _flip_bytes(before, rng)
        detail.update(info)
    elif kind == "insert":
        off = rng.randrange(len(before) + 1)
        extra = rng.randbytes(rng.randrange(1, 17))
        after = before[:off] + extra + before[off:]
        detail.update(offset=off, inserted=extra.hex())
    else:  # truncate
        if not before:
            return Tampering(detail, "the file is empty")
        keep = rng.randrange(len(before))
        after = before[:keep]
        detail.update(kept=keep)
    if after == before:
        return Tampering(detail, "the bytes are unchanged")
    path.write_bytes(after)
    return Tampering(detail)


def _swap_within(path: Path, data: bytes, rng: random.Random) -> Tampering:
    """Swap two equal-length, non-overlapping pieces of one file (a reordering of its bytes)."""
    detail: dict[str, Any] = {"length": len(data)}
    if len(data) < 2:
        return Tampering(detail, "the file is too short to swap two pieces of it")
    size = rng.randrange(1, len(data) // 2 + 1)
    a = rng.randrange(len(data) - 2 * size + 1)
    b = rng.randrange(a + size, len(data) - size + 1)
    first, second = data[a : a + size], data[b : b + size]
    after = data[:a] + second + data[a + size : b] + first + data[b + size :]
    detail.update(pieces=[a, b], size=size)
    if after == data:
        return Tampering(detail, "the two pieces hold the same bytes")
    path.write_bytes(after)
    return Tampering(detail)
