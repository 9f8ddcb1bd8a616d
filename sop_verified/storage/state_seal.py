"""The state seal: a keyed commitment to every derived table, bound to the log's size.

Every table SOP derives from the log (capabilities, revocations, policy sets,
verdicts, the persistence index and its small blobs, protocol records and
their marks) is stored where an attacker who can write the database can edit
it (DESIGN.md §7, INV-11). The seal is what lets SOP notice, without
replaying the log:

- per table, the number of rows and the sum, modulo 2**256, of a keyed
  BLAKE2b digest of every row (:func:`row_digest`); a sum is indifferent to
  the order rows are stored in and can be updated for one inserted, deleted
  or changed row without reading the others;
- the log size the derived state belongs to, so an old seal cannot be
  replayed once the log has grown;
- an HMAC-SHA256 over all of it.

Both keys are derived from the capability MAC key, which the attacker cannot
read (ADR 0012). He can drop the triggers that keep the seal and edit rows,
or write the seal's bytes, but he cannot compute a row's digest or the MAC:
any edit, insertion, deletion or reordering leaves the recomputed sums apart
from the sealed ones, for good (SOP's own later writes add exact deltas, so
the drift an edit made never cancels). :func:`check_tables` names the first
table that differs.

The seal never re-MACs bytes it cannot open (:meth:`SealKeeper.update`), so a
forged seal cannot be laundered by SOP's next write; that write fails
instead, and the decision that needed it is DENY (INV-2).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sop_verified.errors import IntegrityError

__all__ = [
    "MODULUS",
    "NO_CONFIG",
    "RawText",
    "Seal",
    "SealKeeper",
    "TableDigest",
    "TableMismatchError",
    "check_tables",
    "derive_state_keys",
    "row_digest",
]

MODULUS = 1 << 256
_VERSION = 1
_HEAD = struct.Struct(">BQ32s")  # version, log size, accepted configuration digest
_TABLE = struct.Struct(">Q32s")  # row count, sum
_MAC_LEN = 32


def derive_state_keys(master: bytes) -> tuple[bytes, bytes]:
    """The row-digest key and the seal MAC key, each with its own purpose label.

    HMAC-SHA256 as a PRF (RFC 2104) over a fixed label: two independent keys
    from the capability MAC key, so no digest here can be replayed as a
    capability MAC or a verdict seal.
    """
    rows = hmac.new(master, b"sop/state-seal/rows/v1", hashlib.sha256).digest()
    seal = hmac.new(master, b"sop/state-seal/mac/v1", hashlib.sha256).digest()
    return rows, seal


class RawText(bytes):
    """A TEXT value read back as its stored bytes (the check reads what an attacker wrote,
    even when it is not UTF-8; valid text encodes exactly as the ``str`` SOP wrote)."""


def _encode(values: Iterable[object]) -> bytes:
    """An unambiguous encoding of one row's column values (type tag, length, bytes)."""
    out = bytearray()
    for v in values:
        if v is None:
            out += b"n"
        elif isinstance(v, RawText):
            out += b"s" + len(v).to_bytes(8, "big") + v
        elif isinstance(v, int):
            text = str(v).encode()
            out += b"i" + len(text).to_bytes(2, "big") + text
        elif isinstance(v, str):
            data = v.encode("utf-8", "surrogatepass")
            out += b"s" + len(data).to_bytes(8, "big") + data
        elif isinstance(v, bytes | bytearray | memoryview):
            data = bytes(v)
            out += b"b" + len(data).to_bytes(8, "big") + data
        elif isinstance(v, float):  # never written by SOP; an attacker's edit still counts
            text = repr(v).encode()
            out += b"f" + len(text).to_bytes(2, "big") + text
        else:
            raise IntegrityError(f"a stored value of type `{type(v).__name__}` cannot be sealed")
    return bytes(out)


def row_digest(key: bytes, table: str, values: Sequence[object]) -> int:
    """The keyed digest of one row of ``table``, as an integer below :data:`MODULUS`."""
    h = hashlib.blake2b(key=key, digest_size=32, person=b"sop-state-v1")
    h.update(table.encode() + b"\x00")
    h.update(_encode(values))
    return int.from_bytes(h.digest(), "big")


@dataclass(frozen=True, slots=True)
class TableDigest:
    """The row count and the digest sum of one table."""

    count: int
    total: int

    def add(self, digest: int, sign: int) -> TableDigest:
        """This digest with one row added (``sign`` 1) or removed (``sign`` -1)."""
        return TableDigest(self.count + sign, (self.total + sign * digest) % MODULUS)


NO_CONFIG = bytes(32)
"""The configuration digest of a seal that has accepted none yet (a fresh database)."""


@dataclass(frozen=True, slots=True)
class Seal:
    """What the seal commits to: the log size, one :class:`TableDigest` per table, and the
    SHA-256 of the configuration (``sop.toml``) last accepted, through SOP's keys."""

    log_size: int
    tables: tuple[TableDigest, ...]
    config: bytes = NO_CONFIG

    @classmethod
    def empty(cls, tables: int) -> Seal:
        """The seal of an empty database."""
        return cls(0, (TableDigest(0, 0),) * tables)


class SealKeeper:
    """Opens, updates and closes seal bytes under the state keys (the triggers' functions).

    Within one write transaction the triggers only accumulate: the first call
    opens the stored seal (its MAC verified, unless it is the one this keeper
    closed last), later calls add each row's digest to the seal held here, and
    the stored value is a *pending token* that no check accepts. Before
    ``COMMIT`` the store calls :meth:`close_pending`, which checks that the
    seal it started from was bound to the log's size before the transaction,
    binds the new size and MACs the result: one MAC per transaction, however
    many rows and entries it wrote. A transaction that committed a token
    (a write path that skipped the close) leaves a seal boot refuses.

    Thread-safe: the SQLite connections of one backend share it (SQLite lets
    one write transaction run at a time).
    """

    def __init__(self, master: bytes, tables: Sequence[str]) -> None:
        """Keep the seal of ``tables`` (their order is the seal's layout) under ``master``."""
        self._row_key, self._mac_key = derive_state_keys(master)
        self.tables = tuple(tables)
        self._slot = {t: i for i, t in enumerate(self.tables)}
        self._lock = threading.Lock()
        self._closed: tuple[bytes, Seal] | None = None  # the bytes this keeper closed last
        self._pending: Seal | None = None  # the open transaction's seal
        self._base = 0  # the log size the open transaction's seal started from
        self._token = b""
        self._tokens = 0
        self.failure: str | None = None  # why the last call was refused (for the error)

    # ---- bytes -----------------------------------------------------------------------
    def close(self, seal: Seal) -> bytes:
        """The MAC'd bytes of ``seal``."""
        body = _HEAD.pack(_VERSION, seal.log_size, seal.config) + b"".join(
            _TABLE.pack(t.count % (1 << 64), t.total.to_bytes(32, "big")) for t in seal.tables
        )
        return body + hmac.new(self._mac_key, body, hashlib.sha256).digest()

    def open(self, data: object) -> Seal:
        """The seal in ``data``, once its MAC verifies.

        Raises:
            IntegrityError: ``data`` is not seal bytes of this layout, or its MAC is wrong.
        """
        want = _HEAD.size + _TABLE.size * len(self.tables) + _MAC_LEN
        if not isinstance(data, bytes) or len(data) != want:
            found = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
            raise IntegrityError(
                f"the state seal is malformed: expected {want} bytes, found {found}"
            )
        body, mac = data[:-_MAC_LEN], data[-_MAC_LEN:]
        if not hmac.compare_digest(mac, hmac.new(self._mac_key, body, hashlib.sha256).digest()):
            raise IntegrityError(
                "the state seal's MAC does not verify: the seal was written by"
                " someone without SOP's keys"
            )
        version, size, config = _HEAD.unpack_from(body)
        if version != _VERSION:
            raise IntegrityError(f"the state seal has version `{version}`, expected `{_VERSION}`")
        tables = tuple(
            TableDigest(count, int.from_bytes(total, "big"))
            for count, total in (
                _TABLE.unpack_from(body, _HEAD.size + i * _TABLE.size)
                for i in range(len(self.tables))
            )
        )
        return Seal(size, tables, config)

    def digest(self, table: str, values: Sequence[object]) -> int:
        """The keyed digest of one row of ``table``."""
        return row_digest(self._row_key, table, values)

    # ---- what the triggers and the store's commit call --------------------------------------
    @property
    def dirty(self) -> bool:
        """Whether a transaction changed the seal and has not closed it yet."""
        return self._pending is not None

    def update(self, data: object, table: str, sign: int, values: Sequence[object]) -> bytes:
        """Add (sign 1) or remove (sign -1) one row of ``table``; the pending token.

        Raises:
            IntegrityError: the stored seal does not open (it is never MAC'd again then).
        """
        d = self.digest(table, values)
        with self._lock:
            seal = self._begin(data)
            slot = self._slot[table]
            tables = list(seal.tables)
            tables[slot] = tables[slot].add(d, sign)
            self._pending = Seal(seal.log_size, tuple(tables), seal.config)
            return self._token

    def accept_config(self, data: object, config: bytes) -> bytes:
        """Make ``config`` (a SHA-256) the accepted configuration; the pending token.

        Raises:
            IntegrityError: the stored seal does not open.
        """
        with self._lock:
            seal = self._begin(data)
            self._pending = Seal(seal.log_size, seal.tables, config)
            return self._token

    def close_pending(self, data: object, old_size: int, new_size: int) -> bytes:
        """The MAC'd seal to commit: the transaction's changes, bound to ``new_size`` entries.

        Args:
            data: The stored value (the pending token, or the seal if no row changed).
            old_size: The log's size before the transaction.
            new_size: The log's size after it.

        Raises:
            IntegrityError: the seal does not open, or the seal the transaction
                started from was not bound to ``old_size`` (an old seal put
                back: it is never carried forward).
        """
        with self._lock:
            seal = self._begin(data)
            base = self._base
            self._pending = None
            if base != old_size:  # spec: INV-11 — a seal is bound to one log size
                raise self._refuse(
                    f"the state seal is for a log of `{base}` entries, but the log held"
                    f" `{old_size}` before this write: the seal was replaced"
                )
            final = Seal(new_size, seal.tables, seal.config)
            out = self.close(final)
            self._closed = (out, final)
            self.failure = None
            return out

    def _begin(self, data: object) -> Seal:
        """The transaction's seal: the pending one, or the stored one opened (a new transaction)."""
        if self._pending is not None and data == self._token:
            return self._pending
        closed = self._closed
        if closed is not None and data == closed[0]:
            seal = closed[1]
        else:
            try:
                seal = self.open(data)
            except IntegrityError as exc:
                raise self._refuse(str(exc)) from None
        self._tokens += 1
        self._token = b"sop-state-seal/pending/%d" % self._tokens  # never a valid seal
        self._pending, self._base = seal, seal.log_size
        return seal

    def _refuse(self, why: str) -> IntegrityError:
        self.failure = why
        return IntegrityError(why)


class TableMismatchError(IntegrityError):
    """A derived table's rows are not the ones SOP sealed (the table is named)."""

    def __init__(self, table: str, message: str) -> None:
        """A mismatch in ``table``."""
        super().__init__(message)
        self.table = table


def check_tables(
    keeper: SealKeeper,
    seal: Seal,
    log_size: int,
    rows: Mapping[str, Iterable[Sequence[object]]],
) -> None:
    """Recompute every table's count and sum and compare them with ``seal``.

    Args:
        keeper: The keeper holding the state keys.
        seal: The opened seal.
        log_size: The size of the log, authenticated by its signed checkpoint.
        rows: Every row of every sealed table, as the triggers pass them.

    Raises:
        IntegrityError: the seal belongs to another log size, or a table's rows
            differ from what was sealed (the first such table, with counts).
    """
    if seal.log_size != log_size:  # spec: INV-11
        raise IntegrityError(
            f"the state seal is for a log of `{seal.log_size}` entries but the log holds"
            f" `{log_size}`: the derived state was put back from another time"
        )
    for table, sealed in zip(keeper.tables, seal.tables, strict=True):
        found = TableDigest(0, 0)
        for values in rows[table]:
            found = found.add(keeper.digest(table, values), 1)
        if found != sealed:  # spec: INV-11 — edit, insertion, deletion or reordering
            change = (
                f"{sealed.count} rows sealed, {found.count} found"
                if found.count != sealed.count
                else f"{sealed.count} rows as sealed, but their contents differ"
            )
            raise TableMismatchError(
                table, f"derived table `{table}` does not match its seal: {change}"
            )
